"""A record of every schema version still loads and renders as it did, whatever is registered today:
one fixture per version (tests/fixtures/record_v<N>.json), the schema-3 field filled by the v2 migration, the
nested parts typed by the v3 one (tests/test_record_parts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from records_fixtures import demo_record

from robustode.defenses import Defense, defenses
from robustode.errors import RecordError
from robustode.records import SCHEMA_VERSION, load_record, load_record_points, save
from robustode.records.migrate import SINGLE_STEP_BEFORE_V3
from robustode.report import group_records, render

FIXTURES = Path(__file__).parent / "fixtures"
# (fixture, its defense spec, single-step as its day knew it)
VERSIONS = [("record_v1.json", "yopo-5-3", False), ("record_v2.json", "fgsm-rs", True),
            ("record_v3.json", "pgd-3", False)]


def row_of(record):
    (group,) = group_records([record], significance=False)
    (row,) = group.rows
    return row


def test_there_is_a_fixture_of_every_older_version():
    versions = {json.loads((FIXTURES / name).read_text())["schema_version"] for name, _, _ in VERSIONS}
    assert versions == set(range(1, SCHEMA_VERSION))


@pytest.mark.parametrize(("name", "spec", "single_step"), VERSIONS)
def test_each_version_loads_and_renders(name, spec, single_step):
    record = load_record(FIXTURES / name)
    assert record.schema_version == SCHEMA_VERSION and record.defense.spec == spec
    assert record.defense.single_step is single_step and row_of(record).single_step is single_step
    md = render([record], "md")
    assert ("Collapsed" in md) is single_step and f"| {spec} " in md


def test_a_v2_record_keeps_its_per_example_file():
    record = load_record(FIXTURES / "record_v2.json")
    points = load_record_points(record)
    assert set(points) >= {"clean", "pgd-20", "worst_case"} and points["clean"].mean() == record.evaluation.clean_acc


def test_an_old_record_renders_the_same_whatever_is_registered_today():
    old = load_record(FIXTURES / "record_v2.json")
    before = (render([old], "md"), render([old], "html"))
    entry = defenses.entries("fgsm-rs")[0]
    defenses.remove("fgsm-rs")
    try:
        assert (render([old], "md"), render([old], "html")) == before  # fgsm-rs unknown today
        assert load_record(FIXTURES / "record_v2.json") == old  # and loaded again without it

        class NotSingleStep(Defense):
            single_step = False

        defenses.add("fgsm-rs", NotSingleStep)  # a new defense named like the old record's spec
        assert load_record(FIXTURES / "record_v2.json").defense.single_step
        assert (render([old], "md"), render([old], "html")) == before
    finally:
        defenses.remove("fgsm-rs")
        defenses.add("fgsm-rs", entry.factory)


@pytest.mark.parametrize(("spec", "single_step"), [("fgsm-rs", True), ("fgsm-rs(label_smoothing=0.1)", True),
                                                   ("n-fgsm(ema_decay=0.99, awp_gamma=0.01)", True),
                                                   (" grad-align ( lam=0.2 )", True), ("pgd-10", False),
                                                   ("free-8", False), ("my-one-step", False)])
def test_the_v2_migration_reads_the_spec_against_its_frozen_table(tmp_path, spec, single_step):
    data = load_record(FIXTURES / "record_v2.json").to_dict()
    data["schema_version"] = 2
    del data["defense"]["single_step"]
    data["defense"]["spec"] = spec
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    assert load_record(path).defense.single_step is single_step
    assert SINGLE_STEP_BEFORE_V3 == {"fgsm-rs", "n-fgsm", "grad-align"}  # the built-ins of schema 2's day


def test_the_field_belongs_to_schema_3_only(tmp_path):
    data = demo_record().to_dict()
    data["schema_version"] = 2  # a v2 file cannot say single_step: the migration would hide what it said
    (tmp_path / "v2.json").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"v2\.json: field 'defense.single_step' came with schema 3"):
        load_record(tmp_path / "v2.json")
    data["schema_version"] = 3
    del data["defense"]["single_step"]
    (tmp_path / "v3.json").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"v3\.json: missing field 'defense.single_step'"):
        load_record(tmp_path / "v3.json")


def test_a_new_record_says_single_step_in_its_file(tmp_path):
    path = save(demo_record(defense="fgsm-rs"), tmp_path / "r.json")
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 4 and raw["defense"]["single_step"] is True
