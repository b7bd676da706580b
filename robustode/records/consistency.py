"""What a record's numbers imply about each other, checked when it is read: a record that cannot be true
(PGD-20 above clean, a worst case above one of its attacks, 437.5 right answers out of 1000) is refused.

An adversarial point counts as robust only if it is correct clean and after the attack, so every robust
accuracy is at most the clean one; the worst case (correct under every attack) is at most each of them;
every accuracy is a count of the ``n`` points divided by ``n``; ``n`` points of a test set exist in it;
an interval holds its accuracy. Common corruptions are no attack on the clean prediction: a corrupted
image may be right where the clean one is not, so only the counts and intervals apply to them.
"""

from __future__ import annotations

from ..errors import RecordError
from ..threat import NORMS

SLACK = 1e-9  # float rounding of a count divided by n, and of JSON's shortest repr


def check_consistent(record, source: str = "record") -> None:
    """Raise RecordError naming ``source`` and the first impossible number of ``record``."""
    problem = _first_problem(record)
    if problem:
        raise RecordError(f"{source}: {problem}")


def _first_problem(record) -> str | None:
    ev = record.evaluation
    named = {"clean": ev.clean_acc, **ev.robust, "pgd20_acc": ev.pgd20_acc, "autoattack_acc": ev.autoattack_acc,
             "worst_case": ev.worst_case_acc}
    named = {name: acc for name, acc in named.items() if acc is not None}
    if ev.n > record.dataset.n_test:
        return f"evaluation.n = {ev.n}, but the test set has only {record.dataset.n_test} images"
    problem = (_adversarial_problem(named) if ev.norm in NORMS else None) or _training_problem(record.training)
    if problem:
        return problem
    counted = named if ev.norm in NORMS else {"clean": ev.clean_acc}  # a corruptions mean is no count
    for name, acc in counted.items():
        if abs(acc * ev.n - round(acc * ev.n)) > SLACK * ev.n + 1e-6:
            return f"{name} accuracy {acc!r} is no count out of n = {ev.n} ({acc * ev.n:.4g} points)"
    for name, (lo, hi) in ev.intervals.items():
        if name in named and not lo - SLACK <= named[name] <= hi + SLACK:
            return f"the interval [{lo:.4g}, {hi:.4g}] of {name} does not hold its accuracy {named[name]:.4g}"
    if ev.pgd20_acc is not None and "pgd-20" in ev.robust and ev.robust["pgd-20"] != ev.pgd20_acc:
        return f"pgd20_acc {ev.pgd20_acc:.4g} differs from robust['pgd-20'] {ev.robust['pgd-20']:.4g}"
    return None


def _adversarial_problem(named: dict[str, float]) -> str | None:
    """Robust accuracies at most the clean one; the worst case at most every accuracy."""
    clean, worst = named["clean"], named.get("worst_case")
    for name, acc in named.items():
        if name != "clean" and acc > clean + SLACK:
            return (f"{name} accuracy {acc:.4g} exceeds the clean accuracy {clean:.4g}: a point is robust only "
                    "if it is also correct clean")
        if worst is not None and worst > acc + SLACK:
            return f"the worst case {worst:.4g} exceeds the {name} accuracy {acc:.4g}: it is correct under every attack"
    return None


def _training_problem(tr) -> str | None:
    """Why training stopped is said only of a run that stopped; the best epoch is one the run trained."""
    if tr.stop_kind is not None and not tr.stopped_early:
        return f"training.stop_kind {tr.stop_kind!r} without a reason in training.stopped_early"
    if tr.best_epoch is not None and not 1 <= tr.best_epoch <= tr.epochs:
        return f"training.best_epoch {tr.best_epoch} is no epoch of a run of {tr.epochs}"
    return None
