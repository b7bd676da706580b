"""The leaderboard as data: every record as JSON, or one CSV row per record, in table order."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from ..records import Record
from .tables import group_records


def ordered(records: Iterable[Record]) -> list[Record]:
    """The records in the order the tables show them (no per-example files are read)."""
    return [r for g in group_records(records, significance=False) for row in g.rows for r in row.runs]


def render_json(records: Iterable[Record], **_) -> str:
    """A list of record dicts, in table order: intervals, curves and cost as the records hold them."""
    return json.dumps([r.to_dict() for r in ordered(records)], indent=2) + "\n"


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested dicts to dotted keys; lists become JSON text so a CSV cell holds them."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = json.dumps(v) if isinstance(v, list) else v
    return out


def csv_row(record: Record) -> dict:
    """One record's leaf fields; each 95% interval as two columns, ``evaluation.intervals.<metric>.low``
    and ``.high`` (fractions, like the accuracies), so a spreadsheet reads them as numbers."""
    d = record.to_dict()
    intervals = d["evaluation"].pop("intervals")
    row = flatten(d)
    for metric, (low, high) in intervals.items():
        row[f"evaluation.intervals.{metric}.low"] = low
        row[f"evaluation.intervals.{metric}.high"] = high
    return row


def render_csv(records: Iterable[Record], **_) -> str:
    """One row per record, one column per leaf field; a field a record lacks is empty."""
    rows = [csv_row(r) for r in ordered(records)]
    header = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
