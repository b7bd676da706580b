"""What earlier versions wrote still works: a run directory written by robustode at commit 8575994 (before
the entrance redesign; tests/fixtures/run_8575994, made by training vit_tiny with
pgd-2(ema_decay=0.5) for one epoch on make_synthetic(32, 16, seed=0)) evaluates as it did and resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

import robustode as ro
from robustode.data import make_synthetic
from robustode.records import load_record
from robustode.training.trainer import Trainer

FIXTURE = Path(__file__).parent / "fixtures" / "run_8575994"


def data():
    return make_synthetic(32, 16, seed=0)


def test_an_earlier_checkpoint_evaluates_as_it_did_when_it_was_written():
    old = load_record(FIXTURE / "record.json")
    run = ro.evaluate_checkpoint(FIXTURE / "checkpoints" / "last.pt", data(), n=16, masking_checks=False,
                                 quiet=True, device="cpu")
    new = run.record
    assert (new.evaluation.clean_acc, new.evaluation.robust) == (old.evaluation.clean_acc, old.evaluation.robust)
    assert new.model == old.model and new.training == old.training
    assert new.defense.spec == old.defense.spec == "pgd-2(ema_decay=0.5)"


def test_a_run_interrupted_before_the_redesign_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """run_8575994_interrupted: the same run with epochs=2, interrupted in epoch 2 (last.pt holds epoch 1)."""
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE.with_name("run_8575994_interrupted"), run_dir)
    settings = dict(epochs=2, batch_size=16, device="cpu", quiet=True)
    epochs, train_epoch = [], Trainer.train_epoch
    monkeypatch.setattr(Trainer, "train_epoch", lambda self, e: epochs.append(e) or train_epoch(self, e))
    resumed = ro.fit("vit_tiny", "pgd-2(ema_decay=0.5)", data(), out_dir=run_dir, resume=True, **settings)
    assert epochs == [2]  # epoch 1 came from the earlier version's checkpoint
    torch.manual_seed(0)
    whole = ro.fit("vit_tiny", "pgd-2(ema_decay=0.5)", data(), out_dir=tmp_path / "whole", **settings)
    assert resumed.data_epochs == whole.data_epochs == 2
    assert "resuming" in (run_dir / "train.log").read_text()
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), whole.model.state_dict().items()):
        assert torch.equal(a, b), name
