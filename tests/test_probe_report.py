"""A probed run's plots in the HTML leaderboard; a run without a probe has none."""

from __future__ import annotations

from records_fixtures import demo_record

from robustode.report.html import render_html
from robustode.report.probe_plots import accuracy_plot, lipschitz_plot

ROWS = [{"setting": "rk4 h=0.25 T=1", "own": True, "clean": 0.6, "pgd20": 0.1, "evals_per_forward": 16.0},
        {"setting": "rk4 h=0.0625 T=1", "own": False, "clean": 0.61, "pgd20": 0.09, "evals_per_forward": 64.0},
        {"setting": "euler h=0.25 T=1", "own": False, "clean": 0.5, "pgd20": 0.2, "evals_per_forward": 4.0},
        {"setting": "dopri5 rtol=0.01 atol=0.01 T=1", "own": False, "clean": 0.6, "pgd20": 0.3,
         "evals_per_forward": 26.0},
        {"setting": "rk4 h=0.25 T=2", "own": False, "clean": 0.4, "pgd20": 0.05, "evals_per_forward": 32.0}]
LIPSCHITZ = [{"block": "blocks.0", "t": k / 4, "depth": k, "mean": 7.0 - k, "max": 8.0 - k, "iterations": 10}
             for k in range(4)]


def test_a_probed_run_shows_both_probe_plots_and_an_unprobed_one_none():
    probed = demo_record(model="ode_net16_1", evaluation={"ode": {"solvers": ["rk4 h=0.25 T=1"], "probe": {
        "n": 100, "eps": 8 / 255, "rows": ROWS, "lipschitz": LIPSCHITZ}}})
    plain = demo_record(model="resnet20")
    accuracy, lipschitz = accuracy_plot(probed), lipschitz_plot(probed)
    assert accuracy.count("<path") > 6 and "step size h" in accuracy  # two series of two lines, axes
    assert "along depth" in lipschitz
    assert accuracy_plot(plain) is None and lipschitz_plot(plain) is None
    steps = demo_record(model="stepsize_resnet20", evaluation={"ode": {"probe": {"n": 100, "eps": 8 / 255, "rows": [
        {"setting": "h=0.1", "own": True, "clean": 0.6, "pgd20": 0.2},
        {"setting": "h=0.05", "own": False, "h": 0.05, "clean": 0.62, "pgd20": 0.21},
        {"setting": "h=0.2", "own": False, "h": 0.2, "clean": 0.5, "pgd20": 0.15},
        {"setting": "h=0.1 scheme=heun", "own": False, "scheme": "heun", "clean": 0.59, "pgd20": 0.2}]}}})
    small_step = accuracy_plot(steps)  # a small-step ResNet's h sweep: accuracy against h, one series per scheme
    assert small_step is not None and "h, trained scheme clean" in small_step and "h, heun PGD-20" in small_step
    page = render_html([probed, plain])
    assert page.count("<h3>ODE probe</h3>") == 1 and page.count('alt="Lipschitz estimates along depth') == 1
