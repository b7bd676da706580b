"""Older records as this schema reads them: what each version added, filled from what was known then.

Schema 2 added the training curve, the stop kind and cost, and per evaluation the worst
case, a 95% interval for every accuracy, the per-example results file, the randomness
verdict and the escalation stages: a schema-1 record's new fields take their defaults,
and its intervals are computed from n and the accuracy (``from_v1``).

Schema 3 added ``defense.single_step``: before it, the report asked the defense registry
of the day, so an old record's rendering depended on code written after it. A schema-1
or -2 record gets the answer of the day it was written (``from_v2``), never today's.

Schema 4 typed the parts nested in the sections (robustode.records.parts): the masking flags,
each attack's settings, the escalation stages, the extra training set, the ODE account. An
attack's settings (an escalation stage's too) keep each key of a typed field in it and the rest
under ``other``; an attack's f-evaluations per batch are named ``forward`` and ``backward``
(``typed_evaluation``: robustode.evaluation's results still hold the schema-3 form, and a new
record is made through it too). A part's field added since (``flags.loose_acc``, ``checks.
batch_change``, ...) takes its default. It added ``training.function_evaluations``, None in an
older record: its training's f-evaluations were not kept.
"""

from __future__ import annotations

from ..errors import RecordError
from ..stats import wilson
from .parts import AttackSettings

# The v2 migration's one fact: the built-in single-step defenses (one attack step per batch) while schema 1
# and 2 were written, by registry name. Frozen: registering or removing a defense today changes nothing here.
SINGLE_STEP_BEFORE_V3 = frozenset({"fgsm-rs", "n-fgsm", "grad-align"})


def single_step_before_v3(spec: str) -> bool:
    """Whether a defense spec written before schema 3 ("fgsm-rs(label_smoothing=0.1)", "pgd-10") was single-step."""
    return spec.split("(")[0].strip() in SINGLE_STEP_BEFORE_V3


def from_v2(d: dict, version: int, source: str) -> dict:
    """A schema-1 or -2 record's dict with ``defense.single_step`` filled from its spec (a new dict)."""
    defense = d.get("defense")
    if not isinstance(defense, dict) or not isinstance(defense.get("spec"), str):
        return d  # the build names the problem
    if "single_step" in defense:
        raise RecordError(f"{source}: field 'defense.single_step' came with schema 3, but the record says "
                          f"schema {version}")
    return {**d, "defense": {**defense, "single_step": single_step_before_v3(defense["spec"])}}


def from_v1(record) -> None:
    """A schema-1 record, just built (new fields at their defaults): its intervals from n and each accuracy."""
    ev = record.evaluation
    accuracies = {"clean": ev.clean_acc, **ev.robust}
    ev.intervals = {k: list(wilson(round(acc * ev.n), ev.n)) for k, acc in accuracies.items()}


def from_v3(d: dict) -> dict:
    """A schema-1 to -3 record's dict with its evaluation's nested parts in schema 4's form (a new dict)."""
    ev = d.get("evaluation")
    return {**d, "evaluation": typed_evaluation(ev)} if isinstance(ev, dict) else d


def typed_evaluation(ev: dict) -> dict:
    """An evaluation section as schema 3 stored it, in schema 4's form (a new dict; what is malformed is left
    for the build to name)."""
    out = dict(ev)
    if isinstance(ev.get("attack_settings"), dict):
        out["attack_settings"] = {k: _settings(v) for k, v in ev["attack_settings"].items()}
    if isinstance(ev.get("escalation"), list):
        out["escalation"] = [{**s, "settings": _settings(s["settings"])} if isinstance(s, dict) and "settings" in s
                             else s for s in ev["escalation"]]
    ode = ev.get("ode")
    if isinstance(ode, dict) and isinstance(ode.get("evaluations_per_batch"), dict):
        out["ode"] = {**ode, "evaluations_per_batch": {k: _evaluations(v)
                                                       for k, v in ode["evaluations_per_batch"].items()}}
    return out


_RENAMED = {"forward_per_batch": "forward", "backward_per_batch": "backward"}


def _settings(settings):
    return AttackSettings.stored(settings) if isinstance(settings, dict) else settings


def _evaluations(counts):
    return {_RENAMED.get(k, k): v for k, v in counts.items()} if isinstance(counts, dict) else counts
