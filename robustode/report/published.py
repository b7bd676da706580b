"""RobustBench's published figures beside robustode's, in a table: one column where any run has them."""

from __future__ import annotations

from ..interop.robustbench_published import comparison
from ..records import Record
from .cells import MISSING, Cell, Column, pct
from .rows import Row

LABELS = {"clean": "clean", "autoattack": "AA", "external": "external", "corruptions": "corruptions"}
NOTE = ("RobustBench published: the entry's figures from its model_info file, each marked ✓ when robustode's 95% "
        "interval (of the same figure, or of its worst case where it ran no AutoAttack) contains it, ✗ when not.")


def published(record: Record) -> dict | None:
    return record.defense.hyperparameters.get("published")


def _cell(row: Row) -> Cell:
    figures = published(row.first)
    if not figures:
        return Cell(MISSING, -1.0)
    parts = [f"{LABELS[c['figure']]} {pct(c['published'])}{'' if c['inside'] is None else ' ✓' if c['inside'] else ' ✗'}"
             for c in comparison(figures, row.first.evaluation)]
    return Cell(", ".join(parts), ", ".join(parts))


def published_column() -> Column:
    return Column("RobustBench published", _cell)
