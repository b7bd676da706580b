"""``robustode data convert``: .npz parts -> one memory-mappable directory with a manifest.

The images are streamed through in blocks (never the whole set in memory, compressed archives
included) into ``images.npy`` (uint8 N x H x W x C, as released), the labels into ``labels.npy``
(int64); ``manifest.json`` keeps the count, the image shape, the class histogram and each file's
size and SHA-256, hashed as it is written. ``open_extra(OUT)`` checks the manifest before training.

    convert(["part1.npz", "part2.npz"], "gen20m/")
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..progress import Progress
from .arrays import ArrayRef, chunks, header
from .extra import FORMAT, MANIFEST, _npz_refs, check_pair, manifest_digest, read_labels

BLOCK_ROWS = 32768  # images per block: 100 MB of 32 x 32 x 3


def convert(paths: Sequence[str | Path], out_dir: str | Path, *, quiet: bool = False) -> dict:
    """Write ``out_dir``/images.npy, labels.npy and manifest.json from the .npz ``paths``; return the manifest."""
    paths = [Path(p) for p in paths]
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty; convert into a new directory")
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p} does not exist")
    refs = [_npz_refs(p) for p in paths]
    shape = None
    for images, labels in refs:
        h = header(images)
        check_pair(h, header(labels), images, shape)
        shape = (h.shape[3], h.shape[1], h.shape[2])  # every part like the first
    labels = np.concatenate([read_labels(lab) for _, lab in refs])
    if labels.min(initial=0) < 0:
        raise DataError(f"{paths[0]}: label {labels.min()} is negative; labels are class indices")
    histogram = np.bincount(labels)
    out.mkdir(parents=True, exist_ok=True)
    count, (c, hgt, wid) = len(labels), shape
    files = {"images.npy": _write(out / "images.npy", [r for r, _ in refs], (count, hgt, wid, c), np.uint8, quiet),
             "labels.npy": _write_array(out / "labels.npy", labels)}
    manifest = {"format": FORMAT, "version": 1, "count": count, "shape": [hgt, wid, c],
                "histogram": [int(v) for v in histogram], "sources": [str(p) for p in paths], "files": files,
                "digest": manifest_digest(files)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _npy_header(shape: tuple, dtype) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()


def _write(path: Path, refs: list[ArrayRef], shape: tuple, dtype, quiet: bool) -> dict:
    """Stream the parts into one .npy, hashing the bytes as they are written."""
    h = hashlib.sha256()
    with open(path, "wb") as f, Progress(shape[0], f"converting {path.name}", quiet=quiet, unit="images") as bar:
        head = _npy_header(shape, dtype)
        f.write(head)
        h.update(head)
        size, done = len(head), 0
        for ref in refs:
            for block in chunks(ref, BLOCK_ROWS):
                raw = np.ascontiguousarray(block).tobytes()
                f.write(raw)
                h.update(raw)
                size += len(raw)
                done += len(block)
                bar.update(done)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": size, "sha256": h.hexdigest()}


def _write_array(path: Path, array: np.ndarray) -> dict:
    raw = _npy_header(array.shape, array.dtype) + np.ascontiguousarray(array).tobytes()
    path.write_bytes(raw)
    return {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
