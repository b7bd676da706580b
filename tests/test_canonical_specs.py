"""A spec has one spelling (defaults dropped, spaces removed, numbers normalized) in run names, records and
tables, and a table row counts training runs, not evaluations of one run's weights (issue 30, item 5)."""

from __future__ import annotations

import dataclasses

import pytest
from records_fixtures import demo_record

from robustode.attacks.spec import build
from robustode.cli.commands import run_name
from robustode.cli.parser import build_parser
from robustode.defenses import create_defense
from robustode.report import render
from robustode.report.tables import group_records
from robustode.specs import normalized_spec


def test_equivalent_defense_specs_have_one_spelling():
    alpha = create_defense("pgd-1").alpha
    same = ["pgd-1", "pgd-1()", f" pgd-1 ( alpha = {alpha!r} ) ", "pgd-1(steps=1)", f"pgd-1(alpha={alpha * 255:g}/255)"]
    assert {create_defense(spec).spec for spec in same} == {"pgd-1"}
    assert create_defense("pgd-10(alpha=0.00784313725490196)").spec == create_defense("pgd-10(alpha=2/255)").spec
    assert create_defense("pgd-7( alpha=3/255 ,eps=8/255)").spec == "pgd-7(alpha=3/255)"  # eps 8/255 is the default
    assert create_defense("pgd-7(steps=9)").spec == "pgd-7(steps=9)"  # the parentheses refine the name


def test_equivalent_attack_specs_have_one_name_within_their_evaluation():
    assert {build(s, eps=8 / 255).name for s in ["pgd-20", "pgd-20()", " pgd-20( restarts = 1 ) "]} == {"pgd-20"}
    assert build("pgd-20(restarts=5,norm=l2)", eps=0.5).name == build("pgd-20(norm=l2, restarts=5)", eps=0.5).name
    assert build("pgd-20(eps=8/255)", eps=8 / 255).name == "pgd-20"  # the evaluation's own eps
    assert build("pgd-20(eps=8/255)", eps=4 / 255).name == "pgd-20(eps=8/255)"  # not the evaluation's


def test_equivalent_specs_make_one_run_name():
    parser = build_parser()
    names = {run_name(parser.parse_args(["train", "--model", "vit_tiny", "--defense", spec])) for spec in
             ["pgd-1", "pgd-1()", " pgd-1 ( steps = 1 ) "]}
    assert names == {"cifar10-vit_tiny-pgd-1-s0"}


def test_a_spec_normalizes_without_the_registry():
    assert normalized_spec(" pgd-1 ( beta = 6.0, alpha = 0.00784313725490196 ) ") == "pgd-1(alpha=2/255, beta=6)"
    assert normalized_spec("pgd-1()") == "pgd-1"


@pytest.fixture
def two_spellings():
    a = demo_record(defense="pgd-10(alpha=2/255, eps=8/255)", seed=0)
    b = demo_record(defense="pgd-10 ( eps = 8/255 , alpha = 0.00784313725490196 ) ", seed=1,
                    date="2025-01-03T03:04:05+00:00", training={"seconds": 700.0, "images_per_second": 105 * 50_000 / 700})
    return a, b


def test_old_records_of_two_spellings_of_one_spec_share_a_row(two_spellings):
    (group,) = group_records(two_spellings, significance=False)
    assert len(group.rows) == 1 and group.rows[0].seeds == [0, 1]


def test_two_evaluations_of_one_run_are_not_two_seeds(two_spellings):
    first, _ = two_spellings
    again = dataclasses.replace(first, provenance=dataclasses.replace(first.provenance,
                                                                      date="2025-02-01T00:00:00+00:00"))
    (group,) = group_records([first, again], significance=False)
    (row,) = group.rows
    assert row.seeds == [0] and row.runs == [again] and row.repeats == [first]
    assert "(+1 repeat evaluation)" in render([first, again], "md")


def test_compare_meets_an_older_spelling_of_an_attack(tmp_path):
    import numpy as np

    from robustode.records import compare, load_record, save

    old = demo_record(clean=0.75, pgd20=0.25, n=4)
    old = dataclasses.replace(old, evaluation=dataclasses.replace(old.evaluation, robust={"pgd-20()": 0.25}))
    new = demo_record(clean=0.5, pgd20=0.25, n=4, seed=1)
    t, f = True, False
    a = load_record(save(old, tmp_path / "a" / "r.json", points={
        "clean": np.array([t, t, t, f]), "pgd-20()": np.array([t, f, f, f]), "worst_case": np.array([t, f, f, f])}))
    b = load_record(save(new, tmp_path / "b" / "r.json", points={
        "clean": np.array([t, t, f, f]), "pgd-20": np.array([f, t, f, f]), "worst_case": np.array([f, t, f, f])}))
    rows = compare(a, b)
    assert [r.metric for r in rows] == ["clean", "pgd-20()", "worst_case"]
    assert (rows[1].only_a, rows[1].only_b) == (1, 1)


def test_combine_takes_an_older_spelling_of_the_same_run_and_attack(tmp_path):
    import numpy as np

    from robustode.records import combine, load_record, save

    t, f = True, False
    points = {"clean": np.array([t, t, t, f]), "pgd-20": np.array([t, f, f, f]), "worst_case": np.array([t, f, f, f])}
    new = demo_record(clean=0.75, pgd20=0.25, n=4)
    old = dataclasses.replace(new, defense=dataclasses.replace(new.defense, spec="pgd-10(alpha=2/255)"),
                              evaluation=dataclasses.replace(new.evaluation, robust={"pgd-20()": 0.25}))
    old_points = {"clean": points["clean"], "pgd-20()": points["pgd-20"], "worst_case": points["worst_case"]}
    merged = combine([load_record(save(new, tmp_path / "a" / "r.json", points=points)),
                      load_record(save(old, tmp_path / "b" / "r.json", points=old_points))])
    assert list(merged.record.evaluation.robust) == ["pgd-20"] and merged.record.evaluation.worst_case_acc == 0.25
