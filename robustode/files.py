"""Writing result files safely: atomic, never clobbering by accident, checked before the work starts; and the
digests that name what a file or a model holds.

A file is written to a uniquely named temporary file beside it (removed again if
anything fails), flushed to disk and then renamed into place, so a reader never
sees half a file and a crash leaves the old one. Files are created with the
permissions the user's umask gives (not mkstemp's private 0600).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path

import torch

from .errors import ConfigError


def write_atomic(path: str | os.PathLike, data: str | bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; with ``overwrite=False`` an existing file is never replaced
    (a concurrent writer of the same name included): FileExistsError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
        except OSError as err:  # a full disk: say which file could not be written (the old one stays)
            raise OSError(err.errno, err.strerror, str(path)) from None
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _link_new(tmp: Path, path: Path) -> None:
    # A hard link fails when the name exists, so a concurrent writer is never overwritten.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def check_output_file(path: str | os.PathLike, *, force: bool = False, what: str = "output file",
                      record: bool = False) -> Path:
    """Refuse, before any work, an output file that could not be written or would be replaced unasked;
    unless it is a ``record``, also one in a folder of records (a report there would be read as a bad
    record, or replace one)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not force:
        raise ConfigError(f"{what} {path} exists; not overwriting it (pass --force / force=True to replace it)")
    if not record and holds_records(path.parent):
        raise ConfigError(f"{what} {path}: {path.parent} is a folder of records, and this file is not one; "
                          "write it elsewhere")
    check_output_dir(path.parent, what=f"the folder of {what} {path}")
    return path


NOT_RECORDS = ("config.json", "manifest.json")  # the other JSON files robustode writes beside records


def is_record_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as robustode names records: record.json, eval-record*.json, *-record*.json, or a
    records folder's NAME__MODEL__...json; never config.json or manifest.json (``records.record_files``)."""
    name = Path(path).name
    return name.endswith(".json") and name not in NOT_RECORDS and ("record" in name or name.count("__") >= 3)


def holds_records(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds result records: files named as records (``is_record_file``), or their
    per-point files (``points-*.npz``)."""
    folder = Path(folder)
    return folder.is_dir() and (next(folder.glob("points-*.npz"), None) is not None
                                or any(is_record_file(p) for p in folder.glob("*.json")))


def check_output_dir(path: str | os.PathLike, *, what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that is a file or cannot be created or written."""
    path = Path(path)
    existing = next((p for p in [path, *path.parents] if p.exists()), None)
    if existing is None:
        return path
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, not a folder")
    try:  # a real write, since permission bits say nothing about read-only mounts (or to root)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot write in {existing} ({err.strerror})") from None
    return path


def sha256_file(path: str | os.PathLike, block: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes, read in blocks of 16 MiB (a 1 GB checkpoint is never in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def content_digest(value) -> str:
    """SHA-256 of tensors, dicts, lists and plain values in a fixed order: a tensor by its dtype, shape and
    bytes, a dict by its items sorted by key. A checkpoint's payload digest and a model's weights digest."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(b"D%d" % len(value))
        for key in sorted(value, key=repr):  # optimizer states key by int, the rest by str
            _feed(h, key)
            _feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(b"L%d" % len(value))
        for item in value:
            _feed(h, item)
    else:
        h.update(b"S" + repr(value).encode())
