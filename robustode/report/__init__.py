"""Leaderboard reports from a folder of records: Markdown, HTML, JSON, CSV.

    from robustode.report import write_report
    write_report("leaderboard/records", "md", "leaderboard/LEADERBOARD.md", force=True)  # regenerate it
    write_report("leaderboard/records", "html", "board.html", cost="gpu-seconds")

A table holds only comparable runs (one data set and training-set size, model,
threat model and evaluation n); a row holds the runs that differ only by seed.
Accuracies carry their 95% intervals, rows their McNemar p-value against the
best row, and the HTML page the Pareto plot on the chosen cost and each run's
training curve.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError
from ..files import check_output_file, write_atomic
from ..records import Record, load_records
from ..records.io import check_points
from .cost import COSTS, cost_named
from .export import render_csv, render_json
from .html import render_html
from .markdown import embed, render_markdown
from .pareto import pareto_front
from .tables import group_records

RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json, "csv": render_csv}

__all__ = ["COSTS", "RENDERERS", "embed", "group_records", "pareto_front", "render", "write_report"]


def render(records: Iterable[Record], fmt: str, cost: str = "seconds") -> str:
    """The report of ``records`` as text in ``fmt``: md, html, json or csv.

    ``cost`` is the Pareto plot's axis (seconds, gpu-seconds, flops, passes: see
    robustode.report.cost); only the HTML page has that plot.
    """
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(RENDERERS)}")
    return RENDERERS[fmt](list(records), cost=cost_named(cost))


def write_report(records_dir: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None,
                 cost: str = "seconds", force: bool = False) -> str:
    """Load every record in ``records_dir`` and render it; write to ``out`` when given (an existing file
    only with ``force``; never into a folder of records).

    A bad record file raises RecordError naming it: a report never leaves one out.
    """
    cost_named(cost)  # a bad choice fails before any file is read
    if out is not None:
        if Path(out).resolve().parent == Path(records_dir).resolve():
            raise ConfigError(f"report file {out} would lie among the records it reports on; write it elsewhere")
        check_output_file(out, force=force, what="report file")
    records = load_records(records_dir)
    check_points(records)  # now, not when a comparison first needs them
    text = render(records, fmt, cost)
    if out is not None:
        write_atomic(out, text)  # a reader never sees half a report
    return text
