"""The leaderboard's plots as SVG text, drawn with matplotlib without touching pyplot's global state.

The plot that matters most here: robust accuracy against training time, with
the Pareto front (the runs no other run beats on both) marked.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.figure import Figure

from ..records import Record
from .pareto import pareto_front
from .tables import method

_STYLE = {"svg.fonttype": "none",  # text stays text: small files, searchable labels
          "svg.hashsalt": "robustode",  # the same records give the same file
          "font.size": 9}
_POINT, _FRONT = "#8da0cb", "#e4572e"


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _axes():
    fig = Figure(figsize=(6, 4), layout="constrained")
    return fig, fig.add_subplot()


def _finish(fig: Figure, ax, xlabel: str, title: str, labels: list[tuple]) -> str:
    """Axes text, then the point labels (which need the final limits), then the SVG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PGD-20 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    fig.draw_without_rendering()  # runs the layout, so data-to-page positions are final
    _place_labels(fig, ax, labels)
    return _svg(fig)


# Where a label may sit, in points from its point: right-above, right-below, left-above, ...
_SPOTS = [(5, 4, "left"), (5, -10, "left"), (-5, 4, "right"), (-5, -10, "right"), (5, 13, "left"),
          (5, -19, "left")]


def _place_labels(fig: Figure, ax, labels: list[tuple]) -> None:
    """Put each (x, y, text, bold) label at the first spot that overlaps no label placed so far."""
    placed: list[tuple] = []
    to_pt = 72 / fig.dpi
    for x, y, text, bold in labels:
        px, py = (v * to_pt for v in ax.transData.transform((x, y)))
        size = 8 if bold else 7
        width = 0.6 * size * len(text)  # a rough text width: enough to keep labels apart
        boxes = [(px + dx - (width if ha == "right" else 0), py + dy, width, size) for dx, dy, ha in _SPOTS]
        k = next((k for k, b in enumerate(boxes) if not any(_overlap(b, p) for p in placed)), 0)
        placed.append(boxes[k])
        dx, dy, ha = _SPOTS[k]
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=size,
                    color="#222" if bold else "#666", fontweight="bold" if bold else "normal")


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def robust_vs_time(records: list[Record]) -> str:
    """PGD-20 accuracy against training minutes; the Pareto front as a staircase of red points."""
    rs = [r for r in records if r.evaluation.pgd20_acc is not None]
    pts = [(r.training.seconds / 60, 100 * r.evaluation.pgd20_acc) for r in rs]
    front = pareto_front(pts)
    with matplotlib.rc_context(_STYLE):
        fig, ax = _axes()
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, color=_POINT, label="run", zorder=2)
        fx, fy = [pts[i][0] for i in front], [pts[i][1] for i in front]
        ax.plot(fx, fy, drawstyle="steps-post", color=_FRONT, lw=1.2, zorder=1)
        ax.scatter(fx, fy, s=46, color=_FRONT, edgecolor="black", lw=0.6, label="Pareto front", zorder=3)
        xs = [p[0] for p in pts]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:  # seconds to days: log scale keeps all visible
            ax.set_xscale("log")
        ax.legend(loc="lower right", fontsize=8)
        # Front labels first, so they get the best spots.
        order = sorted(range(len(rs)), key=lambda i: i not in front)
        labels = [(*pts[i], method(rs[i]), i in front) for i in order]
        return _finish(fig, ax, "training time (min)", "Robust accuracy vs training time", labels)


def clean_vs_robust(records: list[Record]) -> str:
    """PGD-20 accuracy against clean accuracy, one labelled point per run."""
    rs = [r for r in records if r.evaluation.pgd20_acc is not None]
    with matplotlib.rc_context(_STYLE):
        fig, ax = _axes()
        xs = [100 * r.evaluation.clean_acc for r in rs]
        ys = [100 * r.evaluation.pgd20_acc for r in rs]
        ax.scatter(xs, ys, s=28, color=_POINT, zorder=2)
        labels = [(x, y, method(r), False) for r, x, y in zip(rs, xs, ys)]
        return _finish(fig, ax, "clean accuracy (%)", "Clean vs robust accuracy", labels)
