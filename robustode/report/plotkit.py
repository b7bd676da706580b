"""What every leaderboard plot shares: deterministic SVG, y from 0, the legend outside, readable log axes.

Plots are drawn with matplotlib's object API (never pyplot's global state), with
text kept as text and a fixed hash salt, so the same records give the same file.
"""

from __future__ import annotations

import io
import math

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

STYLE = {"svg.fonttype": "none",  # text stays text: small files, searchable labels
         "svg.hashsalt": "robustode",  # the same records give the same file
         "font.size": 9}
POINT, FRONT, SPREAD = "#8da0cb", "#e4572e", "#9a9a9a"
LOG_FROM = 20  # an axis whose largest value is this many times its smallest is drawn on a log scale


def svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def figure(width: float = 6.0, height: float = 4.4):
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def error_bars(ax, xs: list[tuple], ys: list[tuple]) -> None:
    """Grey ± std bars (over seeds) on the points that have more than one run."""
    some = [(x, y) for x, y in zip(xs, ys) if x[1] or y[1]]
    if some:
        ax.errorbar([x[0] for x, _ in some], [y[0] for _, y in some], xerr=[x[1] for x, _ in some],
                    yerr=[y[1] for _, y in some], fmt="none", ecolor=SPREAD, elinewidth=0.9, capsize=2.5,
                    zorder=1.5, label="± std over seeds")


def log_axis(ax, values: list[float]) -> bool:
    """A log x axis when the values span more than ``LOG_FROM`` times, with plain-number ticks."""
    if not values or min(values) <= 0 or max(values) / min(values) <= LOG_FROM:
        return False
    ax.set_xscale("log")
    decades = math.log10(max(values) / min(values))
    subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0, 3.0) if decades <= 4 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_minor_locator(NullLocator())  # unlabelled minor ticks only crowd the axis
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    return True


def _plain(value: float, _pos) -> str:
    """1,000 and 0.5, never 10^3 or 5x10^-1."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def finish(fig: Figure, ax, xlabel: str, ylabel: str, title: str, labels: list[tuple],
           x_from_zero: bool = False) -> str:
    """Axes text, y (and with ``x_from_zero`` x) from 0, the legend below the axes, then the point labels
    (which need the final limits), then the SVG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.margins(x=0.15, y=0.12)
    ax.set_ylim(bottom=0)  # after the margins, which would otherwise push it below 0
    if x_from_zero:
        ax.set_xlim(left=0)
    if ax.get_legend_handles_labels()[0]:  # outside the axes: it never covers a point or the Pareto line
        fig.legend(loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    fig.draw_without_rendering()  # runs the layout, so data-to-page positions are final
    place_labels(fig, ax, labels)
    return svg(fig)


# Where a label may sit, in points from its point: right-above, right-below, left-above, ..., then further out.
_SPOTS = [(5, 4, "left"), (5, -10, "left"), (-5, 4, "right"), (-5, -10, "right"), (5, 13, "left"),
          (5, -19, "left"), (-5, 13, "right"), (-5, -19, "right"), (5, 22, "left"), (5, -28, "left"),
          (-5, 22, "right"), (-5, -28, "right")]
MARKER = 4.0  # half the side, in points, of the box a plotted point keeps free of labels


def place_labels(fig: Figure, ax, labels: list[tuple]) -> list[tuple]:
    """Put each (x, y, text, bold) label at the first spot that covers no label placed so far and no point;
    where every spot covers something, at the spot that covers least. Returns the labels' boxes."""
    to_pt = 72 / fig.dpi
    where = [tuple(v * to_pt for v in ax.transData.transform((x, y))) for x, y, _, _ in labels]
    placed: list[tuple] = [(px - MARKER, py - MARKER, 2 * MARKER, 2 * MARKER) for px, py in where]
    for (x, y, text, bold), (px, py) in zip(labels, where):
        size = 8 if bold else 7
        width = 0.6 * size * len(text)  # a rough text width: enough to keep labels apart
        boxes = [(px + dx - (width if ha == "right" else 0), py + dy, width, size) for dx, dy, ha in _SPOTS]
        covered = [sum(_area(b, p) for p in placed) for b in boxes]
        k = next((k for k, c in enumerate(covered) if c == 0), min(range(len(boxes)), key=covered.__getitem__))
        placed.append(boxes[k])
        dx, dy, ha = _SPOTS[k]
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=size,
                    color="#222" if bold else "#666", fontweight="bold" if bold else "normal")
    return placed[len(labels):]  # each label's box, in points: (x, y, width, height)


def _area(a: tuple, b: tuple) -> float:
    """The area two (x, y, width, height) boxes share."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)
