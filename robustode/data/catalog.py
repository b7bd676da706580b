"""The data set registry, where data lives, and ``load_dataset``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from ..registry import Registry
from .types import DataSet

datasets = Registry("dataset")

DATA_ENV = "ROBUSTODE_DATA"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir``, else ``$ROBUSTODE_DATA``, else ``~/.cache/robustode``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or Path.home() / ".cache" / "robustode"
    return Path(data_dir).expanduser()


def check_data_dir(data_dir: str | os.PathLike, named_by: str = "--data-dir") -> Path:
    """A data folder the user named (``--data-dir``, ``$ROBUSTODE_DATA``) must exist: a typo would otherwise
    get a data set downloaded and a decode cache of hundreds of MB written into a new folder."""
    path = data_root(data_dir)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        instead = f"${DATA_ENV} or ~/.cache/robustode" if named_by == "--data-dir" else "~/.cache/robustode"
        raise DataError(f"data folder {path} (from {named_by}) {what}; create it first, or leave {named_by} "
                        f"out for {instead}")
    return path


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
    if data_dir is not None:
        root = check_data_dir(data_dir)
    elif os.environ.get(DATA_ENV):  # named by the user too: a mistyped one is an error, never ignored
        root = check_data_dir(os.environ[DATA_ENV], named_by=f"${DATA_ENV}")
    else:
        root = data_root()
    data = datasets.get(name, data_dir=root, download=download, **options)
    data.train = data.train.subset(train_subset, f"{data.name} training set")
    data.test = data.test.subset(test_subset, f"{data.name} test set")
    return data
