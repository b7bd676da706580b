"""Plain-text tables for results printed in Python (``print(result)``, a notebook's echo) and the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pct(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.2%}"


def interval_text(low: float, high: float, sign: str = "%") -> str:
    """An interval of fractions in % to one decimal, rounded outwards: the interval shown always contains the
    interval computed (0 of 10,000 reads [0.0%, 0.1%], not [0.0%, 0.0%]). ``sign``: after each bound."""
    return f"[{math.floor(1000 * low + 1e-9) / 10:.1f}{sign}, {math.ceil(1000 * high - 1e-9) / 10:.1f}{sign}]"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def accuracy_rows(clean: float, robust: dict[str, float], worst: float | None, intervals: dict) -> list[list[str]]:
    """One row per metric: name, accuracy, 95% interval."""
    named = [("clean", clean), *robust.items(), ("worst case", worst)]
    keys = ["clean", *robust, "worst_case"]
    return [[name, pct(value), interval_text(*intervals[key]) if intervals.get(key) else ""]
            for (name, value), key in zip(named, keys) if value is not None]
