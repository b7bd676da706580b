"""Small things a user tripped on (issue 31): each named, each checked."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import robustode as ro
from robustode.data import make_synthetic
from robustode.errors import ConfigError


@pytest.mark.parametrize("entrance", [ro.train, ro.fit])
def test_a_bad_eps_is_named_as_the_eps_not_as_a_bad_defense_spec(entrance):
    with pytest.raises(ConfigError) as info:
        entrance("resnet20", "pgd-3", make_synthetic(8, 8, seed=0), eps="8/0")
    assert str(info.value) == "eps must be a number or a fraction like 8/255, got '8/0'"


def test_a_closed_pipe_ends_the_command_quietly():
    done = subprocess.Popen([sys.executable, "-m", "robustode", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    done.stdout.close()  # like `| head` before robustode wrote anything
    stderr = done.stderr.read().decode()
    assert done.wait(timeout=120) == 0 and stderr == ""


@pytest.mark.parametrize("n", [7, 300, 500, 1000])  # at n = 7 the old formula gave 2.8e-17
def test_a_wilson_bound_at_zero_or_all_successes_is_exactly_0_or_1(n):
    from robustode.stats import wilson

    assert wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0
    assert 0.0 < wilson(1, n)[0] < wilson(1, n)[1] < 1.0


def test_piped_output_never_breaks_a_path_mid_name(capsys, tmp_path):
    from pathlib import Path

    from robustode.cli.commands import show_summary
    from robustode.records import load_record

    record = load_record(Path(__file__).parent / "fixtures" / "record_v2.json")
    where = tmp_path / ("a-rather-long-folder-name-" * 4) / "eval-record.json"
    show_summary(record, where)
    assert f"results in {where}" in capsys.readouterr().out.splitlines()


def test_an_evaluation_result_prints_as_a_short_table():
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    result = ro.evaluate(model, make_synthetic(16, 32, seed=0), attacks=["fgsm"], n=32, quiet=True,
                         masking_checks=False)
    text = str(result)
    assert repr(result) == text and "EvalResult(" not in text and len(text.splitlines()) == 6
    lines = text.splitlines()
    assert lines[0].startswith("evaluation of 32 points at eps 8/255")
    lo, hi = result.intervals["fgsm"]
    down, up = math.floor(1000 * lo + 1e-9) / 10, math.ceil(1000 * hi - 1e-9) / 10  # rounded outwards
    assert lines[3].split() == ["fgsm", f"{result.robust['fgsm']:.2%}", f"[{down:.1f}%,", f"{up:.1f}%]"]
    assert lines[-1] == "masking flags: none"


def test_a_record_and_a_comparison_print_as_tables():
    from pathlib import Path

    from robustode.records import compare, load_record

    record = load_record(Path(__file__).parent / "fixtures" / "record_v2.json")
    text = str(record)
    assert text.splitlines()[0] == f"{record.model.name} / {record.defense.spec} on {record.dataset.name} " \
                                   f"({record.dataset.kind})"
    assert text.splitlines()[2].split()[:2] == ["clean", f"{record.evaluation.clean_acc:.2%}"] and repr(record) == text
    rows = compare(record, record)
    assert isinstance(rows, list) and rows[0].metric == "clean" and rows[0].p_value == 1.0
    assert str(rows).splitlines()[0].split() == ["a", "b", "a-b", "only", "a", "only", "b", "McNemar", "p", "p",
                                                 "<", "0.05"]
    assert str(rows).splitlines()[1].split()[:2] == ["clean", f"{record.evaluation.clean_acc:.2%}"]


def test_a_record_read_from_one_folder_and_saved_in_another_keeps_its_points(tmp_path):
    from pathlib import Path

    from robustode.records import load_record, load_record_points, save_in

    record = load_record(Path(__file__).parent / "fixtures" / "record_v2.json")
    copy = load_record(save_in(record, tmp_path / "elsewhere"))
    points = load_record_points(copy)
    assert {k: v.tolist() for k, v in points.items()} == \
        {k: v.tolist() for k, v in load_record_points(record).items()}


def test_the_leaderboard_finds_records_in_run_directories_and_ignores_their_other_files(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from robustode.records import load_records

    fixtures = Path(__file__).parent / "fixtures"
    run = tmp_path / "runs" / "cifar10-lm_resnet20-fgsm-rs-s0"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(fixtures / "record_v2.json", run / "record.json")
    shutil.copy(fixtures / "points-482b6759885fd78b.npz", run)
    (run / "config.json").write_text(json.dumps({"train": {}}))
    (run / ".eval-state").mkdir()
    (run / ".eval-state" / "x.json").write_text("{}")
    v1 = load_records(Path(shutil.copytree(fixtures / "run_8575994", tmp_path / "runs" / "old")))
    assert len(v1) == 1 and v1[0].model.name == "vit_tiny"  # one run directory given directly
    found = load_records(tmp_path / "runs")
    assert sorted(r.model.name for r in found) == ["lm_resnet20", "vit_tiny"]
    records = tmp_path / "records"
    records.mkdir()
    shutil.copy(fixtures / "record_v2.json", records / "cifar10_jpeg__lm_resnet20__fgsm-rs__s0__x.json")
    assert len(load_records(tmp_path)) == 3  # every record file, the copy in a records folder too


def test_compare_takes_run_directories_and_a_folder_of_many_records_asks_for_one(tmp_path, capsys):
    import shutil
    from pathlib import Path

    from robustode.cli import main
    from robustode.errors import RecordError
    from robustode.records import find_record

    run = Path(shutil.copytree(Path(__file__).parent / "fixtures" / "run_8575994", tmp_path / "run"))
    assert find_record(run) == run / "record.json"
    assert main(["compare", str(run), str(run)]) == 0
    assert "clean" in capsys.readouterr().out
    (tmp_path / "two").mkdir()
    for name in ("a.eval-record.json", "b.eval-record.json"):
        shutil.copy(run / "record.json", tmp_path / "two" / name)
    with pytest.raises(RecordError, match="a folder with 2 records"):
        find_record(tmp_path / "two")


def test_a_records_nested_parts_are_typed_all_the_way_down():
    from pathlib import Path

    from robustode.records import load_record
    from robustode.records.schema import OptimizerInfo

    for name in ("record_v1.json", "record_v2.json"):
        optimizer = load_record(Path(__file__).parent / "fixtures" / name).training.optimizer
        assert isinstance(optimizer, OptimizerInfo) and optimizer.momentum == 0.9 and optimizer.momentum_min is None
    torch.manual_seed(0)
    _, record = ro.train(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)), "natural",
                         make_synthetic(16, 8, seed=0), epochs=1, batch_size=8, lr=0.05, n=8, masking_checks=False,
                         quiet=True, device="cpu")
    assert record.training.optimizer.lr == 0.05 and record.training.optimizer.schedule == "multistep"
