"""The leaderboard as one self-contained HTML page: sortable tables, the plots and training curves, inline."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from html import escape

from ..records import Record
from . import plots
from .cells import Cell
from .columns import columns, group_notes, reading_notes
from .cost import COSTS, Cost
from .curves import training_curve
from .page import CSS, JS
from .probe_plots import accuracy_plot, lipschitz_plot
from .tables import Group, group_records, method

INTRO = ("Red points and line: the Pareto front (no other row is both cheaper, by {cost}, and more robust). "
         "Grey bars: ± std over seeds. Click a column header to sort; hover a mean for each seed.")


def _td(cell: Cell) -> str:
    tip = f' title="{escape(cell.tip)}"' if cell.tip else ""
    detail = f' <span class="ci">{escape(cell.detail)}</span>' if cell.detail else ""
    return f'<td data-sort="{escape(str(cell.sort))}"{tip}>{escape(cell.text)}{detail}</td>'


def _table(g: Group) -> str:
    cols = columns(g, wide=True)
    head = "".join(f'<th{" data-dir=desc" if c.header == "PGD-20" else ""}>{escape(c.header)}</th>'
                   for c in cols)
    rows = "\n".join("<tr>" + "".join(_td(c.cell(row)) for c in cols) + "</tr>" for row in g.rows)
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n'
            "</tbody></table></div>")


def _img(svg: str, alt: str) -> str:
    # An <img> keeps each SVG a document of its own, so ids inside two plots never clash.
    data = base64.b64encode(svg.encode()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _plots(g: Group, cost: Cost) -> str:
    pareto = plots.robust_vs_cost(g.rows, cost)
    figures = "" if pareto.svg is None else _img(pareto.svg, f"Robust accuracy vs {cost.axis}, {g.title}")
    figures += _img(plots.clean_vs_robust(g.rows), f"Clean vs robust accuracy, {g.title}")
    out = f'<div class="plots">{figures}</div>'
    if pareto.left_out:
        names = ", ".join(method(row.first) for row in pareto.left_out)
        out += _note(f"Left out of the {cost.axis} plot: {names} ({cost.missing or 'no such cost recorded'}).")
    return out


def _curves(g: Group) -> str:
    """Each run's training curve; a line saying which runs have none."""
    curves = [(r, training_curve(r)) for r in g.records]
    images = "".join(_img(svg, f"Training curve of {method(r)}, seed {r.training.seed}")
                     for r, svg in curves if svg is not None)
    missing = sum(svg is None for _, svg in curves)
    out = '<h3>Training curves</h3>\n<div class="curves">' + images + "</div>" if images else ""
    if missing:
        out += _note(f"{missing} of {len(curves)} runs have no per-epoch curve (records from before schema 2, "
                     "or evaluations of a checkpoint alone).")
    return out


def _probes(g: Group) -> str:
    """The probed runs' plots (robustode probe --record): accuracy against discretization, Lipschitz along depth."""
    images = "".join(_img(svg, f"{kind} of {method(r)}") for r in g.records
                     for kind, svg in (("Accuracy against step size or tolerance", accuracy_plot(r)),
                                       ("Lipschitz estimates along depth", lipschitz_plot(r))) if svg is not None)
    return '<h3>ODE probe</h3>\n<div class="curves">' + images + "</div>" if images else ""


def _section(g: Group, cost: Cost) -> str:
    above = "\n".join(_note(n) for n in group_notes(g))
    below = "\n".join(_note(n) for n in reading_notes(g))
    return (f"<section>\n<h2>{escape(g.title)}</h2>\n{above}\n{_table(g)}\n{below}\n{_plots(g, cost)}\n"
            f"{_curves(g)}\n{_probes(g)}\n</section>")


def render_html(records: Iterable[Record], title: str = "robustode leaderboard",
                cost: Cost = COSTS["seconds"]) -> str:
    """A complete HTML page that needs no other file and no network; the Pareto plots use ``cost``."""
    groups = group_records(records)
    body = "\n".join(_section(g, cost) for g in groups) or "<p>No records yet.</p>"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<h1>{escape(title)}</h1>\n"
            f"{_note(INTRO.format(cost=cost.axis))}\n"
            f"{body}\n<script>{JS}</script>\n</body>\n</html>\n")
