"""Per-example results: which test points are correct clean, under each attack and in the worst case.

Saved as a compressed ``.npz`` beside the record (referenced and hashed there), they
let two runs be compared on the same points (``robustode compare``), a long
evaluation resume after a kill (robustode.evaluation.state), and attacks run at
different times be combined into one worst case.

    sha = save_points("eval-record.points.npz", result.per_point, {"dataset": "cifar10", "n": 1000})
    per_point, meta = load_points("eval-record.points.npz", sha)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import RecordError
from ..files import write_atomic

SUFFIX = ".npz"


def points_file(sha256: str) -> str:
    """The per-example file's name: named by its content, so the same results in the run directory and in
    a records folder are the same file and the record's reference holds in both places."""
    return f"points-{sha256[:16]}{SUFFIX}"


def save_points(path: str | os.PathLike, arrays: dict, meta: dict) -> str:
    """Write boolean (or small integer) arrays by name, with ``meta``; returns the file's SHA-256.

    A folder for ``path`` stores the file as ``points_file(sha)`` in that folder.
    """
    names = list(arrays)
    payload = {f"a{i}": to_numpy(arrays[name]) for i, name in enumerate(names)}
    payload["meta"] = np.array(json.dumps({**meta, "names": names}, sort_keys=True))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **payload)  # deterministic bytes: zip entries carry a fixed date
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    path = Path(path)
    write_atomic(path / points_file(sha) if path.is_dir() else path, data)
    return sha


def load_points(path: str | os.PathLike, sha256: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays by name and the meta of a per-example file; RecordError if missing, corrupt or changed."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RecordError(f"{path}: cannot read the per-example results: {err.strerror}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise RecordError(f"{path}: the per-example results do not match the sha256 in their record")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            arrays = {name: npz[f"a{i}"] for i, name in enumerate(meta.pop("names"))}
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:  # damaged or not one
        raise RecordError(f"{path}: not a per-example results file ({err})") from None
    return arrays, meta


def to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


