"""What every data set returns: uint8 images, labels and class names."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import DataError


@dataclass
class Split:
    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, what: str = "split") -> "Split":
        """The first n examples, unshuffled, as the field's evaluations take them."""
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"subset size must be a positive integer, got {n!r}")
        if n > len(self):
            raise DataError(f"asked for {n} examples of the {what}, which has only {len(self)}")
        return Split(self.images[:n], self.labels[:n])


@dataclass
class DataSet:
    name: str  # e.g. "cifar10", "imagefolder:cifar10-jpeg", "synthetic"
    train: Split
    test: Split
    classes: list[str]
    kind: str = "real"  # "real", "jpeg-copy", "synthetic" or "custom": never mix them in one table
    source: str = ""  # where it was read from
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.classes) < 2:  # one logit: every prediction right, clean and "robust" 100% by construction
            raise DataError(f"{self.name} has {len(self.classes)} class(es) ({', '.join(self.classes) or 'none'}); "
                            "a classifier needs at least 2")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source,
                "num_classes": self.num_classes, "n_train": len(self.train), "n_test": len(self.test)}
