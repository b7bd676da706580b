"""The parts nested in a record are typed all the way down (schema 4): a schema-3 record's dicts load into
them without losing a key, a bad value deep inside is named by its path, and training.function_evaluations
holds an ODE run's f-evaluations (None for a discrete model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from records_fixtures import demo_record

from robustode.api import evaluate, fit
from robustode.cli import main
from robustode.data import make_synthetic
from robustode.defenses.natural import Natural
from robustode.errors import RecordError
from robustode.models import create
from robustode.records import (
    SCHEMA_VERSION,
    AttackSettings,
    EscalationStage,
    ExtraInfo,
    FunctionEvaluations,
    MaskingFlags,
    OdeInfo,
    ProbeInfo,
    Record,
    SubsetChecks,
    load_record,
    run_record,
    save,
)
from robustode.records.validate import plain

V3 = Path(__file__).parent / "fixtures" / "record_v3.json"


@pytest.fixture(scope="module")
def v3():
    return json.loads(V3.read_text()), load_record(V3)


def test_a_v3_record_loads_each_nested_part_into_its_type(v3):
    _, record = v3
    ev = record.evaluation
    assert all(isinstance(s, AttackSettings) for s in ev.attack_settings.values())
    assert ev.attack_settings["pgd-20"].steps == 20 and ev.attack_settings["pgd-20"].alpha == pytest.approx(2 / 255)
    aa = ev.attack_settings["autoattack-dev"]
    assert aa.attack == "autoattack" and aa.standard is False and aa.apgd_steps == 20 and aa.square_queries == 500
    cw = ev.attack_settings["torchattacks:CW"]
    assert cw.attack == "torchattacks.CW" and cw.steps == 5 and cw.other == {"c": 1, "kappa": 0}
    assert ev.autoattack_spec == "autoattack-dev"
    assert isinstance(ev.flags, MaskingFlags) and isinstance(ev.flags.checks, SubsetChecks)
    assert ev.flags.fired == ["non_finite"] and ev.flags.non_finite == {"torchattacks:CW": 1}
    assert ev.flags.checks.pgd_more == 0.09375 and ev.flags.checks.points_alone == 16
    assert ev.flags.composition.startswith("fixed batches") and ev.flags.pgd_autoattack_gap is None
    assert all(isinstance(s, EscalationStage) for s in ev.escalation)
    swap, square, transfer = ev.escalation
    assert swap.stage == "solver-swap" and swap.settings.attack_solver == ["rk4 h=0.0625 T=1"]
    assert swap.settings.test_solver == ["rk4 h=0.25 T=1"] and swap.broken == 1
    assert square.settings.n_queries == 5000 and square.settings.norm == "Linf"
    assert transfer.skipped.startswith("no surrogate") and transfer.settings is None and transfer.broken is None
    assert isinstance(record.dataset.extra, ExtraInfo)
    assert record.dataset.extra.count == 1000 and record.dataset.extra.fraction == 0.5
    assert isinstance(ev.ode, OdeInfo) and isinstance(ev.ode.probe, ProbeInfo)
    assert ev.ode.evaluations_per_batch["pgd-20"] == FunctionEvaluations(forward=320.0, backward=0.0)
    assert ev.ode.evaluations_per_batch["autoattack-dev"].forward == 1210.5
    assert ev.ode.probe.rows[0].own and ev.ode.probe.rows[1].method == "euler"
    assert ev.ode.probe.rows[1].step_size == 0.25 and ev.ode.probe.rows[0].method is None
    assert ev.ode.probe.lipschitz[0].block == "blocks.0" and ev.ode.probe.lipschitz[1].depth == 1
    assert record.training.function_evaluations is None  # schema 3 did not keep them


def _as_v3(settings: dict) -> dict:
    """Schema 4's stored settings, back in schema 3's flat form."""
    return {**{k: v for k, v in settings.items() if k != "other"}, **settings.get("other", {})}


def _set(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def test_nothing_a_v3_record_held_is_lost(v3):
    old, record = v3
    new = record.to_dict()
    before, after = old["evaluation"], new["evaluation"]
    assert {k: _set(s) for k, s in before["attack_settings"].items()} == \
        {k: _as_v3(s) for k, s in after["attack_settings"].items()}
    assert after["flags"] == {**after["flags"], **before["flags"], "checks": after["flags"]["checks"]}
    assert after["flags"]["checks"] == {**after["flags"]["checks"], **before["flags"]["checks"]}
    for was, now in zip(before["escalation"], after["escalation"], strict=True):
        assert {**now, "settings": now["settings"] and _as_v3(now["settings"])} == {**now, **was}
    assert new["dataset"]["extra"] == old["dataset"]["extra"]
    renamed = {k: {"forward": v["forward_per_batch"], "backward": v["backward_per_batch"]}
               for k, v in before["ode"]["evaluations_per_batch"].items()}
    probe = before["ode"]["probe"]  # a v3 probe did not say whether its estimates converged
    probe = {**probe, "lipschitz": [{**row, "converged": None} for row in probe["lipschitz"]]}
    assert after["ode"] == {**before["ode"], "evaluations_per_batch": renamed, "probe": probe}
    assert new["schema_version"] == SCHEMA_VERSION == 4


def test_a_record_goes_to_a_dict_and_back_equal(v3, tmp_path):
    _, record = v3
    again = Record.from_dict(json.loads(json.dumps(record.to_dict())), "again")
    assert again == record and plain(again) == plain(record)
    path = save(record, tmp_path / "r.json")
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 4 and load_record(path) == record
    assert raw["evaluation"]["attack_settings"]["torchattacks:CW"] == {"attack": "torchattacks.CW", "steps": 5,
                                                                        "other": {"c": 1, "kappa": 0}}
    assert "autocast_dtype" not in raw["evaluation"]["attack_settings"]["pgd-20"]  # a sparse part: only what applies
    assert set(raw["evaluation"]["flags"]) == {f for f in MaskingFlags.__dataclass_fields__}  # every field


def test_a_setting_without_a_field_of_its_type_is_kept_under_other():
    stored = AttackSettings.stored({"eps": 0.5, "steps": "ten", "kappa": 0, "version": "plus"})
    assert stored == {"eps": 0.5, "other": {"steps": "ten", "kappa": 0, "version": "plus"}}
    assert AttackSettings.stored({"steps": 3}) == {"steps": 3}


def _set_in(d: dict, path: list, value):
    for key in path[:-1]:
        d = d[key]
    d[path[-1]] = value


@pytest.mark.parametrize(("where", "value", "message"), [
    (["evaluation", "attack_settings", "pgd-20", "steps"], "20",
     "field 'evaluation.attack_settings.pgd-20.steps' must be an integer, got '20'"),
    (["evaluation", "escalation", 0, "settings", "eps"], -1.0,
     r"field 'evaluation.escalation\[0\].settings.eps' must lie in \[0.0, inf\]"),
    (["evaluation", "flags", "checks", "pgd20"], 1.5, r"field 'evaluation.flags.checks.pgd20' must lie in \[0.0, 1.0\]"),
    (["evaluation", "flags", "non_finite", "torchattacks:CW"], 0.5,
     "field 'evaluation.flags.non_finite.torchattacks:CW' must be an integer"),
    (["dataset", "extra", "digest_of"], "bytes", "field 'dataset.extra.digest_of' must be one of files, labels"),
    (["evaluation", "ode", "evaluations_per_batch", "pgd-20", "forward"], None,
     "field 'evaluation.ode.evaluations_per_batch.pgd-20.forward' must be a number"),
    (["evaluation", "ode", "probe", "rows", 1, "clean"], "high",
     r"field 'evaluation.ode.probe.rows\[1\].clean' must be a number"),
    (["training", "function_evaluations"], {"forward": 16.0},
     "missing field 'training.function_evaluations.backward'"),
])
def test_a_bad_value_inside_a_part_is_named_by_its_path(v3, tmp_path, where, value, message):
    d = v3[1].to_dict()
    d["training"]["function_evaluations"] = {"forward": 16.0, "backward": 0.0}
    _set_in(d, where, value)
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(RecordError, match=rf"bad\.json: {message}"):
        load_record(tmp_path / "bad.json")


def test_make_record_takes_parts_as_types_or_dicts():
    stage = EscalationStage(stage="square", why=["randomized"], points=4, broken=1)
    typed = demo_record(evaluation={"flags": MaskingFlags(fired=["zero_grad"]), "escalation": [stage]})
    given = demo_record(evaluation={"flags": {"fired": ["zero_grad"]},
                                    "escalation": [{"stage": "square", "why": ["randomized"], "points": 4,
                                                    "broken": 1}]})
    assert typed == given and typed.evaluation.escalation[0].broken == 1
    assert typed.evaluation.flags.fired == ["zero_grad"] and typed.evaluation.flags.checks is None


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("model", "expected"), [("ode_net16_1", FunctionEvaluations(forward=16.0, backward=0.0)),
                                                 ("resnet20", None)])
def test_training_function_evaluations_are_an_ode_runs_and_none_for_a_discrete_one(tmp_path, model, expected):
    data = make_synthetic(8, 4, seed=0)
    trained = fit(create(model), Natural(), data, epochs=2, batch_size=4, device="cpu", quiet=True,
                  out_dir=tmp_path / "run")
    ev = evaluate(trained.model, data, attacks=["pgd-1"], n=4, batch_size=4, quiet=True, masking_checks=False,
                  escalate=False)
    # rk4 with h = 0.25 over [0, 1]: 4 steps of 4 stages per forward, one forward per minibatch, no adjoint.
    record = run_record(trained, ev).record
    assert record.training.function_evaluations == expected
    per_epoch = [(row.get("evals_forward_per_batch"), row.get("evals_backward_per_batch")) for row in record.training.curve]
    assert per_epoch == ([(None, None)] * 2 if expected is None else [(16.0, 0.0)] * 2)  # each epoch, in the curve


@pytest.mark.usefixtures("one_thread")
def test_probe_adds_a_typed_probe_to_a_trained_ode_runs_record(tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--model", "ode_net16_1", "--dataset", "synthetic", "--train-subset", "16", "--epochs", "1",
                 "--batch-size", "8", "--n", "4", "--quiet", "--no-masking-checks", "--defense", "natural",
                 "--out", str(out), "--name", "r"]) == 0
    path = out / "r" / "record.json"
    before = load_record(path)
    assert before.training.function_evaluations == FunctionEvaluations(forward=16.0, backward=0.0)
    assert before.evaluation.ode.solvers == ["rk4 h=0.25 T=1"] and before.evaluation.ode.probe is None
    assert main(["probe", str(out / "r" / "checkpoints" / "last.pt"), "--n", "4", "--batch-size", "4",
                 "--setting", "method=euler,step_size=0.5", "--no-lipschitz", "--record", str(path)]) == 0
    probe = load_record(path).evaluation.ode.probe
    own, euler = probe.rows
    assert own.own and own.method is None and own.evals_per_forward == 16.0
    assert (euler.method, euler.step_size, euler.evals_per_forward) == ("euler", 0.5, 2.0) and probe.n == 4
    assert load_record(path).evaluation.ode.evaluations_per_batch == before.evaluation.ode.evaluations_per_batch
