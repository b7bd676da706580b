"""Common corruptions (CIFAR-10-C, CIFAR-100-C; Hendrycks & Dietterich 2019) in the released layout.

A folder holds ``labels.npy`` and one ``<corruption>.npy`` per corruption: uint8 images, N x 32 x 32 x 3
(NHWC), five severities one after the other (severity-major: the first N / 5 images are severity 1).
The release has 10,000 images per severity (50,000 per file); RobustBench reports the mean accuracy over
its 15 corruptions and 5 severities (robustbench/data.py, CORRUPTIONS). Arrays are memory-mapped: a
severity is read when it is evaluated.

    cset = load_corruptions("cifar10c:/data/CIFAR-10-C")
    x, y = cset.severity("fog", 3, n=1000)      # uint8 NCHW tensor, int64 labels
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

CORRUPTIONS = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness", "fog",
               "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression", "elastic_transform")
SEVERITIES = 5
KINDS = {"cifar10c": ("CIFAR-10-C", 10, "cifar10"), "cifar100c": ("CIFAR-100-C", 100, "cifar100")}  # title, classes, clean set
IMAGE = (32, 32, 3)


@dataclass(frozen=True)
class CorruptionSet:
    """The corrupted test images of one folder: ``severity(name, s, n)`` gives its images and labels."""

    name: str  # "cifar10c:/data/CIFAR-10-C"
    title: str  # "CIFAR-10-C"
    num_classes: int
    clean: str  # the uncorrupted data set: "cifar10"
    root: Path
    per_severity: int  # test images per severity (10,000 in the release)
    labels: np.ndarray

    @property
    def corruptions(self) -> tuple[str, ...]:
        return CORRUPTIONS

    def severity(self, corruption: str, s: int, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images of ``corruption`` at severity ``s`` (1-5), uint8 NCHW, and their labels."""
        n = self.per_severity if n is None else n
        start = (s - 1) * self.per_severity
        images = np.load(self.root / f"{corruption}.npy", mmap_mode="r")[start:start + n]
        return (torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous(),  # a copy: the map is read-only
                torch.from_numpy(self.labels[start:start + n].astype(np.int64)))

    def describe(self, n_train: int) -> dict:
        """The record's dataset section: the corruption set, and the training-set size of the model evaluated."""
        return {"name": self.name.split(":", 1)[0], "kind": "real", "source": str(self.root),
                "num_classes": self.num_classes, "n_train": n_train, "n_test": self.per_severity}


def load_corruptions(spec: str) -> CorruptionSet:
    """``cifar10c:PATH`` or ``cifar100c:PATH``, every file checked before anything is evaluated."""
    kind, _, path = spec.partition(":")
    if kind not in KINDS or not path:
        raise DataError(f"a corruption data set is cifar10c:PATH or cifar100c:PATH, got {spec!r}")
    title, classes, clean = KINDS[kind]
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{title} folder {root} does not exist")
    labels = _array(root / "labels.npy", 1)
    if len(labels) == 0 or len(labels) % SEVERITIES:
        raise DataError(f"{root / 'labels.npy'} has {len(labels)} labels, not {SEVERITIES} severities of equal size "
                        "(the release has 50,000)")
    if labels.min() < 0 or labels.max() >= classes:
        raise DataError(f"{root / 'labels.npy'} has labels outside 0..{classes - 1}: not {title}")
    for corruption in CORRUPTIONS:
        images = _array(root / f"{corruption}.npy", 4)
        if tuple(images.shape[1:]) != IMAGE or images.dtype != np.uint8:
            raise DataError(f"{root / f'{corruption}.npy'} holds {images.dtype} images of shape "
                            f"{tuple(images.shape[1:])}; {title} images are uint8 32 x 32 x 3 (NHWC)")
        if len(images) != len(labels):
            raise DataError(f"{root / 'labels.npy'} has {len(labels)} labels but {root / f'{corruption}.npy'} "
                            f"{len(images)} images")
    return CorruptionSet(spec, title, classes, clean, root, len(labels) // SEVERITIES, np.asarray(labels))


def _array(path: Path, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing: a corruption folder holds labels.npy and the 15 files "
                        f"{', '.join(c + '.npy' for c in CORRUPTIONS[:3])}, ...")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise DataError(f"{path} is not a readable .npy file ({err})") from None
    if array.ndim != ndim:
        raise DataError(f"{path} has {array.ndim} dimensions, expected {ndim}")
    return array
