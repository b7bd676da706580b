"""Every output is guarded: an existing file is replaced only with --force, and nothing that is not a record
is written into a folder of records (issue 30, item 1)."""

from __future__ import annotations

import json

import pytest
from records_fixtures import demo_record

from robustode.cli import main
from robustode.errors import ConfigError
from robustode.files import check_output_file, holds_records
from robustode.records import load_records, save_in
from robustode.records.io import record_files
from robustode.report import write_report


@pytest.fixture
def records(tmp_path):
    folder = tmp_path / "records"
    save_in(demo_record(), folder)
    return folder


def test_a_leaderboard_never_replaces_a_record(records, capsys):
    (record,) = records.glob("*.json")
    before = record.read_text()
    for extra in ([], ["--force"]):
        assert main(["leaderboard", "--records", str(records), "--format", "json", "--out", str(record),
                     *extra]) == 1
        assert "records" in capsys.readouterr().err and record.read_text() == before
    assert len(load_records(records)) == 1


def test_a_leaderboard_is_not_written_among_records_it_does_not_read(records, tmp_path, capsys):
    other = tmp_path / "other-records"
    save_in(demo_record(seed=1), other)
    assert main(["leaderboard", "--records", str(records), "--format", "csv", "--out", str(other / "a.csv")]) == 1
    assert "folder of records" in capsys.readouterr().err and not (other / "a.csv").exists()
    empty = tmp_path / "empty-records"
    empty.mkdir()
    with pytest.raises(ConfigError, match="among the records"):
        write_report(empty, "md", empty / "board.md")


def test_a_leaderboard_replaces_an_existing_report_only_with_force(records, tmp_path, capsys):
    out = tmp_path / "board.md"
    out.write_text("an earlier report")
    assert main(["leaderboard", "--records", str(records), "--out", str(out)]) == 1
    assert "exists; not overwriting it" in capsys.readouterr().err and out.read_text() == "an earlier report"
    assert main(["leaderboard", "--records", str(records), "--out", str(out), "--force"]) == 0
    assert "pgd-10" in out.read_text()


def test_records_may_go_into_a_records_folder(records, tmp_path):
    assert holds_records(records) and not holds_records(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "list.json").write_text(json.dumps(["schema_version"]))
    assert not holds_records(tmp_path / "plain")
    (tmp_path / "named").mkdir()
    (tmp_path / "named" / "data__model__defense__s0.json").write_text("{}")  # named as records are named
    assert holds_records(tmp_path / "named")
    below = {p.parent for p in record_files(tmp_path)}  # what the leaderboard reads: the same definition
    assert below == {records, tmp_path / "named"}
    assert all(holds_records(f) == (f in below) for f in (records, tmp_path / "named", tmp_path / "plain"))
    assert check_output_file(records / "new.json", record=True) == records / "new.json"


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../outside", "/tmp/abs", "a\\b", ".hidden", "", "my run"])
def test_a_run_name_that_is_no_folder_name_is_refused_before_anything_is_created(tmp_path, capsys, name):
    out = tmp_path / "deep" / "runs"
    argv = ["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "16", "--epochs", "1",
            "--defense", "natural", "--out", str(out), "--name", name]
    assert main(argv) == 2
    assert "is no run name" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists() and sorted(p.name for p in tmp_path.iterdir()) == []
