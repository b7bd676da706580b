"""Rows of a leaderboard table: the runs that differ only by their seed, summarised as mean ± std.

Two runs share a row when everything that makes them different experiments is
equal: model, defense spec and hyperparameters, data set (its source path aside),
training settings other than the seed (epochs, batch size, optimizer and schedule,
data-parallel processes), evaluation settings (n, threat model, every attack's
settings), hardware and precision, and label. What differs between seeds (results,
times, dates, code versions) is what the row summarises or lists.

A run that stopped early (e.g. its overfitting guard fired) records the epochs it
completed, not the epochs it was meant to run, so it joins the one row of otherwise
equal runs that ran at least as many epochs; where that is ambiguous it stays apart.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..records import Record
from ..specs import spelling
from ..stats import interval as proportion_interval
from ..threat import CORRUPTIONS

# A seed "collapsed" (catastrophic overfitting) when its guard fired or its PGD-20 fell below this.
COLLAPSE_BELOW = 0.02

# The accuracies a table shows, by the name their 95% interval has in evaluation.intervals.
ACCURACIES: dict[str, Callable] = {
    "clean": lambda ev: ev.clean_acc,
    "pgd-20": lambda ev: ev.pgd20_acc,
    "autoattack": lambda ev: ev.autoattack_acc,
    "worst_case": lambda ev: ev.worst_case_acc,
    CORRUPTIONS: lambda ev: ev.robust.get(CORRUPTIONS),  # a corruptions record's mean over its cells
}


def accuracy(record: Record, metric: str) -> float | None:
    return ACCURACIES[metric](record.evaluation)


def interval(record: Record, metric: str) -> tuple[float, float] | None:
    """The 95% interval of one accuracy as the record holds it (computed from n when a hand-made record
    lacks it, as the loader does for schema-1 records)."""
    ev, acc = record.evaluation, accuracy(record, metric)
    if acc is None:
        return None
    key = _interval_key(record, metric)
    if key in ev.intervals:
        low, high = ev.intervals[key]
        return low, high
    return proportion_interval(round(acc * ev.n), ev.n, ev.interval_method)


def _interval_key(record: Record, metric: str) -> str:
    """AutoAttack's interval is filed under its attack spec ("autoattack", "autoattack-dev", ...)."""
    if metric != "autoattack":
        return metric
    return record.evaluation.autoattack_spec or "autoattack"


def collapsed(record: Record) -> bool:
    """Catastrophic overfitting happened: the guard fired (and restored an earlier epoch), or PGD-20 < 2%."""
    pgd = record.evaluation.pgd20_acc
    return record.training.stop_kind == "guard" or (pgd is not None and pgd < COLLAPSE_BELOW)


@dataclass
class Row:
    """One table row: the runs of one experiment, one per seed, in seed order."""

    runs: list[Record]
    p_value: float | None = None  # PGD-20 against the table's best row (significance.py); None: not compared
    # Further evaluations of the runs' own weights (a run's record.json and an eval record with the same
    # attacks): shown as repeats, never counted as seeds.
    repeats: list[Record] = dataclasses.field(default_factory=list)

    @property
    def first(self) -> Record:
        return self.runs[0]

    @property
    def seeds(self) -> list[int]:
        return [r.training.seed for r in self.runs]

    def measured(self, get: Callable[[Record], float | None]) -> list[tuple[Record, float]]:
        """(run, value) for each run where ``get`` gives a value."""
        return [(r, v) for r in self.runs if (v := get(r)) is not None]

    def mean(self, get: Callable[[Record], float | None]) -> float | None:
        values = [v for _, v in self.measured(get)]
        return statistics.fmean(values) if values else None

    def spread(self, get: Callable[[Record], float | None], divisor: float = 1.0) -> tuple[float, float] | None:
        """(mean, standard deviation) over the runs of ``get`` / ``divisor``, the deviation 0 for one run;
        None where no run has a value."""
        values = [v / divisor for _, v in self.measured(get)]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def single_step(self) -> bool:
        """The defense takes one attack step per batch, as its record says (not today's registry)."""
        return self.first.defense.single_step

    @property
    def collapsed(self) -> int:
        return sum(collapsed(r) for r in self.runs)

    def sort_key(self) -> tuple:
        """Best mean PGD-20 (the mean corruption accuracy in a corruptions table) first; then best clean, then
        fastest. Rows without it go last."""
        pgd = self.mean(lambda r: accuracy(r, CORRUPTIONS if r.evaluation.norm == CORRUPTIONS else "pgd-20"))
        clean = self.mean(lambda r: r.evaluation.clean_acc)
        seconds = self.mean(lambda r: r.training.seconds)  # None: not trained by robustode
        return pgd is None, -(pgd or 0.0), -clean, seconds is None, seconds or 0.0


def experiment_key(record: Record) -> str:
    """All that two runs of one experiment share, as text; the epochs are kept apart (see the module)."""
    tr, ev, pv = record.training, record.evaluation, record.provenance
    data = {k: v for k, v in dataclasses.asdict(record.dataset).items() if k != "source"}
    # One spelling per spec (new records hold the canonical one already) and an attack by its settings.
    defense = {**dataclasses.asdict(record.defense), "spec": spelling(record.defense.spec)}
    attacks = sorted(json.dumps(dataclasses.asdict(s), sort_keys=True) for s in ev.attack_settings.values())
    key = {"model": dataclasses.asdict(record.model), "defense": defense, "data": data,
           "training": [tr.batch_size, tr.optimizer and dataclasses.asdict(tr.optimizer), tr.world_size],
           "evaluation": [ev.n, ev.norm, ev.eps, attacks],
           "hardware": [pv.device, pv.device_type, pv.precision], "label": record.label}
    return json.dumps(key, sort_keys=True)


def seed_rows(records: Iterable[Record]) -> list[Row]:
    """The records as rows of runs differing only by seed, in the order rows first appear."""
    groups: dict[tuple[str, int], list[Record]] = {}
    records = list(records)
    for r in records:
        if r.training.stopped_early is None:
            groups.setdefault((experiment_key(r), r.training.epochs), []).append(r)
    stopped = [r for r in records if r.training.stopped_early is not None]
    for r in sorted(stopped, key=lambda r: -r.training.epochs):  # the longest first: it may host the others
        groups.setdefault(_home(groups, r), []).append(r)
    return [_one_per_run(runs) for runs in groups.values()]


def _one_per_run(runs: list[Record]) -> Row:
    """A row counts training runs: of several evaluations of one run's weights the latest is the row's."""
    latest: dict[str, Record] = {}
    for r in sorted(runs, key=lambda r: r.provenance.date):
        latest[training_run(r)] = r
    kept = list(latest.values())
    return Row(sorted(kept, key=lambda r: (r.training.seed, r.provenance.date)),
               repeats=[r for r in runs if not any(r is k for k in kept)])


def training_run(record: Record) -> str:
    """What one training run's records share, whichever evaluation of its weights they hold."""
    tr = record.training
    return json.dumps([tr.seed, tr.epochs, tr.seconds, tr.images_per_second, tr.curve], sort_keys=True)


def _home(groups: dict, record: Record) -> tuple[str, int]:
    """The one row a stopped run belongs to: same experiment, at least as many epochs; else its own."""
    key, epochs = experiment_key(record), record.training.epochs
    fits = [k for k in groups if k[0] == key and k[1] >= epochs]
    return fits[0] if len(fits) == 1 else (key, epochs)
