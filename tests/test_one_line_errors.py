"""The raw tracebacks that were left become one-line errors naming the cause, and train warns about a model
expecting [0, 255] pixels as check-model does (issue 30, item 9)."""

from __future__ import annotations

import errno
import os
import io
import random
import zipfile

import pytest
import torch
from torch import nn

import robustode as ro
from robustode.cli import main
from robustode.data import make_synthetic
from robustode.errors import CheckpointError, ConfigError
from robustode.training import checkpoint as checkpoints
from robustode.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

DATA = make_synthetic(16, 8, seed=0)
FAST = {"epochs": 1, "batch_size": 8, "device": "cpu", "quiet": True}


class Net(nn.Module):
    """A classifier with a weight of shape ``shape``: (4, 6) and (6, 4) hold as many weights."""

    def __init__(self, shape: tuple[int, int] = (4, 6), scale: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, stride=4)
        self.w = nn.Parameter(torch.randn(shape) / 5)
        self.fc = nn.Linear(len(self.w.flatten()) // 12, 10)
        self.scale = scale

    def forward(self, x):
        return self.fc(self.conv(x * self.scale).mean((2, 3)) @ self.w.reshape(12, -1))


class FailsLater(Net):
    """Runs once, then raises: check-model's later probes meet the error."""

    def forward(self, x):
        if getattr(self, "ran", False):
            raise IndexError("the second call fails")
        self.ran = True
        return super().forward(x)


def test_resuming_with_another_size_of_the_same_model_is_one_line(tmp_path):
    ro.fit(Net(), "natural", DATA, out_dir=tmp_path / "run", **FAST)
    with pytest.raises(ConfigError, match="does not fit this model"):  # same class, same count, other shapes
        ro.fit(Net((6, 4)), "natural", DATA, out_dir=tmp_path / "run", resume=True, **FAST)
    with pytest.raises(ConfigError, match=r"model Net \(\d+ parameters\) -> Net \(\d+ parameters\)"):
        ro.fit(Net((8, 6)), "natural", DATA, out_dir=tmp_path / "run", resume=True, **FAST)


def test_resuming_with_another_depth_of_a_registered_family_names_both(tmp_path, capsys):
    argv = ["train", "--dataset", "synthetic", "--train-subset", "16", "--batch-size", "8", "--epochs", "1", "--n",
            "8", "--quiet", "--no-masking-checks", "--defense", "natural", "--out", str(tmp_path), "--name", "r"]
    assert main([*argv, "--model", "dm_wrn10_1"]) == 0
    assert main([*argv, "--model", "dm_wrn16_1", "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model dm_wrn10_1" in err[0] and "-> dm_wrn16_1" in err[0]


def test_a_full_disk_while_saving_a_checkpoint_names_it_and_keeps_the_last(tmp_path, monkeypatch):
    ro.fit(Net(), "natural", DATA, out_dir=tmp_path / "run", **FAST)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    before = last.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    with pytest.raises(CheckpointError, match=f"cannot write checkpoint {last} .No space left on device.; the "
                                              "previous checkpoint is left as it was"):
        checkpoints.save_checkpoint(last, {"epoch": 2})
    assert last.read_bytes() == before and [p.name for p in last.parent.iterdir()] == ["last.pt"]


def test_damage_anywhere_in_a_checkpoint_s_pickle_is_a_checkpoint_error(tmp_path):
    ro.fit(Net(), "natural", DATA, out_dir=tmp_path / "run", **FAST)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    data = path.read_bytes()
    info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    rng, bad, refused = random.Random(0), tmp_path / "bad.pt", 0
    for _ in range(150):  # bytes of the pickle changed at random: a KeyError, an AssertionError, ... before
        damaged = bytearray(data)
        for _ in range(2):
            damaged[start + rng.randrange(info.compress_size)] = rng.randrange(256)
        bad.write_bytes(bytes(damaged))
        try:
            load_checkpoint(bad)
        except CheckpointError as err:
            refused += 1
            assert "\n" not in str(err) and str(bad) in str(err)
    assert refused > 100  # the rest changed nothing the digest covers (a memo index, say)


def test_check_model_reports_a_model_that_raises_in_a_later_probe():
    report = ro.check_model(FailsLater())
    failed = {row.name: row.detail for row in report.rows if row.status == "fail"}
    assert {"pixel range", "eval determinism", "cost"} <= set(failed)
    assert "IndexError: the second call fails" in failed["pixel range"]


def test_train_warns_about_a_model_expecting_255_pixels_as_check_model_does(tmp_path, capsys):
    ro.fit(Net(scale=1 / 255), "natural", DATA, out_dir=tmp_path / "run", **{**FAST, "quiet": False})
    warning = "it barely sees [0, 1] pixels; does it expect [0, 255]?"
    assert warning in (tmp_path / "run" / "train.log").read_text() and warning in capsys.readouterr().err
    assert any(warning in row.detail for row in ro.check_model(Net(scale=1 / 255)).rows)
    ro.fit(Net(), "natural", DATA, out_dir=tmp_path / "plain", **FAST)
    assert warning not in (tmp_path / "plain" / "train.log").read_text()


def test_a_full_disk_while_writing_a_record_or_report_names_the_file(tmp_path, monkeypatch, capsys):
    from records_fixtures import demo_record

    from robustode.records import save_in

    records = tmp_path / "records"
    save_in(demo_record(), records)
    out = tmp_path / "board.md"
    out.write_text("the previous report")

    def full(fd, *args, **kwargs):
        class Full(io.BytesIO):
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        os.close(fd)
        return Full()

    monkeypatch.setattr("robustode.files.os.fdopen", full)
    assert main(["leaderboard", "--records", str(records), "--out", str(out), "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"robustode leaderboard: error: No space left on device: {out}"]
    assert out.read_text() == "the previous report" and not list(tmp_path.glob(".board.md.*"))  # no temp file
