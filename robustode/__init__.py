"""robustode: adversarial robustness through the ODE view of deep networks."""

__version__ = "0.1.0"
