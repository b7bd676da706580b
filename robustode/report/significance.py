"""Which rows' PGD-20 differ significantly from the best row's: exact McNemar on the same test points.

Two runs evaluated on the same points are compared point by point
(robustode.records.compare): only the points where they disagree count, so the
test has far more power than two overlapping intervals suggest. A row of several
seeds is compared seed by seed with the best row (seed 0 with seed 0, and so on;
in seed order where the two rows ran different seeds), and the row's p-value is
the largest of those: it is called significant only if every pair is (an
intersection-union test, valid at the 5% level without correction). Rows are not
corrected for how many rows a table has. A run without per-example results is
not compared; a row with none shows "—".
"""

from __future__ import annotations

from ..records import Record, compare
from ..records.compare import SIGNIFICANCE
from .rows import Row

METRIC = "pgd-20"


def mark_significance(group) -> None:
    """Set ``p_value`` on every row of ``group`` but the first (the best by PGD-20)."""
    if not group.rows:
        return
    best = group.rows[0]
    for row in group.rows[1:]:
        row.p_value = p_value(best, row)


def p_value(best: Row, row: Row) -> float | None:
    """The largest PGD-20 McNemar p-value over the paired runs of two rows; None when none can be paired."""
    values = [p for a, b in pairs(best, row) if (p := _pgd20_p(a, b)) is not None]
    return max(values) if values else None


def pairs(a: Row, b: Row) -> list[tuple[Record, Record]]:
    """Runs of the two rows that have per-example results, matched by seed, else in seed order."""
    ra = [r for r in a.runs if r.evaluation.per_example]
    rb = [r for r in b.runs if r.evaluation.per_example]
    by_seed = {r.training.seed: r for r in rb}
    matched = [(r, by_seed[r.training.seed]) for r in ra if r.training.seed in by_seed]
    return matched or list(zip(ra, rb))


def _pgd20_p(a: Record, b: Record) -> float | None:
    if METRIC not in a.evaluation.robust or METRIC not in b.evaluation.robust:
        return None
    return next(c.p_value for c in compare(a, b) if c.metric == METRIC)


def significant(row: Row) -> bool:
    return row.p_value is not None and row.p_value < SIGNIFICANCE
