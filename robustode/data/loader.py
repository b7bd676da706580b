"""A loader that keeps a whole split on the device and augments batches there.

The split is copied to the device once, as uint8; each batch is gathered,
optionally cropped and flipped with batched tensor ops, and only then turned into
floats in [0, 1]. Randomness comes from the loader's own generator, seeded by
(seed, epoch), so a run resumed from ``state_dict()`` sees the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import ConfigError
from ..utils import check_positive_int, resolve_device
from .types import Split

PAD = 4  # pixels of zero padding around a random crop, as in the CIFAR recipes


class DeviceLoader:
    """Iterate over a split in float batches ``(x, y)`` that live on ``device``.

    Args:
        split: a ``Split`` of uint8 NCHW images and int64 labels.
        batch_size: examples per batch; the last one is smaller unless ``drop_last``.
        device: where the split is kept and the batches are made.
        shuffle: a new permutation every epoch.
        augment: random crop (4-pixel zero padding) and random horizontal flip.
        seed: epoch k's order and augmentation depend on (seed, k) only.
        drop_last: skip the final incomplete batch.
        channels_last: hand out batches in channels_last memory format.

    Each ``iter()`` starts the next epoch; ``state_dict()`` records which one.

    Example:
        >>> loader = DeviceLoader(data.train, 512, "cuda", augment=True)
        >>> for x, y in loader: ...
    """

    def __init__(self, split: Split, batch_size: int, device: str | torch.device, *, shuffle: bool = True,
                 augment: bool = False, seed: int = 0, drop_last: bool = False, channels_last: bool = False):
        self.batch_size = check_positive_int(batch_size, "batch_size")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if split.images.dtype != torch.uint8 or split.images.dim() != 4:
            raise ConfigError(f"a split holds uint8 NCHW images, got {split.images.dtype} "
                              f"of shape {tuple(split.images.shape)}")
        if drop_last and batch_size > len(split):
            raise ConfigError(f"batch_size {batch_size} exceeds the {len(split)} examples and drop_last "
                              f"is set, so no batch would ever be produced")
        self.device = resolve_device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.drop_last, self.channels_last = drop_last, channels_last
        self.epoch = 0  # the epoch the next iter() yields

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Draw everything for the epoch up front, on the CPU, so that the batches are
        # the same on every device and the epoch advances as soon as iter() is called.
        n = len(self.labels)
        gen = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        self.epoch += 1
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        shifts = flips = None
        if self.augment:
            shifts = torch.randint(0, 2 * PAD + 1, (n, 2), generator=gen).to(self.device)
            flips = (torch.rand(n, generator=gen) < 0.5).to(self.device)
        return self._batches(order.to(self.device), shifts, flips)

    def _batches(self, order, shifts, flips):
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            images = self.images[idx]
            if self.augment:
                # Offsets and flips are indexed by position in the epoch, not by
                # example, so they stay independent of the order.
                images = crop_flip(images, shifts[start:start + len(idx)], flips[start:start + len(idx)])
            x = images.float().div_(255)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))


def crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Random-crop and flip a batch in one gather, without a loop over images.

    ``images`` (B, C, H, W) is zero-padded by ``pad`` on every side; example b is
    then the H x W window whose top-left corner is ``shifts[b] = (dy, dx)`` in the
    padded image (``(pad, pad)`` is no shift), mirrored left-right where ``flips[b]``.
    """
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = shifts[:, 0, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = torch.arange(width, device=images.device).expand(batch, width)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + shifts[:, 1, None]  # (B, W)
    b = torch.arange(batch, device=images.device)[:, None, None, None]
    c = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def _mix(seed: int, epoch: int) -> int:
    """One well-spread generator seed per (seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
