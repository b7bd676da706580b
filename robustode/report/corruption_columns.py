"""The columns and notes of a corruptions table: clean, the mean over the (corruption, severity) cells, the
mean per severity, then provenance. Its rows are sorted by the mean, best first. How many corruptions and
severities there are is what the records say they ran (their settings), never a constant here."""

from __future__ import annotations

import statistics

from ..threat import CORRUPTIONS, corruption_grid
from .cells import Cell, Column, accuracy_cell, date_cell, list_cell, pct, short_commit
from .published import published, published_column
from .rows import Row
from .tables import Group, method


def grid_size(group: Group) -> tuple[int, int]:
    """(corruptions, severities) as the table's first record ran them (its corruptions settings)."""
    data = group.records[0].evaluation.attack_settings.get(CORRUPTIONS)
    return (len(data.corruptions or []), data.severities or 0) if data else (0, 0)


def _severity_cell(row: Row, s: int) -> Cell:
    """The mean over corruptions at severity ``s`` (over seeds too); no interval (the cells share images)."""
    values = [statistics.fmean(accs[s - 1] for accs in corruption_grid(r.evaluation.robust).values())
              for r in row.runs]
    mean = statistics.fmean(values)
    return Cell(pct(mean), mean)


def corruption_columns(group: Group) -> list[Column]:
    cols = [Column("Model / weights", lambda row: Cell(method(row.first), method(row.first))),
            Column("Clean", lambda row: accuracy_cell(row, "clean")),
            Column("Corruptions (mean)", lambda row: accuracy_cell(row, CORRUPTIONS))]
    severities = grid_size(group)[1]
    cols += [Column(f"Severity {s}", lambda row, s=s: _severity_cell(row, s)) for s in range(1, severities + 1)]
    if group.has(published):
        cols.append(published_column())
    return cols + [Column("Seeds", lambda row: list_cell(row.seeds)), Column("Date", date_cell),
                   Column("Code", lambda row: list_cell([short_commit(r.provenance.git_commit) for r in row.runs]))]


def corruption_group_notes(group: Group) -> list[str]:
    corruptions, severities = grid_size(group)
    what = (f"Threat model: common corruptions ({corruptions} corruptions × {severities} severities of "
            f"{group.dataset}, the first {group.n:,} images of each; no adversary). Never mixed with L∞ or L2 rows.")
    return [what, f"Hardware: {'; '.join(group.devices)}.",
            "Sorted by the mean accuracy over corruptions and severities (as RobustBench ranks), best first."]


def corruption_reading_notes(group: Group) -> list[str]:
    corruptions, severities = grid_size(group)
    return [(f"Accuracies in %. Clean: 95% Wilson interval on the n = {group.n:,} clean test images. Corruptions "
             f"(mean): the mean over the {corruptions * severities} (corruption, severity) cells, with a 95% normal "
             "interval over the images of each image's accuracy across the cells. Severity s: the mean over "
             "corruptions at s. Each cell's accuracy and interval are in the record.")]
