"""CIFAR-10, CIFAR-100 and SVHN through torchvision's downloaders."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .catalog import DATA_ENV, data_root, datasets
from .types import DataSet, Split

DOWNLOAD_TIMEOUT_S = 60  # per socket operation: offline machines must fail, not hang

# torchvision.datasets is imported inside each loader, on this path only: after torch, it took 1.1-1.4 s to
# import (three runs of `python -c "import time, torch; t = time.perf_counter(); import torchvision.datasets;
# print(time.perf_counter() - t)"`, this CPU, 2 cores under load, torch 2.14.1, torchvision 0.29.1).


@datasets.register("cifar10")
def cifar10(*, data_dir: Path | None = None, download: bool = True) -> DataSet:
    """CIFAR-10 (Krizhevsky, 2009): 50,000 / 10,000 32x32 RGB images, 10 classes."""
    from torchvision.datasets import CIFAR10  # deferred (see above)

    data_dir = data_root(data_dir)
    return _load("cifar10", lambda train: CIFAR10(data_dir, train=train, download=download),
                 data_dir, download, _cifar_split)


@datasets.register("cifar100")
def cifar100(*, data_dir: Path | None = None, download: bool = True) -> DataSet:
    """CIFAR-100 (Krizhevsky, 2009): 50,000 / 10,000 32x32 RGB images, 100 classes."""
    from torchvision.datasets import CIFAR100  # deferred (see above)

    data_dir = data_root(data_dir)
    return _load("cifar100", lambda train: CIFAR100(data_dir, train=train, download=download),
                 data_dir, download, _cifar_split)


@datasets.register("svhn")
def svhn(*, data_dir: Path | None = None, download: bool = True) -> DataSet:
    """SVHN (Netzer et al., 2011): 73,257 / 26,032 32x32 RGB digits, 10 classes."""
    from torchvision.datasets import SVHN  # deferred (see above)

    data_dir = data_root(data_dir)
    root = data_dir / "svhn"
    return _load("svhn", lambda train: SVHN(root, split="train" if train else "test", download=download),
                 root, download, _svhn_split, classes=[str(d) for d in range(10)])


def _load(name: str, build, root: Path, download: bool, to_split, classes=None) -> DataSet:
    """Build torchvision's train and test sets, turning any failure into one DataError."""
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            train, test = build(True), build(False)
    except (OSError, RuntimeError) as err:  # urllib errors are OSErrors; torchvision raises RuntimeError
        problem = f"could not be downloaded ({_reason(err)})" if download else "downloads are off"
        raise DataError(
            f"{name} is not in {root} and {problem}; put torchvision's {name} files there, point "
            f"robustode at an existing copy with --data-dir or {DATA_ENV}, or use the cifar10-jpeg "
            f"or imagefolder:PATH data sets"
        ) from err
    return DataSet(name=name, train=to_split(train), test=to_split(test),
                   classes=list(classes or train.classes), kind="real", source=str(root))


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    return " ".join(str(reason).split()) or type(err).__name__


@contextmanager
def _socket_timeout(seconds: float):
    # torchvision opens its URLs without a timeout; the default applies to every new socket.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _cifar_split(ds) -> Split:
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return Split(images, torch.as_tensor(ds.targets, dtype=torch.int64))


def _svhn_split(ds) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels, dtype=torch.int64))

