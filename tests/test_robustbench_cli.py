"""`robustode export --format robustbench` and `robustode eval --robustbench`: the round trip on the command line."""

from __future__ import annotations

import json

import pytest
from records_fixtures import demo_record

from robustode.cli import main
from robustode.records import load_record, save

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TINY = ["--dataset", "synthetic", "--n", "32", "--quiet", "--no-masking-checks", "--device", "cpu"]


def test_export_then_eval_robustbench_gives_the_same_accuracy(tmp_path, capsys):
    assert main(["train", "--model", "dm_wrn10_1", "--defense", "natural", "--epochs", "1", "--train-subset", "64",
                 "--batch-size", "32", "--out", str(tmp_path / "runs"), *TINY]) == 0
    run = next((tmp_path / "runs").iterdir())
    trained = load_record(run / "record.json")
    # RobustBench ranks by AutoAttack, too slow here: a record of the same model that says it ran it.
    right = round(trained.evaluation.clean_acc * 32)  # of the 32 test images
    with_aa = demo_record(model="dm_wrn10_1", clean=right / 32, pgd20=right // 2 / 32, aa=right // 4 / 32, n=32,
                          label="Tiny2026")
    save(with_aa, run / "aa-record.json")
    assert main(["export", str(run / "aa-record.json"), "--format", "robustbench", "--out", str(tmp_path / "rb")]) == 0
    info = json.loads((tmp_path / "rb" / "model_info" / "cifar10" / "Linf" / "Tiny2026.json").read_text())
    assert info["autoattack_acc"] == f"{100 * (right // 4) / 32:.2f}" and info["unreliable"] is False
    weights = tmp_path / "rb" / "models" / "cifar10" / "Linf" / "Tiny2026.pt"
    out = tmp_path / "rb-eval.json"
    assert main(["eval", "--robustbench", "dm_wrn10_1", "--checkpoint", str(weights), "--attacks", "pgd-1",
                 "--out", str(out), *TINY]) == 0
    back = load_record(out)
    assert back.evaluation.clean_acc == trained.evaluation.clean_acc  # same weights, same 32 images
    assert back.defense.spec == "robustbench:dm_wrn10_1" and back.training.epochs == 0
    assert back.defense.hyperparameters["sha256"] and back.model.name == "dm_wrn10_1"


def test_cli_refusals_are_one_line(tmp_path, capsys):
    save(demo_record(model="dm_wrn10_1"), tmp_path / "noaa.json")
    assert main(["export", str(tmp_path / "noaa.json"), "--format", "robustbench", "--out", str(tmp_path / "rb"),
                 "--checkpoint", str(tmp_path / "none.pt")]) != 0
    assert "ranks entries by AutoAttack" in capsys.readouterr().err
    assert main(["eval", "--robustbench", "Wang2023Better_WRN-28-1O", "--checkpoint", str(tmp_path / "x.pt"),
                 *TINY]) != 0
    err = capsys.readouterr().err
    assert "Wang2023Better_WRN-28-10" in err and "Traceback" not in err
