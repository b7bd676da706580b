"""An extra training set (e.g. generated images) that need not fit anywhere: memory-mapped NHWC uint8.

Two forms are read, each checked before any training:

- the released ``.npz`` files of Wang et al. 2023 (github.com/wzekai99/DM-Improves-AT: arrays ``image``,
  uint8 N x H x W x C, and ``label``), one or several parts; their images are memory-mapped in place
  (the released archives are uncompressed);
- a directory written by ``robustode data convert``: ``images.npy``, ``labels.npy`` and
  ``manifest.json`` (count, shape, class histogram, SHA-256 of each file).

    extra = open_extra(["1m.npz"], data.train)
    len(extra), extra.histogram, extra.describe()
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import sha256_file
from .arrays import ArrayRef, Header, chunks, header, members, memmap
from .types import DataSet

MANIFEST = "manifest.json"
FORMAT = "robustode-extra"
VERIFY_BYTES = 1 << 30  # files up to 1 GiB are re-hashed whenever they are opened; larger ones are checked by size
LABEL_ROWS = 1 << 22


@dataclass(frozen=True)
class ExtraSet:
    """An extra training set: NHWC uint8 images in one or more memory-mapped parts, int64 labels in memory."""

    parts: tuple[np.ndarray, ...]  # (n_i, H, W, C) uint8 each, memory-mapped
    labels: np.ndarray  # int64 (N,)
    source: str  # the paths as given
    digest: str  # SHA-256 of the manifest's file hashes, or (an .npz) of the labels and the image shapes
    digest_of: str  # what the digest covers: "files" or "labels and shapes"
    histogram: tuple[int, ...]  # images per class

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.parts[0].shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def gather(self, index: np.ndarray, out: np.ndarray) -> None:
        """Images ``index`` (sorted ascending, so that each part is read front to back) into ``out``."""
        starts = np.cumsum([0] + [len(p) for p in self.parts])
        cuts = np.searchsorted(index, starts)
        for part, start, lo, hi in zip(self.parts, starts, cuts[:-1], cuts[1:]):
            if hi > lo:
                np.take(part, index[lo:hi] - start, axis=0, out=out[lo:hi])

    def describe(self) -> dict:
        """What a record keeps of the set: where it came from, how many images per class, its digest."""
        return {"source": self.source, "count": len(self), "shape": list(self.image_shape),
                "histogram": list(self.histogram), "digest": self.digest, "digest_of": self.digest_of}


def open_extra(paths: str | Path | Sequence[str | Path], base: DataSet) -> ExtraSet:
    """The extra set at ``paths`` (.npz parts, or one directory from ``robustode data convert``), checked
    against the base data set: image size, dtype, layout, labels among its classes."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise DataError("no extra data given")
    num_classes = base.num_classes
    shape = tuple(base.train.images.shape[1:])  # (C, H, W)
    source = ", ".join(map(str, paths))
    if len(paths) == 1 and paths[0].is_dir():
        return _open_converted(paths[0], shape, num_classes)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"extra data {missing[0]} does not exist")
    wrong = [p for p in paths if p.suffix != ".npz"]
    if wrong:
        raise DataError(f"extra data {wrong[0]}: expected .npz files (image, label) or a directory written by "
                        "`robustode data convert`")
    refs = [_npz_refs(p) for p in paths]
    for images, labels in refs:
        check_pair(header(images), header(labels), images, shape)
    parts = tuple(memmap(images) for images, _ in refs)
    labels = np.concatenate([read_labels(lab) for _, lab in refs])
    histogram = class_histogram(labels, num_classes, source)
    h = hashlib.sha256(labels.tobytes())
    h.update(json.dumps([list(p.shape) for p in parts]).encode())
    return ExtraSet(parts, labels, source, h.hexdigest(), "labels and shapes", histogram)


def _npz_refs(path: Path) -> tuple[ArrayRef, ArrayRef]:
    names = members(path)
    for needed in ("image", "label"):
        if needed not in names:
            raise DataError(f"{path} has no {needed!r} array (it holds: {', '.join(names) or 'nothing'}); the "
                            "released format is an .npz with 'image' (uint8 N x H x W x C) and 'label'")
    return ArrayRef(path, "image.npy"), ArrayRef(path, "label.npy")


def check_pair(images: Header, labels: Header, where: ArrayRef, shape: tuple[int, int, int] | None) -> None:
    """Images uint8 NHWC of the base set's size (C, H, W) = ``shape`` (None: any), C-ordered; labels
    integers, one per image."""
    s = images.shape
    if len(s) != 4:
        raise DataError(f"{where} has shape {s}; expected N x H x W x C images")
    if s[1] in (1, 3) and s[3] not in (1, 3):
        raise DataError(f"{where} is laid out NCHW {s}; the format is NHWC (N, H, W, C): convert it with "
                        "np.transpose(images, (0, 2, 3, 1))")
    if images.dtype != np.uint8:
        raise DataError(f"{where} holds {images.dtype} images; the format is uint8 (0..255)")
    c, hgt, wid = shape or (s[3], s[1], s[2])
    if s[1:] != (hgt, wid, c):
        raise DataError(f"{where} holds {s[1]}x{s[2]}x{s[3]} images (HxWxC); the base set's are {hgt}x{wid}x{c}")
    if images.fortran:
        raise DataError(f"{where} is stored in Fortran order; save it C-ordered (np.ascontiguousarray)")
    if labels.dtype.kind not in "iu" or len(labels.shape) != 1:
        raise DataError(f"{where}'s labels are {labels.dtype} of shape {labels.shape}; expected integers, "
                        "one per image")
    if labels.shape[0] != s[0]:
        raise DataError(f"{where}: {s[0]} images but {labels.shape[0]} labels")


def read_labels(ref: ArrayRef) -> np.ndarray:
    return np.concatenate(list(chunks(ref, LABEL_ROWS)) or [np.zeros(0, np.int64)]).astype(np.int64)


def class_histogram(labels: np.ndarray, num_classes: int, where: str) -> tuple[int, ...]:
    """Images per class; a label outside the base set's classes is refused."""
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise DataError(f"{where} has label {bad}, outside the base set's {num_classes} classes (0..{num_classes - 1})")
    return tuple(int(v) for v in np.bincount(labels, minlength=num_classes))


def manifest_digest(files: dict) -> str:
    """The set's identity: SHA-256 over each file's name and SHA-256, in a fixed order."""
    return hashlib.sha256(json.dumps({k: v["sha256"] for k, v in sorted(files.items())}).encode()).hexdigest()


def _open_converted(folder: Path, shape: tuple[int, int, int], num_classes: int) -> ExtraSet:
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} has no {MANIFEST}; write the directory with `robustode data convert PATH... {folder}`")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("format") != FORMAT:
            raise KeyError("format")
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a robustode extra-data manifest ({err})") from None
    for name, entry in files.items():
        _verify(folder / name, entry)
    images, labels = ArrayRef(folder / "images.npy"), ArrayRef(folder / "labels.npy")
    check_pair(header(images), header(labels), images, shape)
    part = memmap(images)
    label_array = read_labels(labels)
    histogram = class_histogram(label_array, num_classes, str(folder))
    said_count, said = manifest.get("count"), list(manifest.get("histogram", []))
    if len(part) != said_count or list(histogram[:len(said)]) != said:  # the manifest's ends at its largest label
        raise DataError(f"{path} says {said_count} images, histogram {said}; the files hold {len(part)}, "
                        f"{list(histogram)}")
    return ExtraSet((part,), label_array, str(folder), manifest_digest(files), "files", histogram)


def _verify(path: Path, entry: dict) -> None:
    """The file's size always, its SHA-256 when it is at most VERIFY_BYTES (hashing 150 GB takes minutes)."""
    if not path.is_file():
        raise DataError(f"{path} is listed in the manifest but missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise DataError(f"{path} has {size} bytes; the manifest says {entry['bytes']} (truncated or replaced)")
    if size <= VERIFY_BYTES and sha256_file(path) != entry["sha256"]:
        raise DataError(f"{path} does not match the SHA-256 in its manifest (changed after conversion)")

