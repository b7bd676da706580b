"""One run's training curve as SVG: held-out clean and robust accuracy per epoch, the lr, the best epoch.

Robust overfitting shows here: held-out robust accuracy peaks (often right after
an lr decay) and then falls while training accuracy keeps rising; the checkpoint
kept as best (``training.best_epoch``) is marked. Epochs without a held-out
evaluation have no held-out point; a run with none shows its training accuracy
(on the inputs it trained on, adversarial ones for adversarial training) alone.
"""

from __future__ import annotations

import matplotlib
from matplotlib.ticker import MaxNLocator

from ..records import Record
from .plotkit import STYLE, figure, svg
from .tables import method

CLEAN, ROBUST, TRAIN, LR, BEST = "#4c72b0", "#e4572e", "#8c8c8c", "#2a9d8f", "#6a3d9a"


def _line(ax, rows: list[dict], key: str, **style) -> None:
    """Draw ``key`` (a fraction) in % at the epochs that have it (a lone point gets a marker: no line shows it)."""
    points = [(row["epoch"], 100 * row[key]) for row in rows if row.get(key) is not None]
    if len(points) == 1:
        style.setdefault("marker", "o")
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], **style)


def _lr_axis(ax, rows: list[dict]) -> None:
    """The lr on a second y axis (from 0), dotted, so it reads as context, not as a result."""
    points = [(row["epoch"], row["lr"]) for row in rows if row.get("lr") is not None]
    if not points:
        return
    lr = ax.twinx()
    lr.plot([p[0] for p in points], [p[1] for p in points], color=LR, ls=":", lw=1.2, label="lr (right axis)",
            marker="o" if len(points) == 1 else None, markersize=3)
    lr.set_ylim(bottom=0, top=1.1 * max(p[1] for p in points) or 1.0)
    lr.set_ylabel("learning rate", color=LR)
    lr.tick_params(axis="y", colors=LR, labelsize=7)


def training_curve(record: Record) -> str | None:
    """The curve of one run; None for a record without one (before schema 2, or evaluated only)."""
    rows, best = record.training.curve, record.training.best_epoch
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        fig, ax = figure(4.6, 3.3)
        _line(ax, rows, "train_acc", color=TRAIN, lw=1.0, ls="--", label="training accuracy")
        _line(ax, rows, "eval_clean", color=CLEAN, lw=1.4, marker=".", label="held-out clean")
        _line(ax, rows, "eval_robust", color=ROBUST, lw=1.4, marker=".", label="held-out robust")
        if best is not None:
            ax.axvline(best, color=BEST, lw=1.0, ls="-.", label=f"best checkpoint (epoch {best})")
        _lr_axis(ax, rows)
        ax.set_xlabel("epoch (data epochs)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole: no 1.25 ticks
        epochs = [row["epoch"] for row in rows]
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(f"{method(record)} · seed {record.training.seed}", fontsize=9)
        handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7.5, frameon=False)
        return svg(fig)
