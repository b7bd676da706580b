"""The HTML report's plots, as a reader sees them (issue 31, item 8): whole epochs, a lone point shown,
labels that do not sit on each other, a legend that says a mean only where there is one."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from robustode.records import load_record
from robustode.report.curves import training_curve
from robustode.report.plotkit import _area, place_labels
from robustode.report.plots import run_label
from robustode.report.rows import Row

RECORD = Path(__file__).parent / "fixtures" / "record_v2.json"


def x_tick_labels(svg: str) -> list[str]:
    """The epoch axis's tick labels: the first text after each of matplotlib's xtick_N groups."""
    return [re.search(r"<text[^>]*>([^<]*)</text>", svg[m.end():]).group(1)
            for m in re.finditer(r'<g id="xtick_\d+">', svg)]


def test_a_training_curve_ticks_whole_epochs_only():
    record = load_record(RECORD)
    assert [row["epoch"] for row in record.training.curve] == [1, 2, 3, 4]
    assert x_tick_labels(training_curve(record)) == ["1", "2", "3", "4"]


def test_a_run_with_one_evaluated_epoch_shows_its_points():
    from robustode.report.curves import _line

    class Axes:
        def plot(self, xs, ys, **style):
            self.drawn = (list(xs), list(ys), style)

    one, many = Axes(), Axes()
    _line(one, [{"epoch": 1, "train_acc": 0.25}], "train_acc", ls="--")
    _line(many, [{"epoch": 1, "train_acc": 0.25}, {"epoch": 2, "train_acc": 0.5}], "train_acc", ls="--")
    assert one.drawn == ([1], [25.0], {"ls": "--", "marker": "o"})  # a line of one point would not show
    assert many.drawn == ([1, 2], [25.0, 50.0], {"ls": "--"})


def test_labels_of_crowded_points_do_not_overlap_each_other():
    with matplotlib.rc_context({"svg.hashsalt": "t"}):
        fig = Figure(figsize=(6, 4.4), layout="constrained")
        ax = fig.add_subplot()
        points = [(37.0, 21.2), (38.0, 22.0), (38.5, 22.2), (39.0, 22.4), (40.6, 22.0)]
        ax.scatter(*zip(*points))
        ax.set_xlim(25, 50)
        ax.set_ylim(0, 30)
        fig.draw_without_rendering()
        boxes = place_labels(fig, ax, [(x, y, name, False) for (x, y), name in
                                       zip(points, ["yopo-3-2", "pgd-3", "pgd-3(ema_decay=0.99)", "yopo-5-3", "trades-3"])])
    assert len(boxes) == 5
    assert all(_area(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_the_legend_says_mean_over_seeds_only_when_a_row_has_several():
    record = load_record(RECORD)
    assert run_label([Row([record])]) == "run"
    assert run_label([Row([record]), Row([record, record])]) == "run (mean over seeds)"
