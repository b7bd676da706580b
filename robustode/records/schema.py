"""The record schema: typed sections, each field's type and range, and the validation that reads them.

A record is typed data: numbers are JSON numbers (never strings), accuracies are
fractions in [0, 1], and every field of the schema is present in every file.
``Record.from_dict`` checks all of it and raises :class:`RecordError` naming the
source, so a report never silently drops or misreads a result.

A record stores all its rendering needs (whether its defense is single-step, too), so
an old record renders the same whatever is registered today. Records of schemas 1 and 2
still load: ``migrate`` says what each later version added and how it is filled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecordError
from ..threat import THREATS
from .consistency import check_consistent
from .migrate import from_v1, from_v2
from .show import record_text

SCHEMA_VERSION = 3
READS = (1, 2, 3)
DATASET_KINDS = ("real", "jpeg-copy", "synthetic", "custom")
# Why training stopped early (training.Stop.kind): a non-finite loss, max_seconds spent, the defense's guard.
STOP_KINDS = ("diverged", "budget", "guard")

# Field metadata read by the validator: a numeric range, or a set of allowed strings.
_FRACTION = {"range": (0.0, 1.0)}
_NONNEG = {"range": (0.0, math.inf)}
_POSITIVE = {"range": (1, math.inf)}


@dataclass
class ModelInfo:
    name: str  # registry name, e.g. "wrn34_10"
    params: int = field(metadata=_POSITIVE)  # trainable parameter count


@dataclass
class DefenseInfo:
    spec: str  # as given on the command line, e.g. "yopo-5-3"
    name: str  # the defense family, e.g. "yopo"
    single_step: bool  # one attack step per batch (its class's ``single_step``): the report counts collapses
    hyperparameters: dict = field(default_factory=dict)  # every field of the defense, resolved


@dataclass
class DatasetInfo:
    name: str  # registry name, e.g. "cifar10" or "imagefolder:/data/cifar10-jpeg"
    kind: str = field(metadata={"choices": DATASET_KINDS})  # never mixed in one table
    n_train: int = field(metadata=_POSITIVE)
    n_test: int = field(metadata=_POSITIVE)
    num_classes: int = field(metadata=_POSITIVE)
    source: str = ""  # where the data was read from
    # The extra training set mixed into every minibatch (robustode.data.extra): source, count, shape,
    # class histogram, digest and what it covers, fraction; None when there was none.
    extra: dict | None = None


@dataclass
class OptimizerInfo:
    """The SGD settings a run used, as resolved (the defense's preset where the run set none)."""

    lr: float = field(metadata=_NONNEG)  # peak learning rate
    momentum: float = field(metadata=_NONNEG)
    weight_decay: float = field(metadata=_NONNEG)
    schedule: str  # multistep, cyclic, cosine, constant, onecycle
    milestones: list[float] = field(default_factory=list)  # nominal epochs of multistep's decays
    gamma: float = 0.1  # multistep's factor
    momentum_min: float | None = None  # the momentum at the lr peak, when it cycled


@dataclass
class TrainingInfo:
    epochs: int = field(metadata=_NONNEG)  # epochs completed (0 for an evaluated checkpoint)
    batch_size: int = field(metadata=_POSITIVE)
    seed: int
    seconds: float = field(metadata=_NONNEG)  # training loop only, after synchronize
    images_per_second: float = field(metadata=_NONNEG)  # training images per second
    passes_per_image: float = field(metadata=_NONNEG)  # forward+backward passes per image per epoch
    optimizer: OptimizerInfo | None = None  # None for a checkpoint robustode did not train
    stopped_early: str | None = None  # the reason, when training stopped before its last epoch
    stop_kind: str | None = field(default=None, metadata={"choices": STOP_KINDS})
    # One row per data epoch: epoch, nominal_epoch, lr, loss, train_acc, eval_clean, eval_robust (held out).
    curve: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch of checkpoints/best.pt (keep_best), marked on the curve
    world_size: int = field(default=1, metadata=_POSITIVE)  # data-parallel processes (GPUs): seconds x it = GPU-s
    peak_memory_bytes: int | None = field(default=None, metadata=_NONNEG)  # CUDA peak allocated; None on CPU
    flops_per_image: float | None = field(default=None, metadata=_NONNEG)  # counted, one training step


@dataclass
class EvaluationInfo:
    n: int = field(metadata=_POSITIVE)  # the first n test images, unshuffled
    norm: str = field(metadata={"choices": THREATS})  # "corruptions": eps 0, robust holds each cell and the mean
    eps: float = field(metadata=_NONNEG)  # pixel space
    clean_acc: float = field(metadata=_FRACTION)
    pgd20_acc: float | None = field(metadata=_FRACTION)  # None when PGD-20 was not run
    autoattack_acc: float | None = field(default=None, metadata=_FRACTION)
    autoattack_standard: bool = False  # False: not the standard AA (e.g. torchattacks' 10-step version)
    robust: dict[str, float] = field(default_factory=dict, metadata=_FRACTION)  # every attack run
    attack_settings: dict = field(default_factory=dict)  # per attack: steps, step size, restarts
    seconds: float = field(default=0.0, metadata=_NONNEG)
    flags: dict = field(default_factory=dict)  # gradient-masking checks
    worst_case_acc: float | None = field(default=None, metadata=_FRACTION)  # correct under every attack
    # 95% interval [lo, hi] of "clean", every attack and "worst_case", by interval_method.
    intervals: dict[str, list[float]] = field(default_factory=dict, metadata=_FRACTION)
    interval_method: str = field(default="wilson", metadata={"choices": ("wilson", "clopper-pearson")})
    per_example: dict | None = None  # {"file": name beside the record, "sha256": ...}: per-point results
    randomized: bool = False  # two eval-mode forwards of one batch differed: evaluated with EOT
    escalation: list[dict] = field(default_factory=list)  # stages run because a flag fired, in order
    # A model with ODE blocks: "solvers" (each block's, described) and per attack "evaluations_per_batch"
    # of f (forward and adjoint backward); "probe": robustode probe's sweeps when it ran. None otherwise.
    ode: dict | None = None


@dataclass
class Provenance:
    robustode_version: str
    git_commit: str | None
    torch_version: str
    device: str  # e.g. "NVIDIA H200"
    device_type: str  # "cuda" or "cpu"
    precision: str  # e.g. "bf16" or "fp32"
    date: str = field(metadata={"iso_date": True})


@dataclass
class Record:
    model: ModelInfo
    defense: DefenseInfo
    dataset: DatasetInfo
    training: TrainingInfo
    evaluation: EvaluationInfo
    provenance: Provenance
    label: str | None = None  # a short name for this run, shown beside the method
    notes: str | None = None
    command: str | None = None  # the command line that produced it
    schema_version: int = SCHEMA_VERSION
    # The file this record was read from (set by load_record, never written): its per-example results lie
    # beside it. Not part of the record's value: two equal records read from two files are equal.
    path: Path | None = field(default=None, compare=False, metadata={"stored": False})

    def __str__(self) -> str:
        return record_text(self)

    __repr__ = __str__

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["path"]
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d, source: str = "record") -> Record:
        """Check every field and its type; raise RecordError naming ``source``."""
        if not isinstance(d, dict):
            raise RecordError(f"{source}: a record must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version not in READS or isinstance(version, bool):
            raise RecordError(f"{source}: schema version {version!r}, but this robustode reads "
                              f"versions {', '.join(map(str, READS))}")
        if version < 3:
            d = from_v2(d, version, source)
        record = _build(cls, d, source, "", lenient=version < SCHEMA_VERSION)  # older: later fields default
        if version < 2:
            from_v1(record)
        check_consistent(record, source)
        record.schema_version = SCHEMA_VERSION
        return record


def _build(cls, d: dict, source: str, prefix: str, lenient: bool = False):
    if not isinstance(d, dict):
        raise RecordError(f"{source}: field '{prefix.rstrip('.')}' must be an object, got {d!r}")
    stored = [f for f in dataclasses.fields(cls) if f.metadata.get("stored", True)]
    unknown = sorted(set(d) - {f.name for f in stored})
    if unknown:
        raise RecordError(f"{source}: unknown field '{prefix}{unknown[0]}'")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in stored:
        path = prefix + f.name
        if f.name not in d:
            if lenient and _has_default(f):  # an older schema: the field came later
                continue
            raise RecordError(f"{source}: missing field '{path}'")
        hint, value = _nested(hints[f.name], d[f.name])
        if dataclasses.is_dataclass(hint):
            values[f.name] = None if value is None else _build(hint, value, source, path + ".", lenient)
        else:
            values[f.name] = _check(d[f.name], hint, f.metadata, source, path)
    return cls(**values)


def _nested(hint, value):
    """(the dataclass of a nested part, its value) for ``X`` and ``X | None`` hints; an optional part stored
    as {} (records before it was typed) or null is None. Other hints pass through."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 \
            and dataclasses.is_dataclass(args[0]):
        return args[0], (None if value in (None, {}) else value)
    return hint, value


def _check(value, hint, meta, source: str, path: str):
    """Return ``value`` if it matches the type ``hint`` and the field metadata, else raise."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    if typing.get_origin(hint) is list or hint is list:
        if not isinstance(value, list):
            raise RecordError(f"{source}: field '{path}' must be a list, got {value!r}")
        if args:  # list[X]: the metadata applies to each item
            return [_check(v, args[0], meta, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return value
    if typing.get_origin(hint) is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise RecordError(f"{source}: field '{path}' must be an object with string keys, got {value!r}")
        if args:  # dict[str, X]: the metadata applies to each value
            return {k: _check(v, args[1], meta, source, f"{path}.{k}") for k, v in value.items()}
        return value
    if not _is_type(value, hint):
        raise RecordError(f"{source}: field '{path}' must be {_TYPE_WORDS[hint]}, got {value!r}")
    if "range" in meta and not meta["range"][0] <= value <= meta["range"][1]:
        lo, hi = meta["range"]
        raise RecordError(f"{source}: field '{path}' must lie in [{lo}, {hi}], got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise RecordError(f"{source}: field '{path}' must be one of {', '.join(meta['choices'])}, "
                          f"got {value!r}")
    if meta.get("iso_date"):
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f"{source}: field '{path}' must be an ISO date, got {value!r}") from None
    return float(value) if hint is float else value


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "an object"}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _is_type(value, hint) -> bool:
    if isinstance(value, bool):  # bool is an int subclass: keep them apart
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, hint)
