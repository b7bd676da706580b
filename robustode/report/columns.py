"""A table's columns and the notes under its title: what every report format shows of a group."""

from __future__ import annotations

from ..records import Record
from ..threat import CORRUPTIONS
from .cells import (
    MISSING,
    NONSTANDARD_AA,
    Cell,
    Column,
    accuracy_cell,
    date_cell,
    list_cell,
    short_commit,
    unit_column,
)
from .corruption_columns import corruption_columns, corruption_group_notes, corruption_reading_notes
from .cost import bytes_unit, flops_unit, time_unit, training_flops
from .published import NOTE as PUBLISHED_NOTE
from .published import published, published_column
from .rows import COLLAPSE_BELOW, Row
from .significance import SIGNIFICANCE, significant
from .tables import Group, method

ORDER_NOTE = "Sorted by PGD-20 accuracy (the mean over seeds), best first."


def _nonstandard_aa(r: Record) -> bool:
    return r.evaluation.autoattack_acc is not None and not r.evaluation.autoattack_standard


def _aa_cell(row: Row) -> Cell:
    return accuracy_cell(row, "autoattack", NONSTANDARD_AA if any(map(_nonstandard_aa, row.runs)) else "")


def _p_cell(row: Row, best: Row) -> Cell:
    if row is best:
        return Cell("best", -1.0)
    if row.p_value is None:
        return Cell(MISSING, 2.0)
    p = row.p_value
    text = "< 0.001" if p < 0.001 else f"{p:.2g}"
    return Cell(text + (" *" if significant(row) else ""), p)


def _seeds_cell(row: Row) -> Cell:
    cell = list_cell(row.seeds)
    repeats = len(row.repeats)  # evaluations of the same weights again: not seeds, and said so
    text = cell.text + (f" (+{repeats} repeat evaluation{'s' * (repeats > 1)})" if repeats else "")
    return Cell(text, len(row.runs), f"({len(row.runs)} runs)" if len(row.runs) > 1 else "")


def _collapse_cell(row: Row) -> Cell:
    if not row.single_step:
        return Cell("", -1.0)
    return Cell(f"{row.collapsed}/{len(row.runs)}", row.collapsed / len(row.runs))


def _worst_case_differs(r: Record) -> bool:
    """A worst case worth a column: over more than one attack (with one it is that attack's figure)."""
    return r.evaluation.worst_case_acc is not None and len(r.evaluation.robust) > 1


def columns(group: Group, wide: bool = False) -> list[Column]:
    """The seed table's columns (method, clean, PGD-20, time), then the optional ones and the provenance.

    ``wide`` (the HTML page) adds peak device memory and counted training FLOPs where recorded.
    A corruptions table has its own (corruption_columns.py).
    """
    if group.norm == CORRUPTIONS:
        return corruption_columns(group)
    best = group.rows[0] if group.rows else None
    records = group.records
    cols = [Column("Training method", lambda row: Cell(method(row.first), method(row.first))),
            Column("Clean", lambda row: accuracy_cell(row, "clean")),
            Column("PGD-20", lambda row: accuracy_cell(row, "pgd-20"))]
    if _compared(group):
        cols.append(Column("vs best (p)", lambda row: _p_cell(row, best)))
    if group.has(lambda r: r.evaluation.autoattack_acc):
        cols.append(Column("AutoAttack", _aa_cell))
    if any(map(_worst_case_differs, records)):
        cols.append(Column("Worst case", lambda row: accuracy_cell(row, "worst_case")))
    cols.append(unit_column("Training time", group.rows, lambda r: r.training.seconds, time_unit))
    cols += [Column("Epochs", lambda row: list_cell(sorted({r.training.epochs for r in row.runs}))),
             Column("Seeds", _seeds_cell)]
    if any(row.single_step for row in group.rows):
        cols.append(Column("Collapsed", _collapse_cell))
    if wide and group.has(lambda r: r.training.peak_memory_bytes):
        cols.append(unit_column("Peak memory", group.rows, lambda r: r.training.peak_memory_bytes, bytes_unit))
    if wide and group.has(training_flops):
        cols.append(unit_column("Training FLOPs", group.rows, training_flops, flops_unit))
    if group.has(published):
        cols.append(published_column())
    cols += [Column("Date", date_cell),
             Column("Code", lambda row: list_cell([short_commit(r.provenance.git_commit) for r in row.runs]))]
    if len({r.provenance.device for r in records}) > 1:
        cols.append(Column("Device", lambda row: Cell(row.first.provenance.device, row.first.provenance.device)))
    return cols


def group_notes(group: Group) -> list[str]:
    """The lines above a table: what it holds, the hardware, the order."""
    if group.norm == CORRUPTIONS:
        return corruption_group_notes(group)
    first = group.records[0]
    of = f" of the {first.dataset.n_test:,}" if first.dataset.n_test != group.n else ""  # a loaded subset: its size
    return [f"Threat model {group.threat}; trained on {group.n_train:,} training images; evaluated on the "
            f"first {group.n:,}{of} test images (unshuffled).",
            f"Hardware: {'; '.join(group.devices)}.", ORDER_NOTE]


def reading_notes(group: Group) -> list[str]:
    """The lines under a table: how to read its cells, and its footnotes."""
    if group.norm == CORRUPTIONS:
        return corruption_reading_notes(group)
    methods = sorted({r.evaluation.interval_method for r in group.records})
    accuracies = (f"Accuracies in %. One run: its 95% {' / '.join(m.title() for m in methods)} interval on "
                  f"the n = {group.n:,} test points, [low, high].")
    if any(len(row.runs) > 1 for row in group.rows):
        accuracies += (" Several seeds: mean ± standard deviation over the seeds (each seed's value and "
                       "interval on hover in the HTML page).")
    notes = [accuracies,
             "Seeds: the training seeds of the row's runs. Code: the commit (+dirty: with uncommitted changes)."]
    if _compared(group):
        notes.append("vs best: two-sided exact McNemar p-value of the row's PGD-20 against the best "
                     f"row's, point by point on the same test points; * p < {SIGNIFICANCE}. Several seeds: "
                     "compared seed by seed, the largest p shown. —: no per-example results to compare.")
    else:
        notes.append("No per-example results in these records (older ones): no paired comparison.")
    if any(row.single_step for row in group.rows):
        notes.append("Collapsed: of a single-step defense's seeds, those that overfit catastrophically: "
                     f"the overfitting guard fired, or PGD-20 ended below {100 * COLLAPSE_BELOW:g}%. "
                     "The mean ± std includes them.")
    if any(r.training.stopped_early for r in group.records):
        notes.append("Epochs: the epochs completed; a run stopped early shares the row of the runs it "
                     "would otherwise match.")
    if group.has(published):
        notes.append(PUBLISHED_NOTE)
    if any(map(_nonstandard_aa, group.records)):
        notes.append(f"{NONSTANDARD_AA} not the standard AutoAttack (fewer iterations): an upper bound.")
    return notes


def _compared(group: Group) -> bool:
    """Whether any run of the table has per-example results: only then has it a p-value column."""
    return any(r.evaluation.per_example for r in group.records)
