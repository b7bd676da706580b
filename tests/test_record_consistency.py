"""Records that cannot be true are refused when read, and a leaderboard checks every per-example file its
records reference when it loads them (issue 30, item 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from records_fixtures import correct, demo_record, saved_record

from robustode.cli import main
from robustode.errors import RecordError
from robustode.records import load_record, save
from robustode.report import write_report

IMPOSSIBLE = [  # (what is wrong, evaluation fields replaced, words of the refusal)
    ("PGD-20 above clean", {"robust": {"pgd-20": 0.9}, "pgd20_acc": 0.9}, "exceeds the clean accuracy"),
    ("an attack above clean", {"robust": {"pgd-20": 0.47, "square": 0.88}}, "square accuracy 0.88 exceeds"),
    ("AutoAttack above clean", {"autoattack_acc": 0.95}, "autoattack_acc accuracy 0.95 exceeds"),
    ("worst case above an attack", {"worst_case_acc": 0.5}, "worst case 0.5 exceeds the pgd-20"),
    ("no count of n", {"clean_acc": 0.87005}, "no count out of n = 10000"),
    ("more points than the test set", {"n": 20_000}, "only 10000 images"),
    ("an interval without its accuracy", {"intervals": {"clean": [0.1, 0.2]}}, "does not hold its accuracy"),
    ("pgd20_acc unlike robust", {"pgd20_acc": 0.46}, "differs from robust['pgd-20']"),
]
IMPOSSIBLE_TRAINING = [
    ("a stop kind without a stop", {"stop_kind": "guard"}, "stop_kind 'guard' without a reason"),
    ("a best epoch after the last", {"best_epoch": 106}, "best_epoch 106 is no epoch of a run of 105"),
]


CASES = [("evaluation", *case) for case in IMPOSSIBLE] + [("training", *case) for case in IMPOSSIBLE_TRAINING]


@pytest.mark.parametrize(("section", "what", "fields", "words"), CASES, ids=[case[1] for case in CASES])
def test_a_record_that_cannot_be_true_is_refused_when_read(tmp_path, capsys, section, what, fields, words):
    data = demo_record().to_dict()
    data[section].update(fields)
    folder = tmp_path / "records"
    folder.mkdir()
    path = folder / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match="r.json: ") as info:
        load_record(path)
    assert words in str(info.value)
    assert main(["leaderboard", "--records", str(folder)]) == 1
    assert words in capsys.readouterr().err


def test_a_possible_record_still_loads(tmp_path):
    data = demo_record(aa=0.44).to_dict()
    data["evaluation"].update(worst_case_acc=0.44, robust={"pgd-20": 0.47, "autoattack": 0.44})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert load_record(path).evaluation.worst_case_acc == 0.44


def test_the_leaderboard_checks_every_per_example_file_when_it_loads(tmp_path):
    folder = tmp_path / "records"
    record = saved_record(folder, correct(20, 15), correct(20, 8))
    assert "pgd-10" in write_report(folder, "md")
    points = folder / record.evaluation.per_example["file"]
    data = points.read_bytes()
    points.unlink()
    with pytest.raises(RecordError, match="cannot read the per-example results"):
        write_report(folder, "md")
    points.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(RecordError, match="do not match the sha256"):
        write_report(folder, "md")


def test_the_leaderboard_refuses_per_example_files_that_give_other_accuracies(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    record = demo_record(clean=0.5, pgd20=0.25, n=4)
    wrong = {"clean": np.array([True, True, True, False]), "pgd-20": np.array([True, False, False, False])}
    save(record, folder / "r.json", points=wrong)
    with pytest.raises(RecordError, match="clean accuracy 0.5, but its per-example file says 0.75"):
        write_report(folder, "md")


def test_a_record_that_cannot_be_true_is_never_written(tmp_path):
    import dataclasses

    record = demo_record()
    impossible = dataclasses.replace(record, evaluation=dataclasses.replace(
        record.evaluation, robust={"pgd-20": 0.9}, pgd20_acc=0.9))
    with pytest.raises(RecordError, match="not writing a record that cannot be true: pgd-20 accuracy 0.9 exceeds"):
        save(impossible, tmp_path / "r.json")
    assert not any(tmp_path.iterdir())
