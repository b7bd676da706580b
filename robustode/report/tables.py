"""Grouping, ordering and columns shared by every report format; JSON and CSV output.

Records are grouped by data set (its kind included), model and threat model,
so CIFAR-10, its JPEG copy and synthetic data never share a table, and rows
are sorted by PGD-20 accuracy, best first.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from ..records import Record

KIND_ORDER = {"real": 0, "jpeg-copy": 1, "custom": 2, "synthetic": 3}
KIND_SUFFIX = {"real": "", "jpeg-copy": " (JPEG copy)", "custom": " (custom data)",
               "synthetic": " (not a benchmark)"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "cifar10-jpeg": "CIFAR-10"}
ORDER_NOTE = "Sorted by PGD-20 accuracy, best first."
NONSTANDARD_AA = "†"  # marks an AutoAttack figure that is not the standard version


def dataset_label(name: str, kind: str) -> str:
    """``CIFAR-10``, ``CIFAR-10 (JPEG copy)``, ``synthetic (not a benchmark)``."""
    return DATASET_NAMES.get(name, name) + KIND_SUFFIX[kind]


def eps_text(eps: float) -> str:
    """8/255 for the usual budgets, else the decimal."""
    frac = Fraction(eps).limit_denominator(255)
    if frac.denominator == 255 and abs(float(frac) - eps) < 1e-9:
        return f"{frac.numerator}/255"
    return f"{eps:g}"


def pct(acc: float | None) -> str:
    return "—" if acc is None else f"{100 * acc:.2f}"


def minutes(seconds: float) -> str:
    """Minutes, as the seed table gives them; seconds too when under a minute."""
    if seconds >= 6000:
        return f"{seconds / 60:.0f}"
    if seconds >= 60:
        return f"{seconds / 60:.1f}"
    return f"{seconds / 60:.2f} ({seconds:.1f} s)"


def method(record: Record) -> str:
    return record.defense.spec + (f" ({record.label})" if record.label else "")


def robust_key(record: Record) -> tuple:
    """Best PGD-20 first; then best clean, then fastest. Runs without PGD-20 go last."""
    pgd = record.evaluation.pgd20_acc
    return (pgd is None, -(pgd or 0.0), -record.evaluation.clean_acc, record.training.seconds)


@dataclass
class Group:
    """The records of one table: one data set, one model, one threat model."""

    kind: str
    dataset: str
    model: str
    norm: str
    eps: float
    records: list[Record] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{dataset_label(self.dataset, self.kind)} · {self.model}"

    @property
    def threat(self) -> str:
        return f"{'L∞' if self.norm == 'linf' else 'L2'}, eps {eps_text(self.eps)}"

    @property
    def hardware(self) -> str:
        """Each device with its precision and torch version, as the group's records give them."""
        seen = dict.fromkeys(f"{r.provenance.device} ({r.provenance.precision}, torch "
                             f"{r.provenance.torch_version})" for r in self.records)
        return "; ".join(seen)

    @property
    def has_autoattack(self) -> bool:
        return any(r.evaluation.autoattack_acc is not None for r in self.records)

    @property
    def has_nonstandard_autoattack(self) -> bool:
        return any(r.evaluation.autoattack_acc is not None and not r.evaluation.autoattack_standard
                   for r in self.records)


def group_records(records: Iterable[Record]) -> list[Group]:
    """Tables in a fixed order: real data first, synthetic last; rows by ``robust_key``."""
    groups: dict[tuple, Group] = {}
    for r in records:
        key = (r.dataset.kind, r.dataset.name, r.model.name, r.evaluation.norm, r.evaluation.eps)
        groups.setdefault(key, Group(*key)).records.append(r)
    ordered = sorted(groups.values(), key=lambda g: (KIND_ORDER[g.kind], g.dataset, g.model, g.norm, g.eps))
    for g in ordered:
        g.records.sort(key=robust_key)
    return ordered


@dataclass
class Column:
    header: str
    text: Callable[[Record], str]
    sort: Callable[[Record], float | str]  # what a click on the header sorts by


def _aa_text(r: Record) -> str:
    e = r.evaluation
    marked = e.autoattack_acc is not None and not e.autoattack_standard
    return pct(e.autoattack_acc) + (NONSTANDARD_AA if marked else "")


def _acc_sort(acc: float | None) -> float:
    return -1.0 if acc is None else acc


def columns(group: Group) -> list[Column]:
    """The seed table's columns (method, clean, PGD-20, time), AutoAttack when run, then context."""
    cols = [
        Column("Training method", method, method),
        Column("Clean", lambda r: pct(r.evaluation.clean_acc), lambda r: r.evaluation.clean_acc),
        Column("PGD-20", lambda r: pct(r.evaluation.pgd20_acc), lambda r: _acc_sort(r.evaluation.pgd20_acc)),
    ]
    if group.has_autoattack:
        cols.append(Column("AutoAttack", _aa_text, lambda r: _acc_sort(r.evaluation.autoattack_acc)))
    cols += [
        Column("Training time (min)", lambda r: minutes(r.training.seconds), lambda r: r.training.seconds),
        Column("Epochs", lambda r: str(r.training.epochs), lambda r: r.training.epochs),
        Column("n evaluated", lambda r: f"{r.evaluation.n:,}", lambda r: r.evaluation.n),
        Column("Device", lambda r: r.provenance.device, lambda r: r.provenance.device),
    ]
    return cols


def group_notes(group: Group) -> list[str]:
    """The lines under a table's title: threat model, hardware, ordering, footnotes."""
    notes = [f"Threat model {group.threat}.",
             f"Hardware: {group.hardware}.", ORDER_NOTE]
    if group.has_nonstandard_autoattack:
        notes.append(f"{NONSTANDARD_AA} not the standard AutoAttack (fewer iterations): an upper bound.")
    return notes


def ordered(records: Iterable[Record]) -> list[Record]:
    return [r for g in group_records(records) for r in g.records]


def render_json(records: Iterable[Record]) -> str:
    """A list of record dicts, in table order."""
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


def render_csv(records: Iterable[Record]) -> str:
    """One row per record, one column per leaf field; a field a record lacks is empty."""
    rows = [flatten(r.to_dict()) for r in ordered(records)]
    header = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
