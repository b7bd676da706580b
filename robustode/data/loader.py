"""A loader that keeps a whole split on the device and augments batches there.

The split is copied to the device once, as uint8; each batch is gathered,
optionally cropped and flipped with batched tensor ops, and only then turned into
floats in [0, 1]. Randomness comes from the loader's own generator, seeded by
(seed, epoch), so a run resumed from ``state_dict()`` sees the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..errors import ConfigError
from ..utils import check_positive_int, resolve_device
from .types import Split

PAD = 4  # pixels of zero padding around a random crop, as in the CIFAR recipes


class EpochLoader:
    """What every robustode loader shares: its batches follow from (seed, epoch) alone, so its state is those two."""

    seed: int
    epoch: int  # the epoch the next iter() yields

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))


class DeviceLoader(EpochLoader):
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
        rank, world_size: data-parallel training: every rank draws the same epoch
            (same seed) and takes its contiguous slice of each global minibatch of
            ``batch_size`` (``shard_bounds``). A last minibatch smaller than
            ``world_size`` is dropped, so that no rank is left without examples.

    Each ``iter()`` starts the next epoch; ``state_dict()`` records which one.

    Example:
        >>> loader = DeviceLoader(data.train, 512, "cuda", augment=True)
        >>> for x, y in loader: ...
    """

    def __init__(self, split: Split, batch_size: int, device: str | torch.device, *, shuffle: bool = True,
                 augment: bool = False, seed: int = 0, drop_last: bool = False, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.world_size = check_positive_int(world_size, "world_size")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if batch_size < world_size:
            raise ConfigError(f"batch_size {batch_size} is the global minibatch; it must be at least the "
                              f"{world_size} ranks sharing it")
        self.rank = rank
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
        return batch_count(len(self.labels), self.batch_size, self.drop_last, self.world_size)

    def global_batch_size(self, index: int) -> int:
        """Examples in global minibatch ``index`` (0-based) over all ranks."""
        return min(self.batch_size, len(self.labels) - index * self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Draw everything for the epoch up front, on the CPU, so that the batches are
        # the same on every device and the epoch advances as soon as iter() is called.
        n = len(self.labels)
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        self.epoch += 1
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        shifts = flips = None
        if self.augment:
            shifts, flips = (draw.to(self.device) for draw in crop_flip_draws(gen, n))
        return self._batches(order.to(self.device), shifts, flips)

    def _batches(self, order, shifts, flips):
        for index in range(len(self)):
            lo, hi = shard_bounds(self.global_batch_size(index), self.rank, self.world_size)
            first, last = index * self.batch_size + lo, index * self.batch_size + hi
            idx = order[first:last]
            images = self.images[idx]
            if self.augment:
                # Offsets and flips are indexed by position in the epoch, not by
                # example, so they stay independent of the order (and of the sharding).
                images = crop_flip(images, shifts[first:last], flips[first:last])
            yield to_float(images, self.channels_last), self.labels[idx]


def batch_count(n: int, batch_size: int, drop_last: bool, world_size: int) -> int:
    """Minibatches in an epoch of ``n`` examples: the last, incomplete one unless ``drop_last`` or it has fewer
    than ``world_size`` examples (a rank would get none)."""
    full, rest = divmod(n, batch_size)
    return full + (not drop_last and rest >= world_size)


def to_float(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A uint8 batch as floats in [0, 1], in channels_last memory format if asked."""
    if channels_last:  # reordered as uint8: a quarter of the bytes of the float copy
        images = images.contiguous(memory_format=torch.channels_last)
    return images.float().div_(255)


def crop_flip_draws(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` crop offsets (n, 2) in [0, 2 * PAD] and flips (n,), drawn on the CPU from ``gen`` in that order."""
    shifts = torch.randint(0, 2 * PAD + 1, (n, 2), generator=gen)
    return shifts, torch.rand(n, generator=gen) < 0.5


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


def shard_bounds(size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank's slice [lo, hi) of a global minibatch: contiguous, sizes differing by at most one."""
    base, extra = divmod(size, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def epoch_seed(seed: int, epoch: int) -> int:
    """One well-spread generator seed per (seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])
