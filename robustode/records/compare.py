"""Two runs on the same test points, compared point by point; several evaluations of one model, combined.

    rows = compare(load_record("a.json"), load_record("b.json"))
    rows[1].p_value          # exact McNemar on the points where the two disagree

Comparing two intervals wastes the pairing: both runs see the same easy and hard
points, so only the points where they disagree say which is better. McNemar's exact
test asks whether those split evenly (robustode.stats.mcnemar_exact).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from ..errors import RecordError
from ..specs import spelling
from ..stats import interval, mcnemar_exact
from ..text import pct, table
from .build import Evaluated
from .io import load_record_points, point_meta
from .parts import AttackSettings
from .schema import Record

SIGNIFICANCE = 0.05
SAME_POINTS = ("dataset", "kind", "n", "norm", "eps")


@dataclass(frozen=True)
class Comparison:
    metric: str  # "clean", an attack spec, or "worst_case"
    a: float  # accuracy of the first run
    b: float
    only_a: int  # points the first run gets right and the second does not
    only_b: int
    p_value: float  # two-sided exact McNemar

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE


class Comparisons(list):
    """The rows of ``compare``: a list of Comparison that prints as the table ``robustode compare`` shows."""

    def __str__(self) -> str:
        rows = [[c.metric, pct(c.a), pct(c.b), f"{100 * (c.a - c.b):+.2f}", str(c.only_a), str(c.only_b),
                 f"{c.p_value:.3g}", "yes" if c.significant else "no"] for c in self]
        legend = ("a-b: percentage points; only a / only b: the points one run gets right and the other not, "
                  "on which McNemar's exact two-sided test is run")
        header = ["", "a", "b", "a-b", "only a", "only b", "McNemar p", f"p < {SIGNIFICANCE}"]
        return f"{table(header, rows)}\n{legend}"

    __repr__ = __str__


def compare(a: Record, b: Record) -> Comparisons:
    """Clean, every attack both ran, and the worst case, point by point on the same test points."""
    same_points(a, b)
    pa, pb = load_record_points(a), load_record_points(b)
    # Every accuracy with a right-or-wrong per point in both (the corruptions' mean has none); an attack
    # by its spelling, so an older record's "pgd-20()" meets a newer one's "pgd-20".
    in_b = {spelling(k): k for k in b.evaluation.robust if k in pb}
    pairs = [("clean", "clean"), *((k, in_b[spelling(k)]) for k in a.evaluation.robust
                                   if k in pa and spelling(k) in in_b), ("worst_case", "worst_case")]
    rows = Comparisons()
    for metric, other in pairs:
        x, y = torch.as_tensor(pa[metric]), torch.as_tensor(pb[other])
        only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
        rows.append(Comparison(metric, x.float().mean().item(), y.float().mean().item(), only_a, only_b,
                               mcnemar_exact(only_a, only_b)))
    return rows


def _run_facts(record: Record, section: str):
    """What two records of one run share: a defense by its family and resolved settings (its spec may be
    spelt differently by an older robustode)."""
    if section != "defense":
        return getattr(record, section)
    d = record.defense
    return d.name, d.single_step, d.hyperparameters


def same_points(a: Record, b: Record) -> None:
    """RecordError unless both records were evaluated on the same test points under the same threat."""
    ma, mb = point_meta(a), point_meta(b)
    differ = [f"{k} {ma[k]!r} vs {mb[k]!r}" for k in SAME_POINTS if ma[k] != mb[k]]
    if differ:
        raise RecordError(f"not evaluated on the same points: {'; '.join(differ)}")


def combine(records: list[Record]) -> Evaluated:
    """One record from evaluations of the same trained model run at different times: every attack, and
    the worst case per point over all of them (the training facts must agree), with its per-point results.

    The records must have been read from files (their per-point results lie beside them); ``save(
    combined.record, path, points=combined.points)`` writes the result."""
    if len(records) < 2:
        raise RecordError("combine needs at least two records")
    first = records[0]
    for other in records[1:]:
        same_points(first, other)
        for section in ("model", "defense", "training"):
            if _run_facts(other, section) != _run_facts(first, section):
                raise RecordError(f"records of different runs cannot be combined (their {section} differs)")
    points = [load_record_points(r) for r in records]
    merged = dataclasses.replace(copy.deepcopy(first), path=None)  # a new record: saved, it names its points
    ev = merged.evaluation
    ev.per_example = None
    worst = torch.ones(ev.n, dtype=torch.bool)
    per_point = {"clean": torch.as_tensor(points[0]["clean"])}
    keys = {spelling(name): name for name in ev.robust}  # one attack in two spellings is one column
    for record, arrays in zip(records, points):
        worst &= torch.as_tensor(arrays["worst_case"])
        for name in record.evaluation.robust:
            key = keys.setdefault(spelling(name), name)
            per_point[key] = torch.as_tensor(arrays[name])
            ev.robust[key] = record.evaluation.robust[name]
            ev.attack_settings[key] = record.evaluation.attack_settings.get(name, AttackSettings())
        for field in ("pgd20_acc", "autoattack_acc", "autoattack_standard"):
            if record.evaluation.pgd20_acc is not None if field == "pgd20_acc" else record.evaluation.autoattack_acc \
                    is not None:
                setattr(ev, field, getattr(record.evaluation, field))
        ev.escalation = ev.escalation + [s for s in record.evaluation.escalation if s not in ev.escalation]
        ev.flags.fired += [f for f in record.evaluation.flags.fired if f not in ev.flags.fired]
    per_point["worst_case"] = worst
    ev.worst_case_acc = worst.float().mean().item()
    ev.intervals = {k: list(interval(int(v.sum()), ev.n, ev.interval_method)) for k, v in per_point.items()}
    ev.seconds = sum(r.evaluation.seconds for r in records)
    merged.notes = f"combined from {len(records)} evaluations: the worst case per point over all their attacks"
    return Evaluated(merged, per_point)
