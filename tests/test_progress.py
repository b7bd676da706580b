"""Progress: an ETA from the measured rate (checked with a fake clock), lines off a terminal by time."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from robustode.progress import Eta, Progress, duration


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(eta: Eta, clock: Clock, steps, seconds_per_step) -> None:
    for _ in steps:
        clock.now += seconds_per_step
        eta.add(eta.samples[-1][1] + 1)


def test_the_eta_is_within_25_percent_after_10_percent_of_steady_work_despite_a_slow_start():
    clock = Clock()
    eta = Eta(1000, clock, window=20.0)
    run(eta, clock, range(5), 10.0)  # a warm-up: 5 steps at 10 s (compilation), then 1 s a step
    run(eta, clock, range(95), 1.0)  # 10% done
    truth = 900 * 1.0
    assert abs(eta.seconds_left() - truth) <= 0.25 * truth
    assert eta.seconds_left() == pytest.approx(truth, rel=0.01)  # the warm-up has left the window


def test_the_eta_follows_a_change_of_pace():
    clock = Clock()
    eta = Eta(1000, clock, window=20.0)
    run(eta, clock, range(200), 0.5)
    assert eta.seconds_left() == pytest.approx(800 * 0.5, rel=0.01)
    run(eta, clock, range(100), 2.0)  # four times slower from step 200 on
    assert eta.seconds_left() == pytest.approx(700 * 2.0, rel=0.05)


def test_no_eta_before_any_work_is_measured():
    clock = Clock()
    eta = Eta(10, clock)
    assert eta.seconds_left() is None
    clock.now = 3.0
    eta.add(0)
    assert eta.seconds_left() is None


def plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def test_off_a_terminal_a_line_is_printed_every_interval_seconds_with_the_latest_stats():
    console, out = plain_console()
    clock = Clock()
    with Progress(100, "epoch 1/2", console=console, interval=30.0, clock=clock, unit="minibatches") as progress:
        for i in range(1, 100):
            clock.now += 1.0  # one second a minibatch: a line at 30, 60, 90 s
            stats = f"loss {i}" if progress.wants_line else None
            progress.update(i, stats)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split()[0] for line in lines] == ["30/100", "60/100", "90/100"]
    assert "loss 30" in lines[0] and "loss 90" in lines[2]
    assert lines[0].endswith(f"eta {duration(70.0)}") and "30.0 s elapsed" in lines[0]


def test_quiet_progress_prints_nothing_and_wants_no_stats():
    console, out = plain_console()
    clock = Clock()
    with Progress(10, "x", console=console, quiet=True, interval=0.0, clock=clock) as progress:
        clock.now = 100.0
        assert not progress.wants_line
        progress.update(5, "stats")
    assert out.getvalue() == ""


def test_the_interval_comes_from_the_environment(monkeypatch, caplog):
    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "5")
    assert Progress(10, "x", console=plain_console()[0]).interval == 5.0 and not caplog.text
    for typo in ("soon", "-5", "nan"):  # said, not silently taken for the default (issue 30, item 3)
        monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", typo)
        assert Progress(10, "x", console=plain_console()[0]).interval == 30.0
        assert f"$ROBUSTODE_PROGRESS_SECONDS={typo!r} is no number" in caplog.text


def test_an_evaluation_names_autoattacks_components_and_the_masking_checks_as_they_run(monkeypatch, capsys):
    import torch
    from torch import nn

    import robustode as ro
    from robustode.data import make_synthetic

    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")  # a line at every update
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    tiny_aa = "autoattack(apgd_steps=2, apgdt_targets=1, apgdt_steps=2, fab_targets=1, fab_steps=2, square_queries=5)"
    ro.evaluate(model, make_synthetic(16, 16, seed=0), attacks=[tiny_aa], n=16, batch_size=8, escalate=False)
    err = capsys.readouterr().err
    assert "apgd-ce (1/4) on" in err and "gradient-masking checks on 16 points: 0/4 checks  PGD-20 at eps" in err


def test_escalation_stages_show_progress_over_their_batches(monkeypatch, capsys):
    import torch
    from torch import nn

    import robustode as ro
    from robustode.data import make_synthetic
    from robustode.evaluation import escalation

    class Constant(nn.Module):  # always class 0: its label-0 points survive every attack
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0] + [0.0] * 9))

        def forward(self, x):
            return self.bias.expand(len(x), 10) + 0 * x.flatten(1)[:, :1]

    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")
    monkeypatch.setattr(escalation, "SQUARE", "square(n_queries=5)")
    model = Constant()
    model.robustode_escalate = "declared for the test"
    data = make_synthetic(16, 64, seed=0)
    still = int((data.test.labels == 0).sum())
    assert still > 4  # more than one batch of 4 for each stage
    ro.evaluate(model, data, attacks=["fgsm"], n=64, batch_size=4, masking_checks=False, surrogate=model)
    err = capsys.readouterr().err
    assert f"escalation: square: 1/{-(-still // 4)} batches" in err
    assert f"escalation: transfer: 1/{-(-still // 4)} batches" in err


def test_the_probe_shows_progress_over_its_settings(monkeypatch, capsys):
    import torch

    import robustode as ro
    from robustode.data import make_synthetic

    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")
    torch.manual_seed(0)
    model = ro.create_model("ode_net16_1", num_classes=10)
    ro.probe(model, make_synthetic(8, 8, seed=0), n=8, settings=[{"method": "euler", "step_size": 0.5}],
             lipschitz=False, quiet=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("probe: test-time settings")]
    assert [line.split()[3] for line in lines] == ["0/2", "1/2"]  # each setting named as it starts, with an ETA
    assert "rk4" in lines[0] and "euler" in lines[1] and "eta" in lines[1]


def test_an_ode_models_progress_lines_count_its_function_evaluations(monkeypatch, capsys):
    import torch

    import robustode as ro
    from robustode.data import make_synthetic

    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")
    torch.manual_seed(0)
    model = ro.create_model("ode_net4_1(step_size=0.5)", num_classes=10)  # rk4, 2 steps: 8 evaluations of f
    data = make_synthetic(12, 8, seed=0)
    ro.fit(model, "pgd-2", data, epochs=1, batch_size=4, device="cpu", eval_every=0)
    train_lines = [line for line in capsys.readouterr().err.splitlines() if "loss" in line and "img/s" in line]
    assert train_lines and all("f-evals/batch 24+0" in line for line in train_lines)  # 2 attack + 1 pass
    ro.evaluate(model, data, attacks=["pgd-3"], n=8, batch_size=4, masking_checks=False, escalate=False)
    attack_lines = [line for line in capsys.readouterr().err.splitlines() if "pgd-3" in line and "so far" in line]
    assert attack_lines and all("f-evals/batch 24+0" in line for line in attack_lines)  # 3 steps x 8
