"""--published: RobustBench's model_info figures beside robustode's, in the record, the terminal and the report."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import robustode as ro
from robustode.cli import main
from robustode.errors import DataError
from robustode.interop.robustbench_published import comparison, read_published
from robustode.records import load_record
from robustode.report import render_markdown

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

INFO = {"link": "https://arxiv.org/abs/2302.04638", "name": "x", "dataset": "cifar10", "eps": "8/255",
        "clean_acc": "92.44", "reported": "67.31", "autoattack_acc": "67.31", "external": "66.10",
        "unreliable": False}


def write(path, **changes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in {**INFO, **changes}.items() if v is not ...}))
    return path


def test_reads_percent_strings_and_finds_the_file_in_a_model_info_folder(tmp_path):
    write(tmp_path / "model_info" / "cifar10" / "Linf" / "Wang2023Better_WRN-28-10.json")
    figures = read_published(tmp_path, "Wang2023Better_WRN-28-10", "Linf")
    assert figures["clean"] == pytest.approx(0.9244) and figures["autoattack"] == pytest.approx(0.6731)
    assert figures["external"] == pytest.approx(0.661) and figures["source"].endswith("Wang2023Better_WRN-28-10.json")


@pytest.mark.parametrize(("changes", "message"), [
    ({"clean_acc": ...}, "has no 'clean_acc'"),
    ({"autoattack_acc": None}, "has no 'autoattack_acc'"),
    ({"clean_acc": "ninety"}, "clean_acc is 'ninety'; expected a percentage"),
    ({"autoattack_acc": "120"}, "autoattack_acc is '120'"),
    ({"external": True}, "external is True"),
])
def test_missing_or_malformed_fields_are_one_line_errors_naming_file_and_field(tmp_path, changes, message):
    path = write(tmp_path / "x.json", **changes)
    with pytest.raises(DataError, match=message) as err:
        read_published(path, "x", "Linf")
    assert "x.json" in str(err.value) and "\n" not in str(err.value)


def test_not_json_and_nothing_found(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="is not JSON"):
        read_published(tmp_path / "bad.json", "x", "Linf")
    with pytest.raises(DataError, match="no published figures for Y"):
        read_published(tmp_path, "Y", "Linf")


def test_comparison_says_the_difference_and_whether_the_interval_contains_it():
    ev = SimpleNamespace(clean_acc=0.93, worst_case_acc=0.60, robust={"autoattack": 0.66},
                         autoattack_spec="autoattack",
                         intervals={"clean": (0.92, 0.94), "autoattack": (0.65, 0.67), "worst_case": (0.59, 0.61)})
    rows = {r["figure"]: r for r in comparison({"source": "f", "clean": 0.9244, "autoattack": 0.6731,
                                                "external": 0.661}, ev)}
    assert rows["clean"]["inside"] is True and rows["clean"]["difference"] == pytest.approx(0.0056)
    assert rows["autoattack"]["as"] == "autoattack" and rows["autoattack"]["inside"] is False
    assert rows["external"]["as"] == "worst_case" and rows["external"]["inside"] is False


def test_cli_records_and_reports_the_published_figures(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(ro.create_model("dm_wrn10_1").state_dict(), tmp_path / "w.pt")
    info = write(tmp_path / "pub.json", clean_acc="12.50", autoattack_acc="99.00", external=...)
    common = ["--robustbench", "dm_wrn10_1", "--checkpoint", str(tmp_path / "w.pt"), "--dataset", "synthetic",
              "--n", "8", "--attacks", "pgd-1", "--no-masking-checks", "--device", "cpu", "--quiet"]
    assert main(["eval", *common, "--published", str(info), "--out", str(tmp_path / "r.json")]) == 0
    assert "RobustBench's published figures" in capsys.readouterr().out
    record = load_record(tmp_path / "r.json")
    assert record.defense.hyperparameters["published"]["autoattack"] == pytest.approx(0.99)
    assert "AA 99.00 ✗" in render_markdown([record])  # no 8-point interval reaches 99% from 12.5% clean
    assert main(["eval", "--checkpoint", str(tmp_path / "w.pt"), "--published", str(info)]) != 0
    assert "needs --robustbench" in capsys.readouterr().err
    assert main(["eval", *common, "--published", str(write(tmp_path / "bad.json", clean_acc="x"))]) != 0
    assert "bad.json: clean_acc is 'x'" in capsys.readouterr().err
