"""Building a Record: from one dict per section, or from a run, its training and its evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass

from .io import dumps
from .migrate import typed_evaluation
from .schema import DatasetInfo, DefenseInfo, EvaluationInfo, ModelInfo, Provenance, Record, TrainingInfo
from .validate import build


def make_record(*, model: dict, defense: dict, dataset: dict, training: dict, evaluation: dict,
                provenance: dict, label: str | None = None, notes: str | None = None,
                command: str | None = None) -> Record:
    """Build and validate a record from one dict per section.

    Each dict holds that section's fields (see ``ModelInfo``, ``DefenseInfo``,
    ``DatasetInfo``, ``TrainingInfo``, ``EvaluationInfo``, ``Provenance``), its nested
    parts as dicts or as their types (robustode.records.parts); fields with a default
    may be left out, in the parts too. ``provenance`` is what
    ``robustode.utils.provenance(device, precision)`` returns.
    """
    sections = {"model": (ModelInfo, model), "defense": (DefenseInfo, defense),
                "dataset": (DatasetInfo, dataset), "training": (TrainingInfo, training),
                "evaluation": (EvaluationInfo, evaluation), "provenance": (Provenance, provenance)}
    # Each section checked as it is built: a bad field is named by its path before JSON would.
    built = {name: build(cls, values, "new record", f"{name}.", lenient=True)
             for name, (cls, values) in sections.items()}
    record = Record(**built, label=label, notes=notes, command=command)
    # Through JSON and back, so the record equals what loading its file will give.
    return Record.from_dict(json.loads(dumps(record)), source="new record")



CURVE = ("epoch", "nominal_epoch", "lr", "loss", "train_acc", "eval_clean", "eval_robust")  # per data epoch
ODE_CURVE = ("evals_forward_per_batch", "evals_backward_per_batch")  # an ODE model's epochs (a diverged one: none)


@dataclass(frozen=True)
class Evaluated:
    """A record and the per-point results it summarises; ``save(e.record, path, points=e.points)`` writes
    both (the points beside the record, which the file then references)."""

    record: Record
    points: dict  # name -> bool per test point: "clean", each attack (and escalation stage), "worst_case"


def run_record(trained, evaluation, *, dataset: DatasetInfo | None = None, label: str | None = None,
               command: str | None = None, notes: str | None = None) -> Evaluated:
    """The record of a trained run and its evaluation, with the evaluation's per-point results: the one
    place a Record is made from them.

    ``trained`` is a robustode.training.TrainResult (of a finished run, or read back
    with ``TrainResult.from_checkpoint``), ``evaluation`` a robustode.evaluation.EvalResult.
    ``dataset`` describes the data evaluated on when it is not the run's own (its
    ``n_train`` should stay the run's).
    """
    run = trained.run
    train = run.train
    optimizer = {"lr": train.lr, "momentum": train.momentum, "weight_decay": train.weight_decay,
                 "schedule": train.schedule, "milestones": list(train.milestones), "gamma": train.gamma,
                 # momentum moved against the lr, down to momentum_min at its peak; None: it did not cycle
                 "momentum_min": train.momentum_min if train.cycle_momentum else None}
    record = make_record(
        model={"name": run.model.name or run.model.class_name, "params": run.model.params},
        defense={"spec": run.defense.spec, "name": defense_family(run.defense.spec),
                 "single_step": run.defense.single_step, "hyperparameters": run.defense.hyperparameters},
        dataset=dataclasses.asdict(dataset or run.data),
        training={"epochs": trained.nominal_epochs, "batch_size": train.batch_size, "seed": train.seed,
                  "seconds": trained.train_seconds, "images_per_second": trained.images_per_second,
                  "passes_per_image": trained.passes_per_image, "optimizer": optimizer,
                  "stopped_early": trained.stopped_reason, "stop_kind": trained.stop and trained.stop.kind,
                  "curve": [_curve_row(row) for row in trained.history],
                  "best_epoch": trained.best and trained.best["epoch"], "world_size": train.world_size,
                  "peak_memory_bytes": trained.peak_memory_bytes, "flops_per_image": trained.flops_per_image,
                  "function_evaluations": trained.function_evaluations},
        evaluation=evaluation_section(evaluation),
        provenance=dataclasses.asdict(run.provenance), label=label, notes=notes, command=command)
    return Evaluated(record, evaluation.per_point)


def checkpoint_record(model: dict, defense: dict, evaluation, dataset: DatasetInfo, *, label: str | None = None,
                      command: str | None = None, notes: str | None = None) -> Evaluated:
    """The record of a checkpoint robustode did not train (a RobustBench entry): its evaluation, no training facts.

    ``model`` is {"name", "params"}; ``defense`` names where the weights came from, e.g. {"spec":
    "robustbench:Wang2023Better_WRN-28-10", "name": "robustbench", "single_step": False, "hyperparameters": {}}.
    """
    record = make_record(
        model=model, defense=defense, dataset=dataclasses.asdict(dataset),
        # What its training cost is unknown (None), so a cost plot leaves it out and says why.
        training={"epochs": 0, "batch_size": None, "seed": evaluation.seed, "seconds": None,
                  "images_per_second": None, "passes_per_image": None},
        evaluation=evaluation_section(evaluation), provenance=evaluation.provenance, label=label, notes=notes,
        command=command)
    return Evaluated(record, evaluation.per_point)


def evaluation_section(ev) -> dict:
    """The record's evaluation section from a robustode.evaluation.EvalResult (whose flags, attack settings,
    escalation stages and ODE account are dicts in schema 3's form: typed as a schema-3 record's are)."""
    robust = dict(ev.robust)
    # AutoAttack under any spec ("autoattack", "autoattack-dev", with settings): its own flag says standard.
    aa = next((k for k in robust if ev.attack_settings.get(k, {}).get("attack") == "autoattack"), None)
    eps = ev.eps if ev.eps is not None else 0.0  # a CorruptionResult's threat model has none
    section = {"n": ev.n, "norm": ev.norm, "eps": eps, "clean_acc": ev.clean_acc,
               "pgd20_acc": robust.get("pgd-20"), "autoattack_acc": robust.get(aa) if aa else None,
               "autoattack_standard": bool(aa and ev.attack_settings[aa].get("standard")), "robust": robust,
               "attack_settings": ev.attack_settings, "seconds": ev.seconds, "flags": ev.flags,
               "worst_case_acc": ev.worst_case, "intervals": {k: list(v) for k, v in ev.intervals.items()},
               "interval_method": ev.interval_method, "randomized": ev.randomized, "escalation": ev.escalation,
               "ode": getattr(ev, "ode", None)}  # a CorruptionResult has none
    return typed_evaluation(section)


def _curve_row(row: dict) -> dict:
    """A metrics row as the record's curve keeps it: CURVE, and an ODE model's f-evaluations where counted."""
    return {**{k: _finite(row.get(k)) for k in CURVE}, **{k: row[k] for k in ODE_CURVE if k in row}}


def _finite(value):
    """JSON has no NaN: a diverged epoch's loss is recorded as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def defense_family(spec: str) -> str:
    """The spec without its numbers and settings: "yopo-5-3" -> "yopo", "fgsm-rs" -> "fgsm-rs"."""
    return re.sub(r"-\d+", "", spec.split("(")[0].strip())
