"""Nothing lost, nothing silently wrong: run locks, verified checkpoints, no-clobber outputs checked
before the work, milestone scaling, progress and warnings a log file shows."""

from __future__ import annotations

import os
import signal
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from training_utils import Plain, data, tiny

import robustode as ro
from robustode.cli import main
from robustode.data import DataSet, make_synthetic
from robustode.defenses import create_defense
from robustode.errors import CheckpointError, ConfigError
from robustode.records import load_record
from robustode.api import fit
from robustode.training import TrainConfig, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TINY = ["--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--batch-size", "16", "--n", "8",
        "--epochs", "1", "--quiet", "--no-masking-checks", "--defense", "natural"]
HOLD = ("import sys, time; from robustode.training.lock import run_lock; lock = run_lock(sys.argv[1]); lock.__enter__(); "
        "print('locked', flush=True); time.sleep(120)")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def holding_the_lock(run_dir: Path) -> subprocess.Popen:
    """Another process that owns ``run_dir``'s lock until it is killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_run_on_a_locked_run_directory_fails_at_once_naming_the_owner(tmp_path, capsys):
    holder = holding_the_lock(tmp_path / "runs" / "mix")
    try:
        assert main(["train", *TINY, "--out", str(tmp_path / "runs"), "--name", "mix"]) == 1
        line = one_error_line(capsys)
        assert f"in use by another robustode process (pid {holder.pid})" in line
        assert not (tmp_path / "runs" / "mix" / "train.log").exists()  # refused before writing anything
    finally:
        holder.kill()
        holder.wait()


def test_a_sigkilled_lock_holder_leaves_no_stale_lock(tmp_path):
    holder = holding_the_lock(tmp_path / "runs" / "mix")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert main(["train", *TINY, "--out", str(tmp_path / "runs"), "--name", "mix"]) == 0
    assert load_record(tmp_path / "runs" / "mix" / "record.json").training.epochs == 1


def test_two_runs_started_together_on_one_directory_cannot_both_succeed(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    three = [("3" if TINY[i - 1] == "--epochs" else a) for i, a in enumerate(TINY)]  # an option is given once
    runs = [subprocess.Popen([sys.executable, "-m", "robustode", "train", *three, "--seed", str(seed),
                              "--out", str(tmp_path / "runs"), "--name", "mix"], env=env, cwd=tmp_path, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for seed in (1, 2)]
    done = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in done) == [0, 1]
    (_, refused), = [d for d in done if d[0] == 1]
    assert "in use by another robustode process" in refused or "exists" in refused
    log = (tmp_path / "runs" / "mix" / "train.log").read_text()
    assert log.count("training vit_tiny with natural") == 1  # one run's lines only


def flip_a_tensor_byte(path: Path) -> None:
    """Flip one byte inside the largest tensor record of a torch.save zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x10
    path.write_bytes(raw)


def test_a_bit_flipped_checkpoint_is_refused_by_eval_load_and_resume(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path / "runs"), "--name", "r"]) == 0
    last = tmp_path / "runs" / "r" / "checkpoints" / "last.pt"
    torch.load(last, weights_only=True)  # torch itself reads it either way
    flip_a_tensor_byte(last)
    torch.load(last, weights_only=True)
    with pytest.raises(CheckpointError, match="do not match the digest"):
        load_checkpoint(last)
    with pytest.raises(CheckpointError, match=str(last)):
        ro.load_model(last)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(last), "--n", "8", "--quiet"]) == 1
    assert "corrupt" in one_error_line(capsys)
    assert not (tmp_path / "runs" / "r" / "eval-record.json").exists()
    assert main(["train", *TINY, "--out", str(tmp_path / "runs"), "--name", "r", "--resume"]) == 1
    assert "do not match the digest" in one_error_line(capsys)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    (out / "data").mkdir()  # $ROBUSTODE_DATA must exist, as --data-dir must
    os.environ.setdefault("ROBUSTODE_DATA", str(out / "data"))
    assert main(["train", *TINY, "--out", str(out / "runs"), "--name", "r"]) == 0
    return out / "runs" / "r" / "checkpoints" / "last.pt"


def test_a_second_eval_never_overwrites_the_first_record(checkpoint):
    run = checkpoint.parent.parent
    for name in ("eval-record.json", "eval-record__2.json"):
        (run / name).unlink(missing_ok=True)
    eval_args = ["eval", "--checkpoint", str(checkpoint), "--n", "8", "--quiet", "--no-masking-checks"]
    assert main(eval_args) == 0
    first = (run / "eval-record.json").read_text()
    assert main([*eval_args, "--attacks", "fgsm"]) == 0
    assert (run / "eval-record.json").read_text() == first
    assert list(load_record(run / "eval-record__2.json").evaluation.robust) == ["fgsm"]


def test_eval_outputs_are_checked_before_the_evaluation(checkpoint, tmp_path, capsys):
    existing = tmp_path / "taken.json"
    existing.write_text("{}")
    eval_args = ["eval", "--checkpoint", str(checkpoint), "--n", "8", "--quiet", "--no-masking-checks"]
    assert main([*eval_args, "--out", str(existing)]) == 1
    assert "exists; not overwriting it" in one_error_line(capsys) and existing.read_text() == "{}"
    assert main([*eval_args, "--out", "/proc/robustode-cannot-write/record.json"]) == 1
    assert "cannot write in /proc" in one_error_line(capsys)
    assert main([*eval_args, "--out", str(existing), "--force"]) == 0
    assert load_record(existing).evaluation.n == 8


def test_a_report_onto_a_folder_fails_early_and_leaves_no_temp_file(tmp_path, capsys):
    records, folder = tmp_path / "records", tmp_path / "reports" / "out"
    records.mkdir()
    folder.mkdir(parents=True)
    assert main(["leaderboard", "--records", str(records), "--out", str(folder)]) == 1
    assert "is a directory" in one_error_line(capsys)
    assert [p.name for p in folder.parent.iterdir()] == ["out"] and not any(folder.iterdir())


def test_records_take_the_umask_s_permissions(checkpoint, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(["eval", "--checkpoint", str(checkpoint), "--n", "8", "--quiet", "--no-masking-checks",
                     "--out", str(tmp_path / "r.json")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_an_other_data_set_with_the_same_classes_is_noted_in_the_record(checkpoint, caplog):
    synthetic = make_synthetic(32, 8, seed=5)
    other = DataSet("my-photos", synthetic.train, synthetic.test, synthetic.classes, kind="custom")
    record = ro.evaluate_checkpoint(checkpoint, other, n=8, masking_checks=False, quiet=True).record
    assert record.notes.startswith("evaluated on my-photos (custom), but trained on synthetic")
    assert record.dataset.name == "my-photos" and record.dataset.n_train == 32
    assert any("my-photos" in r.message for r in caplog.records)


def test_a_short_run_scales_the_preset_milestones_and_anneals(capsys):
    natural = create_defense("natural")  # preset: 105 epochs, lr x0.1 at 75, 90, 100
    settings = TrainConfig(epochs=21).resolve(natural)
    assert settings.milestones == pytest.approx((15.0, 18.0, 20.0))
    assert settings.milestones_scaled_from == (75, 90, 100) and settings.preset_epochs == 105
    assert TrainConfig(epochs=21, milestones=(5,)).resolve(natural).milestones == (5,)  # asked for: kept
    assert TrainConfig().resolve(natural).milestones_scaled_from is None
    result = fit(tiny(), "natural", data(), epochs=2, batch_size=16, device="cpu")
    assert result.history[-1]["lr"] < 0.1 * 0.1 * 0.1 * 1.01  # past all three decays by the last epoch
    assert "lr milestones [75, 90, 100] (of 105 epochs) were scaled to the 2 epochs" in capsys.readouterr().err


def test_off_a_terminal_progress_lines_with_an_eta_and_a_time_estimate_are_logged(capsys, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")  # a line at every minibatch (30 s by default)
    fit(tiny(), Plain(), data(n_train=64), epochs=2, batch_size=8, log_every=2, device="cpu")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch 1/2: ")]
    assert [line.split()[2] for line in lines] == [f"{i}/8" for i in range(1, 8)]  # once each, the last not
    assert all("minibatches" in line and "eta" in line and "img/s" in line for line in lines)
    assert "estimated training time" in err
    assert "no GPU found" not in err  # the device was chosen, not found
    ro.evaluate(tiny().eval(), data(n_test=16), n=16, batch_size=2, masking_checks=False)
    evaluating = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evaluating pgd-20")]
    assert len(evaluating) >= 5  # per attack, with its accuracy so far and an ETA
    assert all("(1/1) on 16 points" in line and "% so far" in line and "eta" in line for line in evaluating)


def test_a_loss_that_leaves_its_scale_is_warned_about_and_divergence_exits_non_zero(tmp_path, capsys):
    fit(tiny(), Plain(), data(), epochs=1, batch_size=16, lr=1e4, device="cpu", quiet=False)
    assert "is probably too high" in capsys.readouterr().err
    code = main(["train", *TINY, "--lr", "1e30", "--out", str(tmp_path / "runs"), "--name", "d"])
    assert code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("robustode train: error: training loss became")
    assert load_record(tmp_path / "runs" / "d" / "record.json").training.stop_kind == "diverged"


def test_holdout_keeps_training_images_out_for_the_periodic_evaluation(monkeypatch, capsys):
    import robustode.evaluation.sharded

    seen = []

    def evaluate(model, held_out, attacks, threat, **kw):
        seen.append(held_out.images.clone())
        return type("R", (), {"clean_acc": 0.5, "robust": {attacks[0].name: 0.25}})()

    monkeypatch.setattr(robustode.evaluation.sharded, "evaluate", evaluate)
    ds = data(n_train=64)
    result = fit(tiny(), Plain(), ds, epochs=2, eval_every=1, eval_n=16, holdout=16, device="cpu", quiet=True)
    assert all(torch.equal(images, ds.train.images[-16:]) for images in seen) and len(seen) == 2
    assert result.run.data.n_train == 48 and result.history[0]["images"] == 48  # trained on the other 48
    fit(tiny(), Plain(), ds, epochs=1, eval_every=1, keep_best=True, eval_n=8, device="cpu")
    assert "keep_best picks the checkpoint on test images" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="holdout=64 keeps out every one"):
        fit(tiny(), Plain(), ds, epochs=1, holdout=64, device="cpu", quiet=True)
