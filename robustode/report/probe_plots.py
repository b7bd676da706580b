"""A probed run's two plots (records whose evaluation.ode holds robustode probe's sweep): accuracy against
the test-time step size or tolerance, and the blocks' Lipschitz estimates along depth."""

from __future__ import annotations

import matplotlib
from matplotlib.ticker import MaxNLocator

from ..records import ProbeInfo, ProbeRow, Record
from .plotkit import STYLE, figure, svg
from .tables import method

CLEAN, ROBUST = "#4c72b0", "#e4572e"
SERIES = ("#4c72b0", "#e4572e", "#2a9d8f", "#6a3d9a", "#8c8c8c")  # one colour per method; clean solid, PGD-20 dashed


def _x(row: ProbeRow) -> tuple[str, float] | None:
    """(series, x) of a sweep row, read from its description (the own row stores no setting): an ODE solver's
    fixed-grid method by its step size, an adaptive one by its tolerance; a small-step ResNet by its h, one
    series per scheme. A scheme swap alone has no step size: None."""
    tokens = row.setting.split()
    values = dict(t.split("=", 1) for t in tokens if "=" in t)
    solver = next((t for t in tokens if "=" not in t), None)  # an ODE block's method; none for a ResNet
    series = solver or f"h, {values.get('scheme', 'trained scheme')}"
    key = next((k for k in ("h", "rtol") if k in values), None)
    return None if key is None else (series, float(values[key]))


def _end_time(row: ProbeRow) -> str | None:
    return next((p for p in row.setting.split() if p.startswith("T=")), None)


def _probe(record: Record) -> ProbeInfo | None:
    return record.evaluation.ode.probe if record.evaluation.ode else None


def accuracy_plot(record: Record) -> str | None:
    probe = _probe(record)
    rows = probe.rows if probe else []
    own_t = [_end_time(r) for r in rows if r.own]
    # Only the rows at the model's own T: another end time is another function, not a finer solve of it.
    points = [(_x(r), r) for r in rows if own_t and _end_time(r) == own_t[0]]
    points = [(x, r) for x, r in points if x is not None]
    if not points:
        return None
    with matplotlib.rc_context(STYLE):
        fig, ax = figure(4.6, 3.3)
        for i, series in enumerate(sorted({x[0] for x, _ in points})):
            rows = sorted(((x[1], r) for x, r in points if x[0] == series), key=lambda p: p[0])
            xs, colour = [p[0] for p in rows], SERIES[i % len(SERIES)]
            size = max(7.0 - 1.5 * i, 3.0)  # later series smaller: a point at another's place stays visible
            ax.plot(xs, [100 * r.clean for _, r in rows], color=colour, marker="o", ms=size, lw=1.2,
                    label=f"{series} clean")
            ax.plot(xs, [100 * r.pgd20 for _, r in rows], color=colour, marker="s", ms=size, lw=1.2, ls="--",
                    label=f"{series} PGD-20")
        own = [r for _, r in points if r.own]
        for r in own:
            ax.axvline(_x(r)[1], color="#6a3d9a", lw=0.8, ls="-.", label="the model's own setting")
        ax.set_xscale("log")
        ax.set_xlabel("step size h (fixed grid) or rtol = atol (adaptive)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(f"{method(record)}: test-time discretization (n = {probe.n})", fontsize=9)
        fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
        return svg(fig)


def lipschitz_plot(record: Record) -> str | None:
    probe = _probe(record)
    rows = probe.lipschitz if probe else None
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        fig, ax = figure(4.6, 3.3)
        depth = [r.depth for r in rows]
        ax.plot(depth, [r.mean for r in rows], color=CLEAN, marker="o", lw=1.2, label="mean over points")
        ax.plot(depth, [r.max for r in rows], color=ROBUST, marker="^", lw=1.0, ls="--", label="max over points")
        ax.set_xlabel("depth (residual step, or ODE time t = k T / 4 per block)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # depth is a count
        ax.set_ylabel("Lipschitz estimate of f")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.set_title(f"{method(record)}: residual functions along depth", fontsize=9)
        fig.legend(loc="outside lower center", ncols=2, fontsize=7, frameon=False)
        return svg(fig)
