"""Result records: one small JSON file per trained-and-evaluated model.

A record is typed data: numbers are JSON numbers (never strings), accuracies are
fractions in [0, 1], and every field of the schema is present in every file.
Loading checks all of it and raises :class:`RecordError` naming the file, so a
report never silently drops or misreads a result.

    rec = make_record(model={"name": "wrn34_10", "params": 46_160_474}, ...)
    path = save_in(rec, "leaderboard/records")
    assert load_record(path) == rec
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RecordError

SCHEMA_VERSION = 1
DATASET_KINDS = ("real", "jpeg-copy", "synthetic", "custom")

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
    hyperparameters: dict = field(default_factory=dict)  # every field of the defense, resolved


@dataclass
class DatasetInfo:
    name: str  # registry name, e.g. "cifar10" or "imagefolder:/data/cifar10-jpeg"
    kind: str = field(metadata={"choices": DATASET_KINDS})  # never mixed in one table
    n_train: int = field(metadata=_POSITIVE)
    n_test: int = field(metadata=_POSITIVE)
    num_classes: int = field(metadata=_POSITIVE)
    source: str = ""  # where the data was read from


@dataclass
class TrainingInfo:
    epochs: int = field(metadata=_NONNEG)  # epochs completed (0 for an evaluated checkpoint)
    batch_size: int = field(metadata=_POSITIVE)
    seed: int
    seconds: float = field(metadata=_NONNEG)  # training loop only, after synchronize
    images_per_second: float = field(metadata=_NONNEG)  # training images per second
    passes_per_image: float = field(metadata=_NONNEG)  # forward+backward passes per image per epoch
    optimizer: dict = field(default_factory=dict)  # lr, momentum, weight decay, schedule
    stopped_early: str | None = None  # the reason, when training stopped before its last epoch


@dataclass
class EvaluationInfo:
    n: int = field(metadata=_POSITIVE)  # the first n test images, unshuffled
    norm: str = field(metadata={"choices": ("linf", "l2")})
    eps: float = field(metadata=_NONNEG)  # pixel space
    clean_acc: float = field(metadata=_FRACTION)
    pgd20_acc: float | None = field(metadata=_FRACTION)  # None when PGD-20 was not run
    autoattack_acc: float | None = field(default=None, metadata=_FRACTION)
    autoattack_standard: bool = False  # False: not the standard AA (e.g. torchattacks' 10-step version)
    robust: dict[str, float] = field(default_factory=dict, metadata=_FRACTION)  # every attack run
    attack_settings: dict = field(default_factory=dict)  # per attack: steps, step size, restarts
    seconds: float = field(default=0.0, metadata=_NONNEG)
    flags: dict = field(default_factory=dict)  # gradient-masking checks


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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d, source: str = "record") -> Record:
        """Check every field and its type; raise RecordError naming ``source``."""
        if not isinstance(d, dict):
            raise RecordError(f"{source}: a record must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecordError(f"{source}: schema version {version!r}, but this robustode reads "
                              f"version {SCHEMA_VERSION}")
        return _build(cls, d, source, "")


def _build(cls, d: dict, source: str, prefix: str):
    if not isinstance(d, dict):
        raise RecordError(f"{source}: field '{prefix.rstrip('.')}' must be an object, got {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise RecordError(f"{source}: unknown field '{prefix}{unknown[0]}'")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.name not in d:
            raise RecordError(f"{source}: missing field '{path}'")
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, d[f.name], source, path + ".")
        else:
            values[f.name] = _check(d[f.name], hint, f.metadata, source, path)
    return cls(**values)


def _check(value, hint, meta, source: str, path: str):
    """Return ``value`` if it matches the type ``hint`` and the field metadata, else raise."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
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


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _is_type(value, hint) -> bool:
    if isinstance(value, bool):  # bool is an int subclass: keep them apart
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, hint)


def make_record(*, model: dict, defense: dict, dataset: dict, training: dict, evaluation: dict,
                provenance: dict, label: str | None = None, notes: str | None = None,
                command: str | None = None) -> Record:
    """Build and validate a record from one dict per section.

    Each dict holds that section's fields (see ``ModelInfo``, ``DefenseInfo``,
    ``DatasetInfo``, ``TrainingInfo``, ``EvaluationInfo``, ``Provenance``);
    fields with a default may be left out. ``provenance`` is what
    ``robustode.utils.provenance(device, precision)`` returns.
    """
    sections = {"model": (ModelInfo, model), "defense": (DefenseInfo, defense),
                "dataset": (DatasetInfo, dataset), "training": (TrainingInfo, training),
                "evaluation": (EvaluationInfo, evaluation), "provenance": (Provenance, provenance)}
    built = {}
    for name, (cls, values) in sections.items():
        try:
            built[name] = cls(**values)
        except TypeError as err:  # a missing or unknown keyword
            raise RecordError(f"record section '{name}': {err}") from None
    record = Record(**built, label=label, notes=notes, command=command)
    Record.from_dict(record.to_dict(), source="new record")  # names a bad field before JSON would
    # Through JSON and back, so the record equals what loading its file will give.
    return Record.from_dict(json.loads(_dumps(record)), source="new record")


def record_filename(record: Record) -> str:
    """``<dataset>__<model>__<defense>__s<seed>__<date>.json``, safe on every file system.

    The data set part uses underscores ("cifar10_jpeg"): a record's name must not read
    like the image data the repository never holds (the checks look for "cifar10-jpeg").
    """
    date = record.provenance.date.replace(":", "").replace("+0000", "Z")
    dataset = re.sub(r"[^A-Za-z0-9.]+", "_", record.dataset.name).strip("_")
    parts = [record.model.name, record.defense.spec, f"s{record.training.seed}", date]
    return "__".join([dataset] + [re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts]) + ".json"


def save(record: Record, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``record`` to ``path`` atomically; an existing file is an error unless ``overwrite``."""
    path = Path(path)
    text = _dumps(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _link_new(tmp: str, path: Path) -> None:
    # A hard link fails when the name exists, so a concurrent writer is never overwritten.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise RecordError(f"{path}: a record of that name exists already; not overwriting it") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise RecordError(f"{path}: a record of that name exists already; not overwriting it") from None
        os.replace(tmp, path)


def _dumps(record: Record) -> str:
    try:
        return json.dumps(record.to_dict(), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise RecordError(f"record cannot be written as JSON: {err}") from None


def save_in(record: Record, folder: str | os.PathLike) -> Path:
    """Save ``record`` under a new name in ``folder`` (created if needed); returns the path."""
    folder = Path(folder)
    name = record_filename(record)
    for i in range(1, 1000):
        path = folder / (name if i == 1 else name.replace(".json", f"__{i}.json"))
        if not path.exists():
            try:
                return save(record, path)
            except RecordError:  # lost a race for this name: try the next one
                continue
    raise RecordError(f"{folder}: no free file name for {name}")


def load_record(path: str | os.PathLike) -> Record:
    """Read and check one record; any problem raises RecordError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RecordError(f"{path}: cannot read record: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON: {err}") from None
    return Record.from_dict(data, source=str(path))


def load_records(folder: str | os.PathLike) -> list[Record]:
    """Load every ``*.json`` in ``folder``, sorted by file name.

    Every file is read; if any is bad, one RecordError names each bad file and
    its first problem, so nothing is dropped and all problems show at once.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordError(f"{folder}: no such records folder")
    records, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(load_record(path))
        except RecordError as err:
            problems.append(str(err))
    if problems:
        raise RecordError(f"{len(problems)} bad record file(s): " + "; ".join(problems))
    return records
