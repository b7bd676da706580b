"""The leaderboard as one self-contained HTML page: sortable tables and the plots, inline."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from html import escape

from ..records import Record
from . import plots
from .tables import Group, columns, group_notes, group_records

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
p.note { color: #555; margin: 0.2em 0; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { cursor: pointer; background: #f4f4f4; user-select: none; white-space: nowrap; }
th[data-dir=desc]::after { content: " ▼"; }
th[data-dir=asc]::after { content: " ▲"; }
tbody tr:hover { background: #fafae8; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots img { width: 600px; max-width: 100%; }
"""

# Click a header to sort by it; click again to reverse. Cells carry their sort value.
_JS = """
document.querySelectorAll("table.sortable th").forEach((th, col) => th.addEventListener("click", () => {
  const table = th.closest("table"), body = table.tBodies[0];
  const dir = th.dataset.dir === "desc" ? "asc" : "desc";
  table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = dir;
  const value = row => row.cells[col].dataset.sort;
  const cmp = (a, b) => {
    const x = value(a), y = value(b), nx = parseFloat(x), ny = parseFloat(y);
    return isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
  };
  [...body.rows].sort((a, b) => dir === "asc" ? cmp(a, b) : cmp(b, a)).forEach(r => body.appendChild(r));
}));
"""


def _table(g: Group) -> str:
    cols = columns(g)
    head = "".join(f'<th{" data-dir=desc" if c.header == "PGD-20" else ""}>{escape(c.header)}</th>'
                   for c in cols)
    rows = "\n".join("<tr>" + "".join(f'<td data-sort="{escape(str(c.sort(r)))}">{escape(c.text(r))}</td>'
                                      for c in cols) + "</tr>" for r in g.records)
    return f'<table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>'


def _img(svg: str, alt: str) -> str:
    # An <img> keeps each SVG a document of its own, so ids inside two plots never clash.
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _section(g: Group) -> str:
    notes = "\n".join(f'<p class="note">{escape(n)}</p>' for n in group_notes(g))
    figures = (_img(plots.robust_vs_time(g.records), f"Robust accuracy vs training time, {g.title}")
               + _img(plots.clean_vs_robust(g.records), f"Clean vs robust accuracy, {g.title}"))
    return (f"<section>\n<h2>{escape(g.title)}</h2>\n{notes}\n{_table(g)}\n"
            f'<div class="plots">{figures}</div>\n</section>')


def render_html(records: Iterable[Record], title: str = "robustode leaderboard") -> str:
    """A complete HTML page that needs no other file and no network."""
    groups = group_records(records)
    body = "\n".join(_section(g) for g in groups) or "<p>No records yet.</p>"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n<h1>{escape(title)}</h1>\n"
            f'<p class="note">Red points and line: the Pareto front (no other run is both faster and more '
            f"robust). Click a column header to sort.</p>\n{body}\n"
            f"<script>{_JS}</script>\n</body>\n</html>\n")
