"""Records on disk: atomic, never-clobbering saves and strict loads that name the bad file."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from ..errors import RecordError
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


def save(record: Record, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``record`` to ``path`` atomically; an existing file is an error unless ``overwrite``."""
    path = Path(path)
    text = dumps(record)
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


def dumps(record: Record) -> str:
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
