import copy
import dataclasses
import json
import math

import numpy as np
import pytest
from records_fixtures import demo_record

from robustode.errors import RecordError
from robustode.records import (
    SCHEMA_VERSION,
    Record,
    load_record,
    load_record_points,
    load_records,
    make_record,
    record_filename,
    save,
    save_in,
)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_round_trip_keeps_every_field_and_type(tmp_path):
    rec = demo_record(aa=0.44, label="run a")
    path = save(rec, tmp_path / "r.json")
    assert load_record(path) == rec
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    assert type(raw["evaluation"]["clean_acc"]) is float
    assert type(raw["evaluation"]["n"]) is int
    assert type(raw["model"]["params"]) is int
    assert raw["evaluation"]["robust"] == {"pgd-20": 0.47, "autoattack": 0.44}
    assert raw["defense"]["hyperparameters"]["eps"] == 8 / 255
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_integer_accuracy_reads_as_float(tmp_path):
    data = demo_record().to_dict()
    data["evaluation"]["clean_acc"] = 1
    del data["evaluation"]["intervals"]["clean"]  # it would not hold 1
    rec = load_record(write_json(tmp_path / "r.json", data))
    assert rec.evaluation.clean_acc == 1.0 and type(rec.evaluation.clean_acc) is float


def test_malformed_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"schema_version": 1, "model": ')
    with pytest.raises(RecordError, match=r"broken\.json: not valid JSON"):
        load_record(path)


@pytest.mark.parametrize("section,key", [("evaluation", "clean_acc"), ("provenance", "device"),
                                         (None, "dataset"), ("training", "stopped_early")])
def test_missing_field_is_named(tmp_path, section, key):
    data = demo_record().to_dict()
    del (data[section] if section else data)[key]
    path = write_json(tmp_path / "gap.json", data)
    dotted = f"{section}.{key}" if section else key
    with pytest.raises(RecordError, match=rf"gap\.json: missing field '{dotted}'"):
        load_record(path)


@pytest.mark.parametrize("section,key,value,words", [
    ("evaluation", "clean_acc", "0.87", "must be a number"),
    ("evaluation", "n", 10000.0, "must be an integer"),
    ("evaluation", "n", True, "must be an integer"),
    ("evaluation", "autoattack_standard", 1, "must be true or false"),
    ("evaluation", "pgd20_acc", 47.0, r"must lie in \[0.0, 1.0\]"),
    ("evaluation", "robust", {"pgd-20": "0.47"}, "pgd-20' must be a number"),
    ("evaluation", "norm", "l1", "must be one of linf, l2"),
    ("dataset", "kind", "cifar", "must be one of real, jpeg-copy"),
    ("training", "seconds", -1.0, "must lie in"),
    ("model", "params", "46M", "must be an integer"),
    ("provenance", "date", "yesterday", "must be an ISO date"),
    ("defense", "hyperparameters", [1, 2], "must be an object"),
])
def test_wrong_type_or_value_is_named(tmp_path, section, key, value, words):
    data = demo_record().to_dict()
    data[section][key] = value
    with pytest.raises(RecordError, match=rf"bad\.json: field '{section}\.{key}.*{words}"):
        load_record(write_json(tmp_path / "bad.json", data))


def test_unknown_field_is_an_error(tmp_path):
    data = demo_record().to_dict()
    data["evaluation"]["pgd20"] = 0.5
    with pytest.raises(RecordError, match="unknown field 'evaluation.pgd20'"):
        load_record(write_json(tmp_path / "typo.json", data))


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None])
def test_schema_version_mismatch(tmp_path, version):
    data = demo_record().to_dict()
    data["schema_version"] = version
    with pytest.raises(RecordError, match=r"old\.json: schema version .* reads versions 1, 2, 3"):
        load_record(write_json(tmp_path / "old.json", data))


def test_not_an_object(tmp_path):
    with pytest.raises(RecordError, match=r"list\.json: a record must be a JSON object"):
        load_record(write_json(tmp_path / "list.json", [1, 2]))


def test_nan_cannot_be_stored():
    with pytest.raises(RecordError, match="clean_acc' must be a number"):
        demo_record(clean=math.nan)


def test_make_record_rejects_what_json_cannot_hold():
    rec = demo_record().to_dict()
    rec["defense"]["hyperparameters"]["eps"] = object()
    with pytest.raises(RecordError, match="cannot be written as JSON"):
        make_record(**{k: rec[k] for k in SECTIONS})


SECTIONS = ("model", "defense", "dataset", "training", "evaluation", "provenance")


def test_make_record_rejects_unknown_keyword():
    rec = demo_record().to_dict()
    rec["model"]["depth"] = 34
    with pytest.raises(RecordError, match="unknown field 'model.depth'"):
        make_record(**{k: rec[k] for k in SECTIONS})
    del rec["model"]["depth"], rec["evaluation"]["attack_settings"]["pgd-20"]["steps"]
    rec["evaluation"]["attack_settings"]["pgd-20"]["stpes"] = 20  # a part's field by another name
    with pytest.raises(RecordError, match="unknown field 'evaluation.attack_settings.pgd-20.stpes'"):
        make_record(**{k: rec[k] for k in SECTIONS})


def test_save_never_overwrites(tmp_path):
    path = save(demo_record(clean=0.5), tmp_path / "new" / "r.json")
    with pytest.raises(RecordError, match="exists already"):
        save(demo_record(clean=0.9), path)
    assert load_record(path).evaluation.clean_acc == 0.5
    save(demo_record(clean=0.9), path, overwrite=True)
    assert load_record(path).evaluation.clean_acc == 0.9


def test_save_in_picks_fresh_names(tmp_path):
    rec = demo_record(dataset="imagefolder:/data/cifar10-jpeg", kind="jpeg-copy")
    paths = [save_in(rec, tmp_path / "records") for _ in range(3)]
    assert len(set(paths)) == 3
    assert paths[0].name == record_filename(rec)
    assert paths[0].name == "imagefolder_data_cifar10_jpeg__wrn34_10__pgd-10__s0__2025-01-02T030405Z.json"
    assert load_records(tmp_path / "records") == [rec, rec, rec]


def test_load_records_names_every_bad_file(tmp_path):
    save(demo_record(), tmp_path / "good.json")
    (tmp_path / "a_bad.json").write_text("not json")
    data = demo_record().to_dict()
    del data["evaluation"]["n"]
    write_json(tmp_path / "z_bad.json", data)
    with pytest.raises(RecordError, match=r"2 bad record file\(s\).*a_bad\.json.*z_bad\.json: missing"):
        load_records(tmp_path)


def test_load_records_missing_folder(tmp_path):
    with pytest.raises(RecordError, match="no such records folder"):
        load_records(tmp_path / "nowhere")


def test_from_dict_is_the_inverse_of_to_dict():
    rec = demo_record(aa=0.4, aa_standard=False)
    assert Record.from_dict(rec.to_dict()) == rec


def test_save_leaves_the_record_as_it_was_and_writes_the_points_beside_it(tmp_path):
    rec = demo_record(n=4, clean=0.75, pgd20=0.25)  # the points' own accuracies
    before = copy.deepcopy(rec.to_dict())
    points = {"clean": np.array([True, True, False, True]), "pgd-20": np.array([True, False, False, False])}
    path = save(rec, tmp_path / "r.json", points=points)
    again = save_in(rec, tmp_path / "records", points=points)
    assert rec.to_dict() == before and rec.schema_version == SCHEMA_VERSION  # every field, version included
    assert rec.evaluation.per_example is None and rec.path is None  # nothing remembered of where it went
    written = load_record(path)
    assert written.path == path and load_record(again).evaluation == written.evaluation
    sha = written.evaluation.per_example["sha256"]
    assert written.evaluation.per_example["file"] == f"points-{sha[:16]}.npz"
    assert written == dataclasses.replace(rec, evaluation=dataclasses.replace(
        rec.evaluation, per_example=written.evaluation.per_example))
    assert {k: v.tolist() for k, v in load_record_points(written).items()} == {k: v.tolist() for k, v in
                                                                               points.items()}
    with pytest.raises(RecordError, match="not read from a file"):
        load_record_points(dataclasses.replace(rec, evaluation=written.evaluation))
