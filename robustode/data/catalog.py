"""The data set registry, where data lives, and ``load_dataset``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from ..registry import Registry
from .types import DataSet

datasets = Registry("dataset")

DATA_ENV = "ROBUSTODE_DATA"
SOURCES = ("--data-dir", f"${DATA_ENV}", "~/.cache/robustode")  # who names the data folder, the first given wins


class DataFolder(NamedTuple):
    """Where data sets live, and which of ``SOURCES`` named the folder."""

    path: Path
    named_by: str

    @property
    def by_user(self) -> bool:
        """Named by the user, so it must exist; the default folder is made when needed."""
        return self.named_by != SOURCES[-1]


def data_folder(data_dir: str | os.PathLike | None = None) -> DataFolder:
    """The data folder: ``data_dir``, else ``$ROBUSTODE_DATA``, else ``~/.cache/robustode``, with its source."""
    if data_dir is not None:
        return DataFolder(Path(data_dir).expanduser(), SOURCES[0])
    if os.environ.get(DATA_ENV):
        return DataFolder(Path(os.environ[DATA_ENV]).expanduser(), SOURCES[1])
    return DataFolder(Path.home() / ".cache" / "robustode", SOURCES[2])


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$ROBUSTODE_DATA``, else ``~/.cache/robustode``."""
    return data_folder(data_dir).path


def check_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_root``, where a folder the user named (``--data-dir``, ``$ROBUSTODE_DATA``) must exist: a typo
    would otherwise get a data set downloaded and a decode cache of hundreds of MB written into a new folder."""
    folder = data_folder(data_dir)
    if folder.by_user and not folder.path.is_dir():
        what = "is a file, not a folder" if folder.path.exists() else "does not exist"
        instead = " or ".join(SOURCES[SOURCES.index(folder.named_by) + 1:])
        raise DataError(f"data folder {folder.path} (from {folder.named_by}) {what}; create it first, or leave "
                        f"{folder.named_by} out for {instead}")
    return folder.path


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
                 train_subset: int | None = None, test_subset: int | None = None, **options) -> DataSet:
    """Load a registered data set as uint8 NCHW images and int64 labels.

    Args:
        name: ``"cifar10"``, ``"cifar100"``, ``"svhn"``, ``"cifar10-jpeg"``,
            ``"imagefolder:PATH"`` (a directory or .tar/.tar.gz holding ``train/`` and
            ``test/``) or ``"synthetic"``; ``datasets.names()`` lists them all.
        data_dir: where data sets are found, downloaded and cached; default
            ``$ROBUSTODE_DATA``, else ``~/.cache/robustode``.
        download: let torchvision download a missing data set.
        train_subset, test_subset: keep only the first n examples (unshuffled).
        options: passed to the data set's factory, e.g. ``n_train=`` for synthetic.

    Example:
        >>> data = load_dataset("synthetic", test_subset=100)
        >>> data.test.images.shape
        torch.Size([100, 3, 32, 32])
    """
    data = datasets.get(name, data_dir=check_data_dir(data_dir), download=download, **options)
    data.train = data.train.subset(train_subset, f"{data.name} training set")
    data.test = data.test.subset(test_subset, f"{data.name} test set")
    return data
