"""Table cells shared by every report format: accuracies with intervals or mean ± std, times in one unit.

One run's accuracy shows its 95% interval on the n test points, ``47.04 [46.1,
48.0]``; a row of several seeds shows mean ± standard deviation over the seeds,
``47.04 ± 0.31``, with each seed's value and interval in the cell's tip (a
tooltip in HTML).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ..records import Record
from ..text import interval_text
from .rows import Row, accuracy, interval

NONSTANDARD_AA = "†"  # marks an AutoAttack figure that is not the standard version
MISSING = "—"


@dataclass
class Cell:
    text: str
    sort: float | str  # what a click on the header sorts by
    detail: str = ""  # an interval or a count: small type in HTML, after the text elsewhere
    tip: str = ""  # each seed's value: a tooltip in HTML

    @property
    def plain(self) -> str:
        return f"{self.text} {self.detail}".strip()


@dataclass
class Column:
    header: str
    cell: Callable[[Row], Cell]


def pct(acc: float | None) -> str:
    return MISSING if acc is None else f"{100 * acc:.2f}"


def accuracy_cell(row: Row, metric: str, mark: str = "") -> Cell:
    """Mean ± std over seeds, or one run's value and its 95% interval."""
    measured = row.measured(lambda r: accuracy(r, metric))
    if not measured:
        return Cell(MISSING, -1.0)
    values = [v for _, v in measured]
    mean = statistics.fmean(values)
    if len(measured) == 1:
        text = pct(mean) + mark
        detail = interval_text(*interval(measured[0][0], metric), sign="")
        tip = "" if len(row.runs) == 1 else f"seed {measured[0][0].training.seed} only"
        return Cell(text, mean, detail, tip)
    tip = "; ".join(f"seed {r.training.seed}: {pct(v)} {interval_text(*interval(r, metric), sign='')}"
                    for r, v in measured)
    return Cell(f"{pct(mean)} ± {100 * statistics.stdev(values):.2f}{mark}", mean, tip=tip)


def decimals(largest: float) -> int:
    """Digits after the point for a column whose largest value is ``largest``: about three figures."""
    return 0 if largest >= 100 else 1 if largest >= 10 else 2


def number_cell(row: Row, get: Callable[[Record], float | None], divisor: float, digits: int) -> Cell:
    """Mean ± std over seeds (or one value) of ``get`` / ``divisor``."""
    spread = row.spread(get, divisor)
    if spread is None:
        return Cell(MISSING, -1.0)
    mean, std = spread
    text = f"{mean:,.{digits}f}"
    if std > 0:  # equal values (the same memory on every seed) need no "± 0"
        text += f" ± {std:,.{digits}f}"
    return Cell(text, mean)


def unit_column(header: str, rows: list[Row], get: Callable, unit: Callable[[float], tuple[str, float]]) \
        -> Column:
    """A numeric column in one unit, chosen from its largest value; the header names the unit."""
    largest = max((v for row in rows for _, v in row.measured(get)), default=0.0)
    name, divisor = unit(largest)
    digits = decimals(largest / divisor)
    return Column(f"{header} ({name})" if name else header, lambda row: number_cell(row, get, divisor, digits))


def list_cell(values: list) -> Cell:
    """Distinct values in order, joined: "0, 1, 2"."""
    distinct = list(dict.fromkeys(str(v) for v in values if v is not None))
    return Cell(", ".join(distinct) or MISSING, ", ".join(distinct))


def short_commit(commit: str | None) -> str | None:
    """The first 7 hex digits, and "+dirty" when the tree had uncommitted changes."""
    if not commit:
        return None
    dirty = commit.endswith("+dirty")
    return commit.removesuffix("+dirty")[:7] + ("+dirty" if dirty else "")


def date_cell(row: Row) -> Cell:
    """The day of the run, or the first and last day of a row's runs: "2026-11-20 – 22" within a month."""
    days = sorted(r.provenance.date[:10] for r in row.runs)
    first, last = days[0], days[-1]
    shared = 8 if first[:8] == last[:8] else 5 if first[:5] == last[:5] else 0  # same month, same year
    text = first if first == last else f"{first} – {last[shared:]}"
    return Cell(text, max(r.provenance.date for r in row.runs))
