"""The robustode command end to end: vit_tiny on a few synthetic images, seconds per command."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from records_fixtures import demo_record

import robustode as ro
from robustode.cli import main
from robustode.cli.commands import run_name
from robustode.cli.parser import build_parser
from robustode.defenses import Natural, defenses
from robustode.records import load_record, load_records, save_in
from robustode.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

REPO = Path(__file__).resolve().parents[1]
TINY = ["--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "64", "--batch-size", "32",
        "--n", "32", "--quiet"]


def train(tmp_path, *extra: str, defense: str = "natural", epochs: int = 1, checks: bool = False) -> int:
    """``robustode train`` on the tiny settings; the gradient-masking checks cost most of the time,
    so they run only on request."""
    out = str(tmp_path / "runs")
    return main(["train", *TINY, "--defense", defense, "--epochs", str(epochs), "--out", out, *extra,
                 *([] if checks else ["--no-masking-checks"])])


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_train_writes_the_run_directory_and_the_record(tmp_path, capsys):
    assert train(tmp_path, "--eps", "4/255", "--seed", "1", "--records", str(tmp_path / "records"),
                 "--eval-every", "1", "--eval-n", "16", defense="pgd-1", epochs=2, checks=True) == 0
    run = tmp_path / "runs" / "synthetic-vit_tiny-pgd-1-s1"
    record = load_record(run / "record.json")
    files = {"config.json", "train.log", "metrics.csv", "checkpoints", "record.json", ".lock",  # .lock: the run lock
             record.evaluation.per_example["file"]}  # the per-example results
    assert {p.name for p in run.iterdir()} == files
    assert record.defense.hyperparameters["eps"] == 4 / 255  # --eps reached the defense
    assert record.evaluation.eps == 4 / 255  # and the final evaluation
    assert (record.model.name, record.defense.spec, record.dataset.name) == ("vit_tiny", "pgd-1", "synthetic")
    assert (record.training.epochs, record.training.seed, record.training.batch_size) == (2, 1, 32)
    assert (record.dataset.n_train, record.evaluation.n) == (64, 32)
    assert record.command.startswith("robustode train --model vit_tiny")
    assert record.evaluation.flags.checks.subset == 32  # the masking checks ran, on all 32 images
    rows = list(csv.DictReader(io.StringIO((run / "metrics.csv").read_text())))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["eval_robust"]) <= 1 for r in rows)  # --eval-every 1: held-out PGD-20 each epoch
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["defense"]["hyperparameters"]["eps"] == 4 / 255
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert load_records(tmp_path / "records") == [record]
    out = capsys.readouterr().out
    assert "vit_tiny / pgd-1 on synthetic" in out and f"{record.evaluation.clean_acc:.2%}" in out


def test_an_existing_run_directory_is_never_overwritten(tmp_path, capsys):
    assert train(tmp_path) == 0
    record = tmp_path / "runs" / "synthetic-vit_tiny-natural-s0" / "record.json"
    before = record.read_text()
    capsys.readouterr()
    assert train(tmp_path) == 1
    line = error_line(capsys)
    assert line.startswith("robustode train: error: run directory") and "--resume" in line
    assert record.read_text() == before


def test_modifier_flags_reach_the_spec_the_record_and_the_run_name(tmp_path):
    assert train(tmp_path, "--ema", "0.9", "--label-smoothing", "0.1", "--no-cycle-momentum",
                 defense="fgsm-rs(guard=false)") == 0
    run = tmp_path / "runs" / "synthetic-vit_tiny-fgsm-rs_guard=false_-ema0.9-ls0.1-nocm-s0"
    record = load_record(run / "record.json")
    assert record.defense.spec == "fgsm-rs(ema_decay=0.9, guard=false, label_smoothing=0.1)"  # its one spelling
    assert (record.defense.hyperparameters["ema_decay"], record.defense.hyperparameters["label_smoothing"]) == \
        (0.9, 0.1)
    assert record.training.optimizer.momentum_min is None  # --no-cycle-momentum turned the preset's cycle off
    assert load_checkpoint(run / "checkpoints" / "last.pt")["ema"]["updates"] == 2


def test_runs_with_and_without_the_momentum_cycle_get_their_own_directories():
    parse = build_parser().parse_args
    base = ["train", "--model", "resnet20", "--defense", "fgsm-rs"]
    names = {run_name(parse(base + flag)) for flag in ([], ["--cycle-momentum"], ["--no-cycle-momentum"])}
    assert names == {"cifar10-resnet20-fgsm-rs-s0", "cifar10-resnet20-fgsm-rs-cm-s0", "cifar10-resnet20-fgsm-rs-nocm-s0"}


@dataclass
class Interrupted(Natural):
    """Natural training that raises KeyboardInterrupt once: at the first step of data epoch 2
    (64 images in batches of 32 make 2 steps per epoch)."""

    def train_step(self, model, x, y, optimizers, on_step):
        STEPS.append(1)
        if len(STEPS) == 3:
            raise KeyboardInterrupt
        return super().train_step(model, x, y, optimizers, on_step)


STEPS: list = []


@pytest.fixture
def interrupted():
    STEPS.clear()
    defenses.add("interrupted", Interrupted)
    yield
    defenses.remove("interrupted")


def test_resume_after_an_interrupted_run_matches_an_uninterrupted_one(tmp_path, capsys, interrupted):
    assert train(tmp_path, defense="interrupted", epochs=3) == 130
    assert error_line(capsys) == ("robustode train: interrupted; continue from the last completed epoch (or the "
                                  "final evaluation where it stopped): the same command plus --resume")
    run = tmp_path / "runs" / "synthetic-vit_tiny-interrupted-s0"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (run / "record.json").exists()
    assert train(tmp_path, "--resume", defense="interrupted", epochs=3) == 0
    assert load_record(run / "record.json").training.epochs == 3
    resumed = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert train(tmp_path, "--name", "straight", defense="natural", epochs=3) == 0
    straight = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_eval_rebuilds_the_model_from_a_checkpoint_and_writes_a_record(tmp_path, capsys):
    assert train(tmp_path, defense="pgd-1") == 0
    run = tmp_path / "runs" / "synthetic-vit_tiny-pgd-1-s0"
    argv = ["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--attacks", "pgd-5,fgsm",
            "--n", "16", "--records", str(tmp_path / "records"), "--quiet", "--no-masking-checks"]
    assert main(argv) == 0
    record = load_record(run / "eval-record.json")
    assert set(record.evaluation.robust) == {"pgd-5", "fgsm"} and record.evaluation.n == 16
    assert record.evaluation.flags.checks is None
    assert (record.model.name, record.defense.spec, record.dataset.n_train) == ("vit_tiny", "pgd-1", 64)
    model = ro.load_model(run / "checkpoints" / "last.pt")
    data = ro.load_dataset("synthetic")
    direct = ro.evaluate(model, data, attacks=["fgsm"], n=16, masking_checks=False, quiet=True)
    assert record.evaluation.clean_acc == direct.clean_acc
    assert record.evaluation.robust["fgsm"] == direct.robust["fgsm"]
    assert load_records(tmp_path / "records") == [record]


@pytest.fixture
def records(tmp_path) -> Path:
    folder = tmp_path / "records"
    for defense, pgd20 in (("pgd-10", 0.47), ("yopo-5-3", 0.44)):
        save_in(demo_record(defense=defense, pgd20=pgd20), folder)
    return folder


@pytest.mark.parametrize("fmt", ["md", "html", "json", "csv"])
def test_leaderboard_renders_every_format(records, tmp_path, capsys, fmt):
    assert main(["leaderboard", "--records", str(records), "--format", fmt]) == 0
    printed = capsys.readouterr().out
    assert "yopo-5-3" in printed and "pgd-10" in printed
    out = tmp_path / "report" / f"board.{fmt}"
    assert main(["leaderboard", "--records", str(records), "--format", fmt, "--out", str(out)]) == 0
    assert out.read_text() + "\n" == printed
    if fmt == "json":
        assert [r["defense"]["spec"] for r in json.loads(printed)] == ["pgd-10", "yopo-5-3"]


def test_list_prints_one_line_per_entry(capsys):
    assert main(["list", "defenses"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "defenses:"
    assert [line.split()[0] for line in lines[1:]] == defenses.names()
    assert main(["list", "models", "--pattern", "wrn*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ro.list_models("wrn*") and "wrn34_10" in names


def test_every_issue_flag_is_in_the_train_help(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--model", "--defense", "--dataset", "--epochs", "--batch-size", "--lr", "--schedule",
                 "--eps", "--seed", "--device", "--data-dir", "--out", "--resume", "--compile",
                 "--eval-every", "--ema", "--label-smoothing", "--awp", "--awp-warmup", "--cycle-momentum"):
        assert flag in text, flag
    for command in ("eval", "leaderboard", "list", "demo"):
        assert main([command, "--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out


def corrupt_checkpoint(tmp_path) -> str:
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"not a checkpoint")
    return str(path)


def malformed_records(tmp_path) -> str:
    folder = tmp_path / "bad-records"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    return str(folder)


def a_file(tmp_path) -> str:
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return str(path)


BAD = [
    (["train", "--eps", "-1"], "train", "--eps"),
    (["train", "--eps", "2"], "train", "must lie in (0, 1]"),
    (["train", "--eps", "eight"], "train", "8/255"),
    (["train", "--epochs", "0"], "train", "--epochs"),
    (["train", "--lr", "-0.1"], "train", "--lr"),
    (["train", "--model", "no_such_model"], "train", "unknown model 'no_such_model'"),
    (["train", "--defense", "pgd"], "train", "unknown defense 'pgd'"),
    (["train", "--defense", "yopo-0-3"], "train", "bad defense spec 'yopo-0-3'"),
    (["train", "--defense", "pgd-2(alpa=1/255)"], "train", "no setting alpa"),
    (["train", "--defense", "pgd-2(alpha"], "train", "malformed defense spec 'pgd-2(alpha'"),
    (["train", "--awp", "0.01"], "train", "Natural does not take AWP"),
    (["train", "--ema", "1"], "train", "--ema"),
    (["train", "--defense", "pgd-1", "--awp-warmup", "2"], "train", "--awp-warmup needs --awp"),
    (["train", "--defense", "fgsm-rs", "--schedule", "cosine", "--cycle-momentum"], "train",
     "cycle_momentum needs the cyclic schedule"),
    (["train", "--defense", "natural(ema_decay=0.5)", "--ema", "0.9"], "train", "already sets ema_decay"),
    (["train", "--defense", "grad-align", "--compile"], "train", "double backprop"),
    (["train", "--dataset", "no_such_data"], "train", "unknown dataset 'no_such_data'"),
    (["train", "--attacks", "pgd-20,no_such_attack"], "train", "unknown attack 'no_such_attack'"),
    (["train", "--n", "501"], "train", "n=501"),
    (["train", "--device", "tpu"], "train", "unknown device 'tpu'"),
    (["train", "--train-subset", "5000"], "train", "only 2000"),
    (["train", "--out", a_file], "train", "is a file, not a folder"),
    (["eval", "--checkpoint", "{tmp}/missing.pt"], "eval", "no checkpoint file"),
    (["eval", "--checkpoint", corrupt_checkpoint], "eval", "corrupt"),
    (["eval", "--checkpoint", "x.pt", "--attacks", "pgd-20,nope"], "eval", "unknown attack 'nope'"),
    (["leaderboard", "--records", malformed_records], "leaderboard", "broken.json"),
    (["leaderboard", "--records", "{tmp}/nowhere"], "leaderboard", "no such records folder"),
    (["leaderboard", "--format", "pdf"], "leaderboard", "invalid choice: 'pdf'"),
    (["list", "gadgets"], "list", "invalid choice: 'gadgets'"),
    (["demo", "--model", "no_such_model", "--out", "{tmp}/demo"], "demo", "unknown model"),
]


@pytest.mark.parametrize(("argv", "command", "message"), BAD, ids=lambda v: " ".join(map(str, v))
                         if isinstance(v, list) else None)
def test_a_bad_argument_prints_one_line_and_exits_nonzero(tmp_path, capsys, argv, command, message):
    if argv[0] == "train":  # a valid command line that the case then spoils (an option is given once)
        valid = [*TINY, "--defense", "natural", "--out", str(tmp_path / "runs")]
        spoilt = {a for a in argv[1:] if str(a).startswith("--")}
        kept = [a for i, a in enumerate(valid) if a not in spoilt and (i == 0 or valid[i - 1] not in spoilt)]
        argv = ["train", *kept, *argv[1:]]
    argv = [a(tmp_path) if callable(a) else a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) != 0
    line = error_line(capsys)
    assert line.startswith(f"robustode {command}: error:")
    assert message in line
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_the_installed_command_reports_errors_in_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTODE_DATA": str(tmp_path)}
    argv = ["train", "--model", "vit_tiny", "--defense", "yopo-0-3", "--dataset", "synthetic"]
    done = subprocess.run([sys.executable, "-m", "robustode", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("robustode train: error: bad defense spec 'yopo-0-3'")
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_no_command_prints_the_help_and_fails(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: robustode") and all(c in out for c in ("train", "eval", "leaderboard", "demo"))
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"robustode {ro.__version__}"


def test_leaderboard_cost_choices_are_the_reports_costs():
    # The parser lists them by hand (importing the report would load matplotlib for every command).
    from robustode.report.cost import COSTS

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None) and "leaderboard" in a.choices)
    cost = next(a for a in sub.choices["leaderboard"]._actions if a.dest == "cost")
    assert list(cost.choices) == list(COSTS)
