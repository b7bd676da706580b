"""The modifiers every defense takes: label smoothing, AWP and weight averaging (fields of ``Defense``).

They compose with a defense's own step: label smoothing changes its training
loss, AWP the weights that loss is taken at, weight averaging (kept by the
training loop, robustode.training.averaging) the model that is evaluated and saved.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..utils import parse_fraction

MODIFIERS = ("label_smoothing", "awp_gamma", "awp_warmup", "ema_decay")


def _fraction_below_one(value, name: str) -> float:
    value = parse_fraction(value, name)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must lie in [0, 1), got {value:g}")
    return value


def _non_negative(value, name: str) -> float:
    value = parse_fraction(value, name)
    if not value >= 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value:g}")
    return value


def _epochs(value, name: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0 (data epochs), got {value!r}")
    return value


def check_modifiers(defense) -> None:
    """Check (and convert from spec strings) the modifier fields of ``defense``, in place."""
    defense.label_smoothing = _fraction_below_one(defense.label_smoothing, "label_smoothing")
    defense.awp_gamma = _non_negative(defense.awp_gamma, "awp_gamma")
    defense.awp_warmup = _epochs(defense.awp_warmup, "awp_warmup")
    defense.ema_decay = _fraction_below_one(defense.ema_decay, "ema_decay")
    if defense.awp_gamma > 0 and not defense.supports_awp:
        raise ConfigError(f"{type(defense).__name__} does not take AWP (awp_gamma > 0): AWP perturbs the "
                          "weights for a loss on fixed adversarial examples, as in pgd-K, trades-K and mart-K")

