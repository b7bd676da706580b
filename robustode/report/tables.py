"""Which runs share a table, and in which order; the names tables and data sets go by.

A table holds only runs that can be compared like with like: one data set (its
kind included, so CIFAR-10, its JPEG copy and synthetic data never share a table),
one training-set size, one evaluation n, one threat model and one model; tables are ordered by threat
model first (L-inf, L2, corruptions), so no table mixes them. Its rows
are the runs that differ only by seed (rows.py), sorted by mean PGD-20, best first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..records import Record
from ..threat import THREATS, describe
from .rows import Row, seed_rows
from .significance import mark_significance

KIND_ORDER = {"real": 0, "jpeg-copy": 1, "custom": 2, "synthetic": 3}
KIND_SUFFIX = {"real": "", "jpeg-copy": " (JPEG copy)", "custom": " (custom data)",
               "synthetic": " (not a benchmark)"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "cifar10-jpeg": "CIFAR-10",
                 "cifar10c": "CIFAR-10-C", "cifar100c": "CIFAR-100-C"}
THREAT_ORDER = {norm: i for i, norm in enumerate(THREATS)}  # one threat model's tables together


def dataset_label(name: str, kind: str) -> str:
    """``CIFAR-10``, ``CIFAR-10 (JPEG copy)``, ``synthetic (not a benchmark)``."""
    return DATASET_NAMES.get(name, name) + KIND_SUFFIX[kind]


def method(record: Record) -> str:
    extra = record.dataset.extra
    mixed = f" + {extra.count:,} extra images at {extra.fraction:g}" if extra else ""
    return record.defense.spec + mixed + (f" ({record.label})" if record.label else "")


def table_key(record: Record) -> tuple:
    """What every run of one table shares; the order is the tables' order."""
    d, ev = record.dataset, record.evaluation
    return THREAT_ORDER[ev.norm], KIND_ORDER[d.kind], d.name, record.model.name, ev.eps, -d.n_train, -ev.n


@dataclass
class Group:
    """The rows of one table: one data set and training-set size, one model, one threat model, one n."""

    kind: str
    dataset: str
    model: str
    norm: str
    eps: float
    n_train: int
    n: int
    rows: list[Row] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return [r for row in self.rows for r in row.runs]

    @property
    def title(self) -> str:
        return (f"{dataset_label(self.dataset, self.kind)} · {self.model} · {self.threat} · "
                f"{self.n_train:,} training images · n = {self.n:,}")

    @property
    def threat(self) -> str:
        return describe(self.norm, self.eps, symbol=True)

    @property
    def devices(self) -> list[str]:
        """Each device with its processes, precision and torch version, as the records give them."""
        return list(dict.fromkeys(
            f"{r.provenance.device}{f' ×{r.training.world_size}' if r.training.world_size > 1 else ''} "
            f"({r.provenance.precision}, torch {r.provenance.torch_version})" for r in self.records))

    def has(self, get) -> bool:
        """Whether any run of the table has a value for ``get``."""
        return any(get(r) is not None for r in self.records)


def group_records(records: Iterable[Record], significance: bool = True) -> list[Group]:
    """Tables in a fixed order (real data first, synthetic last), rows by mean PGD-20.

    With ``significance``, each row's PGD-20 is compared with the best row's on the
    same points (significance.py): that reads the records' per-example files.
    """
    tables: dict[tuple, list[Record]] = {}
    for r in records:
        tables.setdefault(table_key(r), []).append(r)
    groups = []
    for key in sorted(tables):
        first = tables[key][0]
        d, ev = first.dataset, first.evaluation
        group = Group(d.kind, d.name, first.model.name, ev.norm, ev.eps, d.n_train, ev.n,
                      sorted(seed_rows(tables[key]), key=Row.sort_key))
        if significance:
            mark_significance(group)
        groups.append(group)
    return groups
