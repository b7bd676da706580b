"""Experiment logging (issue 31, item 4): TensorBoard event files read back; W&B's calls, offline."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

import robustode as ro
from robustode.data import make_synthetic
from robustode.errors import ConfigError


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def train(tmp_path, **settings):
    return ro.fit(net(), "natural", make_synthetic(32, 16, seed=0), epochs=2, batch_size=16, eval_every=1, eval_n=8,
                  device="cpu", quiet=True, out_dir=tmp_path / "run", **settings)


def test_tensorboard_event_files_hold_every_epochs_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tmp_path, log=("tensorboard",))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for key, tag in (("loss", "train/loss"), ("lr", "train/lr"), ("eval_robust", "eval/eval_robust"),
                     ("seconds", "train/seconds")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(row["epoch"], pytest.approx(row[key], rel=1e-6)) for row in result.history], tag


def test_wandb_gets_each_epoch_offline_in_the_run_directory(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, values, step):
            calls.append(("log", step, values))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    result = train(tmp_path, log=("wandb",))
    init = calls[0][1]
    assert (init["mode"], init["dir"], init["name"]) == ("offline", str(tmp_path / "run"), "run")
    assert [c[1] for c in calls if c[0] == "log"] == [1, 2] and calls[-1] == ("finish",)
    assert calls[2][2]["train/loss"] == pytest.approx(result.history[-1]["loss"])


def test_a_logger_needs_a_run_directory_and_its_package(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="writes into the run directory"):
        ro.fit(net(), "natural", make_synthetic(32, 16, seed=0), epochs=1, device="cpu", quiet=True,
               log=("tensorboard",))
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'robustode\[wandb\]'"):
        ro.fit(net(), "natural", make_synthetic(32, 16, seed=0), epochs=1, device="cpu", quiet=True,
               log="wandb", out_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="log must be one of tensorboard, wandb"):
        ro.fit(net(), "natural", make_synthetic(32, 16, seed=0), epochs=1, log=("mlflow",))
