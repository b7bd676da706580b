"""The leaderboard as Markdown: one table per comparable set of runs, in the seed talk's shape."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError
from ..records import Record
from .columns import columns, group_notes, reading_notes
from .tables import group_records

START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(records: Iterable[Record], title: str = "robustode leaderboard", level: int = 1, **_) -> str:
    """Markdown text: a title at heading ``level``, then one section and table per group."""
    h = "#" * level
    groups = group_records(records)
    lines = [f"{h} {title}", ""]
    if not groups:
        return "\n".join(lines + ["No records yet.", ""])
    for g in groups:
        cols = columns(g)
        lines += [f"{h}# {g.title}", "", " ".join(group_notes(g)), ""]
        lines.append("| " + " | ".join(c.header for c in cols) + " |")
        lines.append("|" + "---|" * len(cols))
        lines += ["| " + " | ".join(_cell(c.cell(row).plain) for c in cols) + " |" for row in g.rows]
        lines += ["", " ".join(reading_notes(g)), ""]
    return "\n".join(lines)


def embed(markdown: str, path: str | Path) -> None:
    """Replace the text between the leaderboard markers in ``path`` (e.g. a README) with ``markdown``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ConfigError(f"{path}: no '{START}' ... '{END}' markers to put the leaderboard between")
    path.write_text(pattern.sub(lambda _: f"{START}\n{markdown.strip()}\n{END}", text), encoding="utf-8")
