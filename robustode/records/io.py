"""Records on disk: atomic, never-clobbering saves and strict loads that name the bad file."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from ..errors import RecordError
from ..files import NOT_RECORDS, is_record_file, write_atomic
from .consistency import check_consistent
from .points import load_points, points_file, save_points
from .schema import Record


def record_filename(record: Record) -> str:
    """``<dataset>__<model>__<defense>__s<seed>__<date>.json``, safe on every file system.

    The data set part uses underscores ("cifar10_jpeg"): a record's name must not read
    like the image data the repository never holds (the checks look for "cifar10-jpeg").
    """
    date = record.provenance.date.replace(":", "").replace("+0000", "Z")
    dataset = re.sub(r"[^A-Za-z0-9.]+", "_", record.dataset.name).strip("_")
    parts = [record.model.name, record.defense.spec, f"s{record.training.seed}", date]
    return "__".join([dataset] + [re.sub(r"[^A-Za-z0-9._-]+", "-", p).strip("-") for p in parts]) + ".json"


def save(record: Record, path: str | os.PathLike, *, overwrite: bool = False, points: dict | None = None) -> Path:
    """Write ``record`` to ``path`` atomically and return the path; an existing file is an error unless
    ``overwrite``.

    ``points`` (an evaluation's per-point results, e.g. ``run_record(...).points``) are written beside
    it as ``points-<sha>.npz``, and the file written references them by name and SHA-256. ``record``
    itself is left as it was; ``load_record`` of the path returned gives the record as written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise RecordError(f"{path}: a record of that name exists already; not overwriting it")
    check_consistent(record, f"{path}: not writing a record that cannot be true")  # it would never load
    written = record
    if points is None and record.evaluation.per_example and record.path is not None \
            and record.path.parent.resolve() != path.parent.resolve():
        points = load_record_points(record)  # a record read from elsewhere keeps its points (checked by hash)
    if points is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sha = save_points(path.parent, points, point_meta(record))
        per_example = {"file": points_file(sha), "sha256": sha}
        written = dataclasses.replace(record, evaluation=dataclasses.replace(record.evaluation,
                                                                             per_example=per_example))
    try:
        return write_atomic(path, dumps(written), overwrite=overwrite)
    except FileExistsError:
        raise RecordError(f"{path}: a record of that name exists already; not overwriting it") from None


def point_meta(record: Record) -> dict:
    """What identifies the points of a per-example file: two files compare only when these agree."""
    ev, data = record.evaluation, record.dataset
    return {"dataset": data.name, "kind": data.kind, "n": ev.n, "norm": ev.norm, "eps": ev.eps,
            "points": f"the first {ev.n} test images, unshuffled", "model": record.model.name,
            "defense": record.defense.spec}


def load_record_points(record: Record) -> dict:
    """The per-point results of a record read from a file, checked against the hash it stores."""
    info = record.evaluation.per_example
    if not info:
        raise RecordError(f"{record.path or 'record'}: no per-example results (a schema-1 record, "
                          "or saved without them)")
    if record.path is None:
        raise RecordError("a record not read from a file: its per-example results cannot be found")
    return load_points(record.path.parent / info["file"], info["sha256"])[0]


def check_points(records: list[Record]) -> None:
    """Every per-example file the records reference exists, matches its hash and gives the record's
    accuracies; one RecordError names every record that fails, as ``load_records`` does."""
    problems = []
    for record in records:
        if not record.evaluation.per_example:
            continue
        try:
            points = load_record_points(record)
        except RecordError as err:
            problems.append(str(err))
            continue
        ev = record.evaluation
        stated = {"clean": ev.clean_acc, **ev.robust, "worst_case": ev.worst_case_acc}
        for name, acc in stated.items():
            column = points.get(name)
            if acc is not None and column is not None and abs(float(column.mean()) - acc) > 1e-9:
                problems.append(f"{record.path}: {name} accuracy {acc:.4g}, but its per-example file says "
                                f"{float(column.mean()):.4g}")
                break
    if problems:
        raise RecordError(f"{len(problems)} record(s) with bad per-example results: " + "; ".join(problems))


def dumps(record: Record) -> str:
    try:
        return json.dumps(record.to_dict(), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise RecordError(f"record cannot be written as JSON: {err}") from None


def save_in(record: Record, folder: str | os.PathLike, points: dict | None = None) -> Path:
    """Save ``record`` under a new name in ``folder`` (created if needed); returns the path."""
    return save_new(record, Path(folder) / record_filename(record), points)


def save_new(record: Record, path: str | os.PathLike, points: dict | None = None) -> Path:
    """Save ``record`` at ``path``, or, when that name is taken, at the first free ``stem__N.json``."""
    path = Path(path)
    for i in range(1, 1000):
        candidate = path if i == 1 else path.with_name(f"{path.stem}__{i}{path.suffix}")
        if not candidate.exists():
            try:
                return save(record, candidate, points=points)
            except RecordError:  # lost a race for this name: try the next one
                continue
    raise RecordError(f"{path.parent}: no free file name for {path.name}")


def load_record(path: str | os.PathLike) -> Record:
    """Read and check one record; any problem raises RecordError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RecordError(f"{path}: cannot read record: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(f"{path}: not valid JSON: {err}") from None
    return dataclasses.replace(Record.from_dict(data, source=str(path)), path=path)


def record_files(folder: Path) -> list[Path]:
    """The records in ``folder`` and below it: the folder's own ``*.json`` (a records folder, or one run
    directory), and in the folders below (run directories) the files named like records: record.json,
    eval-record*.json, *-record*.json, and a records folder's NAME__MODEL__...json; never config.json,
    manifest.json or a hidden folder's files (``files.is_record_file``)."""
    top = [p for p in folder.glob("*.json") if p.name not in NOT_RECORDS]
    below = [p for p in folder.rglob("*.json") if p.parent != folder and is_record_file(p)
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(top) + sorted(below)


def find_record(path: str | os.PathLike) -> Path:
    """A record file as given, or the one record of a run directory (its record.json, else its only record)."""
    path = Path(path)
    if not path.is_dir():
        return path
    own = [p for p in record_files(path) if p.parent == path]
    if (path / "record.json") in own:
        return path / "record.json"
    if len(own) != 1:
        raise RecordError(f"{path}: a folder with {len(own)} records ({', '.join(p.name for p in own) or 'none'}); "
                          "name the record file")
    return own[0]


def load_records(folder: str | os.PathLike) -> list[Record]:
    """Load every record in ``folder`` and the run directories below it (``record_files``).

    Every file is read; if any is bad, one RecordError names each bad file and
    its first problem, so nothing is dropped and all problems show at once. A record
    found twice (a run's record.json and its copy in a records folder) is loaded twice:
    the leaderboard counts training runs, not files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise RecordError(f"{folder}: no such records folder")
    records, problems = [], []
    for path in record_files(folder):
        try:
            records.append(load_record(path))
        except RecordError as err:
            problems.append(str(err))
    if problems:
        raise RecordError(f"{len(problems)} bad record file(s): " + "; ".join(problems))
    return records
