"""SIGTERM ends train and eval as Ctrl-C does (exit 143, the last epoch kept, the evaluation's finished
batches kept so that a rerun continues), and an evaluation's state lives beside its output, survives
damage and counts the whole time (issue 30, items 6 and 7)."""

from __future__ import annotations

import os
import signal

import pytest

from robustode.cli import main
from robustode.evaluation.state import STATE_DIR, EvalState
from robustode.records import load_record
from robustode.records.points import load_points
from robustode.training import load_checkpoint
from robustode.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TINY = ["--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--batch-size", "16", "--quiet",
        "--no-masking-checks", "--defense", "natural"]
EVAL = ["--n", "32", "--eval-batch-size", "8", "--attacks", "pgd-2"]  # 4 batches


def terminate_after(monkeypatch, cls, method: str, calls: int) -> list:
    """SIGTERM this process once ``cls.method`` has run ``calls`` times; returns the list of calls made."""
    made, original = [], getattr(cls, method)

    def wrapped(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        made.append(1)
        if len(made) == calls:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(cls, method, wrapped)
    return made


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_sigterm_in_training_keeps_the_last_epoch_and_exits_143(tmp_path, monkeypatch, capsys):
    terminate_after(monkeypatch, Trainer, "save", 1)
    argv = ["train", *TINY, *EVAL, "--epochs", "3", "--out", str(tmp_path), "--name", "r"]
    assert main(argv) == 143
    line = one_line(capsys)
    assert line.startswith("robustode train: interrupted") and "--resume" in line
    run = tmp_path / "r"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert "interrupted in data epoch 2" in (run / "train.log").read_text()
    monkeypatch.undo()
    assert main([*argv, "--resume"]) == 0 and load_record(run / "record.json").training.epochs == 3


def test_sigterm_in_the_final_evaluation_is_continued_by_resume(tmp_path, monkeypatch, capsys):
    terminate_after(monkeypatch, EvalState, "put", 2)  # the clean pass and the first attack batches
    argv = ["train", *TINY, *EVAL, "--epochs", "1", "--out", str(tmp_path), "--name", "r"]
    assert main(argv) == 143 and "interrupted" in one_line(capsys)
    (saved,) = (tmp_path / "r" / STATE_DIR).glob("*.npz")
    monkeypatch.undo()
    again = terminate_after(monkeypatch, EvalState, "put", 10**6)  # counts the batches, never stops
    assert main([*argv, "--resume"]) == 0
    monkeypatch.undo()
    fresh = terminate_after(monkeypatch, EvalState, "put", 10**6)
    assert main(["train", *TINY, *EVAL, "--epochs", "1", "--out", str(tmp_path), "--name", "fresh"]) == 0
    assert 0 < len(again) == len(fresh) - 2 and not saved.exists()  # continued, then its state removed


@pytest.fixture
def checkpoint(tmp_path):
    assert main(["train", *TINY, "--n", "8", "--epochs", "1", "--out", str(tmp_path / "runs"), "--name", "r"]) == 0
    return tmp_path / "runs" / "r" / "checkpoints" / "last.pt"


def test_eval_keeps_its_state_beside_its_output_resumes_after_sigterm_and_counts_all_its_time(
        checkpoint, tmp_path, monkeypatch, capsys):
    out = tmp_path / "elsewhere" / "e.json"
    argv = ["eval", "--checkpoint", str(checkpoint), *EVAL, "--quiet", "--no-masking-checks", "--out", str(out)]
    terminate_after(monkeypatch, EvalState, "put", 3)
    assert main(argv) == 143
    assert "continues the evaluation" in one_line(capsys)
    (state,) = (out.parent / STATE_DIR).glob("*.npz")
    assert not (checkpoint.parent.parent / STATE_DIR).exists()  # nothing written beside the checkpoint
    before = load_points(state)[1]["seconds"]
    monkeypatch.undo()
    again = terminate_after(monkeypatch, EvalState, "put", 10**6)
    assert main(argv) == 0
    assert len(again) == 1 and load_record(out).evaluation.seconds > before  # 4 batches, 3 done; the total


def test_a_damaged_state_is_started_over_with_a_warning(checkpoint, tmp_path, monkeypatch, caplog):
    out = tmp_path / "e.json"
    argv = ["eval", "--checkpoint", str(checkpoint), *EVAL, "--quiet", "--no-masking-checks", "--out", str(out)]
    terminate_after(monkeypatch, EvalState, "put", 2)
    assert main(argv) == 143
    (state,) = (tmp_path / STATE_DIR).glob("*.npz")
    state.write_bytes(state.read_bytes()[:100])
    monkeypatch.undo()
    assert main(argv) == 0 and load_record(out).evaluation.n == 32
    assert "evaluation state is damaged" in caplog.text and not state.exists()


@pytest.mark.slow
def test_a_robustbench_evaluation_resumes_after_sigterm_too(tmp_path, monkeypatch, capsys):
    from records_fixtures import demo_record

    from robustode.records import save

    data = ["--dataset", "synthetic", "--quiet", "--no-masking-checks", "--device", "cpu"]
    assert main(["train", "--model", "dm_wrn10_1", "--defense", "natural", "--epochs", "1", "--train-subset", "16",
                 "--batch-size", "16", "--n", "8", "--out", str(tmp_path / "runs"), "--name", "r", *data]) == 0
    save(demo_record(model="dm_wrn10_1", clean=0.5, pgd20=0.25, aa=0.25, n=8, label="Tiny"), tmp_path / "aa.json")
    assert main(["export", str(tmp_path / "aa.json"), "--format", "robustbench", "--out", str(tmp_path / "rb"),
                 "--checkpoint", str(tmp_path / "runs" / "r" / "checkpoints" / "last.pt")]) == 0
    weights = tmp_path / "rb" / "models" / "cifar10" / "Linf" / "Tiny.pt"
    argv = ["eval", "--robustbench", "dm_wrn10_1", "--checkpoint", str(weights), *EVAL, "--out",
            str(tmp_path / "e.json"), *data]
    terminate_after(monkeypatch, EvalState, "put", 2)
    assert main(argv) == 143 and "continues the evaluation" in capsys.readouterr().err
    monkeypatch.undo()
    again = terminate_after(monkeypatch, EvalState, "put", 10**6)
    assert main(argv) == 0 and len(again) == 2 and load_record(tmp_path / "e.json").evaluation.n == 32
