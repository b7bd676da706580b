"""The leaderboard's plots of a table as SVG text: robust accuracy against cost, and clean against robust.

The plot that matters most: PGD-20 accuracy against what training cost (time,
GPU-seconds, counted FLOPs or passes per image: robustode.report.cost), with the
Pareto front (the rows no other row beats on both) marked. One point per row: the
mean over its seeds, with ± std bars where a row has several.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

from .cost import COSTS, Cost
from .pareto import pareto_front
from .plotkit import FRONT, POINT, STYLE, error_bars, figure, finish, log_axis
from .rows import Row
from .tables import method

PGD_LABEL = "PGD-20 accuracy (%)"


def run_label(rows: list[Row]) -> str:
    """The legend's name of a point: a mean only where some row has several seeds."""
    return "run (mean over seeds)" if any(len(row.runs) > 1 for row in rows) else "run"


def _pgd20(r) -> float | None:
    return r.evaluation.pgd20_acc


@dataclass
class CostPlot:
    svg: str | None  # None when no row has the cost: an empty plot says nothing
    left_out: list[Row]  # rows with PGD-20 but without the chosen cost: not in the plot


def robust_vs_cost(rows: list[Row], cost: Cost = COSTS["seconds"]) -> CostPlot:
    """PGD-20 accuracy against ``cost``; the Pareto front as a staircase of red points."""
    robust = [row for row in rows if row.mean(_pgd20) is not None]
    shown = [row for row in robust if row.mean(cost.value) is not None]
    if not shown:
        return CostPlot(None, robust)
    unit, divisor = cost.unit(max((row.mean(cost.value) for row in shown), default=0.0))
    xs = [row.spread(cost.value, divisor) for row in shown]
    ys = [row.spread(_pgd20, 0.01) for row in shown]
    pts = [(x[0], y[0]) for x, y in zip(xs, ys)]
    front = pareto_front(pts)
    with matplotlib.rc_context(STYLE):
        fig, ax = figure()
        error_bars(ax, xs, ys)
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, color=POINT, label=run_label(shown), zorder=2)
        fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
        ax.plot(fx, fy, drawstyle="steps-post", color=FRONT, lw=1.2, zorder=1)
        ax.scatter(fx, fy, s=46, color=FRONT, edgecolor="black", lw=0.6, label="Pareto front", zorder=3)
        log = log_axis(ax, [p[0] for p in pts])
        xlabel = (f"{cost.axis} ({unit})" if unit else cost.axis) + (", log scale" if log else "")
        order = sorted(range(len(shown)), key=lambda i: i not in front)  # front labels get the best spots
        labels = [(*pts[i], method(shown[i].first), i in front) for i in order]
        title = f"Robust accuracy vs {cost.axis.split(' (')[0]}"
        text = finish(fig, ax, xlabel, PGD_LABEL, title, labels, x_from_zero=not log)
    return CostPlot(text, [row for row in robust if row not in shown])


def clean_vs_robust(rows: list[Row]) -> str:
    """PGD-20 accuracy against clean accuracy, one labelled point per row."""
    shown = [row for row in rows if row.mean(_pgd20) is not None]
    xs = [row.spread(lambda r: r.evaluation.clean_acc, 0.01) for row in shown]
    ys = [row.spread(_pgd20, 0.01) for row in shown]
    with matplotlib.rc_context(STYLE):
        fig, ax = figure()
        error_bars(ax, xs, ys)
        ax.scatter([x[0] for x in xs], [y[0] for y in ys], s=28, color=POINT, label=run_label(shown), zorder=2)
        labels = [(x[0], y[0], method(row.first), False) for row, x, y in zip(shown, xs, ys)]
        return finish(fig, ax, "clean accuracy (%)", PGD_LABEL, "Clean vs robust accuracy", labels)
