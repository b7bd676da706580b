"""A run that learnt nothing says so, in its log and its record (issue 31, item 5)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

import robustode as ro
from training_utils import Net
from robustode.data import make_synthetic
from robustode.training.sanity import run_warnings


def test_a_run_at_chance_with_a_young_average_warns_in_its_log_and_record(tmp_path):
    torch.manual_seed(0)
    _, record = ro.train(Net(), "natural(ema_decay=0.99)", make_synthetic(32, 64, seed=0), n=64, epochs=1,
                         batch_size=16, lr=0.0, masking_checks=False, quiet=True, device="cpu",
                         out_dir=tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "warning: clean accuracy" in log and "within chance level (10.0%, inside its 95% interval" in log
    assert "saw 2 optimizer steps, fewer than its horizon of 100" in log
    assert record.notes.count("; ") == 1 and "the model did not learn" in record.notes


def fake(loss: float, steps: int, decay: float, clean=(0.5, 0.6)):
    trained = SimpleNamespace(history=[{"loss": loss, "steps": steps}],
                              run=SimpleNamespace(defense=SimpleNamespace(hyperparameters={"ema_decay": decay})))
    evaluation = SimpleNamespace(intervals={"clean": clean}, clean_acc=sum(clean) / 2, n=100)
    return trained, evaluation


def test_a_loss_far_above_chance_warns_and_a_healthy_run_does_not():
    assert run_warnings(*fake(loss=2.0, steps=500, decay=0.99), num_classes=10) == []
    [warning] = run_warnings(*fake(loss=20.5, steps=500, decay=0.0), num_classes=10)
    assert warning.startswith(f"the final training loss 20.5 is far above chance's ln(10) = {math.log(10):.2f}")
    assert run_warnings(*fake(loss=3 * math.log(10) - 0.01, steps=500, decay=0.0), num_classes=10) == []
