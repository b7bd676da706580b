"""Leaderboard reports from a folder of records: Markdown, HTML, JSON, CSV.

    from robustode.report import write_report
    write_report("leaderboard/records", "md", "leaderboard/LEADERBOARD.md")
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..errors import ConfigError
from ..files import check_output_file, write_atomic
from ..records import Record, load_records
from .html import render_html
from .markdown import embed, render_markdown
from .pareto import pareto_front
from .tables import group_records, render_csv, render_json

RENDERERS = {"md": render_markdown, "html": render_html, "json": render_json, "csv": render_csv}

__all__ = ["RENDERERS", "embed", "group_records", "pareto_front", "render", "write_report"]


def render(records: Iterable[Record], fmt: str) -> str:
    """The report of ``records`` as text in ``fmt``: md, html, json or csv."""
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(RENDERERS)}")
    return RENDERERS[fmt](list(records))


def write_report(records_dir: str | os.PathLike, fmt: str, out: str | os.PathLike | None = None) -> str:
    """Load every record in ``records_dir`` and render it; write to ``out`` when given.

    A bad record file raises RecordError naming it: a report never leaves one out.
    """
    if out is not None:
        check_output_file(out, force=True, what="report file")  # a report is regenerated: replacing it is its use
    text = render(load_records(records_dir), fmt)
    if out is not None:
        write_atomic(out, text)  # a reader never sees half a report
    return text
