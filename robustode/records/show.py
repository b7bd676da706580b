"""A record as a short text table (what ``print(record)`` shows)."""

from __future__ import annotations

from ..progress import duration
from ..text import accuracy_rows, table
from ..threat import describe


def record_text(record) -> str:
    """Model, defense and data; each accuracy with its interval; training and evaluation facts."""
    m, d, ds, tr, ev = record.model, record.defense, record.dataset, record.training, record.evaluation
    head = f"{m.name} / {d.spec} on {ds.name} ({ds.kind})" + (f" [{record.label}]" if record.label else "")
    rows = accuracy_rows(ev.clean_acc, ev.robust, ev.worst_case_acc, ev.intervals)
    trained = ("a checkpoint robustode did not train" if tr.seconds is None else
               f"trained {tr.epochs} epoch(s), seed {tr.seed}, {duration(tr.seconds)} on "
               f"{record.provenance.device}" + (f"; stopped early: {tr.stopped_early}" if tr.stopped_early else ""))
    fired = ", ".join(ev.flags.fired) or "none"
    evaluated = f"evaluated on {ev.n} test points, {describe(ev.norm, ev.eps)}; masking flags: {fired}"
    notes = f"\nnote: {record.notes}" if record.notes else ""
    return f"{head}\n{table(['', 'accuracy', '95% interval'], rows)}\n{trained}\n{evaluated}{notes}"
