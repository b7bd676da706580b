"""A loader whose every minibatch mixes the base split with an extra set in fixed shares.

Minibatch i of data epoch e holds ``extra_share(F, B)`` = floor(F x B) extra images and B - floor(F x B)
base images (F = 0.7, B = 512: 358 + 154; Wang et al.'s sampler rounds the same way). An epoch keeps
the base set's minibatch count, ceil(N_base / B), whatever the extra set's size, as their code does.
Each set is read as an endless stream: pass k over it is a permutation drawn from (seed, set, k), and
epoch e starts where epoch e - 1 stopped, so the position of every draw follows from the epoch alone and
a resumed run continues both streams bit-exactly. Crop and flip are done on the device, as in
DeviceLoader. Under torchrun each rank takes its slice of every global minibatch's base part and every
world_size-th of its (sorted) extra images, and reads only those.

The extra images go to the device when they fit ``budget_bytes``; otherwise they stay in host memory or
on disk (memory-mapped) and each batch's share is gathered on a background thread (``Prefetch``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from ..utils import resolve_device
from .extra import ExtraSet
from .loader import EpochLoader, batch_count, crop_flip, crop_flip_draws, epoch_seed, shard_bounds, to_float
from .prefetch import Prefetch
from .types import Split

ROWS = 1 << 16  # images per block when an extra set is copied to the device


def extra_share(fraction: float, batch_size: int) -> int:
    """Extra images per minibatch: floor(fraction x batch_size), exact for decimal fractions (0.29 x 100 = 29)."""
    return math.floor(round(fraction * batch_size, 9))


class Stream:
    """Indices 0..size-1 without end: pass k is a permutation seeded by (seed, tag, k)."""

    def __init__(self, size: int, seed: int, tag: int):
        self.size, self.seed, self.tag = size, seed, tag
        self._pass, self._order = -1, None

    def take(self, start: int, count: int) -> np.ndarray:
        out, done = np.empty(count, dtype=np.int64), 0
        while done < count:
            k, offset = divmod(start + done, self.size)
            n = min(count - done, self.size - offset)
            out[done:done + n] = self._permutation(k)[offset:offset + n]
            done += n
        return out

    def _permutation(self, k: int) -> np.ndarray:
        if k != self._pass:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.tag, k]))
            self._pass, self._order = k, rng.permutation(self.size)
        return self._order


class MixedLoader(EpochLoader):
    """Iterate over float minibatches ``(x, y)`` on ``device``, ``extra_share(fraction, batch_size)`` of each
    from ``extra``; the arguments not listed are DeviceLoader's.

    Args:
        extra: an ``ExtraSet`` (``open_extra``) of images of the split's size.
        fraction: the extra share of every minibatch, in [0, 1).
        budget_bytes: the extra images go to the device when they take at most this many bytes.
    """

    def __init__(self, split: Split, extra: ExtraSet, fraction: float, batch_size: int, device, *,
                 augment: bool = False, seed: int = 0, drop_last: bool = False, channels_last: bool = False,
                 rank: int = 0, world_size: int = 1, budget_bytes: int = 0):
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.n_extra = extra_share(fraction, batch_size)
        self.n_base = batch_size - self.n_extra
        self.batches = batch_count(len(split), batch_size, drop_last, world_size)
        self.device = resolve_device(device)
        self.images, self.labels = split.images.to(self.device), split.labels.to(self.device)
        self.extra, self.augment, self.seed, self.channels_last = extra, augment, seed, channels_last
        self.resident = extra.nbytes <= budget_bytes
        self.extra_images = _to_device(extra, self.device) if self.resident else None
        self.extra_labels = torch.from_numpy(extra.labels).to(self.device) if self.resident else None
        self._streams: tuple[Stream, Stream] | None = None
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches

    def global_batch_size(self, index: int) -> int:
        return self.batch_size

    def plan(self, epoch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Epoch ``epoch``'s base and extra indices of this rank, one array per minibatch (extra ones sorted)."""
        first = epoch * self.batches
        if self._streams is None or self._streams[0].seed != self.seed:  # kept: a pass's permutation is drawn once
            self._streams = Stream(len(self.labels), self.seed, 0), Stream(len(self.extra), self.seed, 1)
        base = self._streams[0].take(first * self.n_base, self.batches * self.n_base)
        extra = self._streams[1].take(first * self.n_extra, self.batches * self.n_extra)
        b_lo, b_hi = shard_bounds(self.n_base, self.rank, self.world_size)
        bases = [base[i * self.n_base:][b_lo:b_hi] for i in range(self.batches)]
        # Each minibatch's extra indices sorted (each file read front to back), every world_size-th to this rank:
        # a set stored in class order still gives each rank every class, as a contiguous slice would not.
        r, w = self.rank, self.world_size
        extras = [np.sort(extra[i * self.n_extra:(i + 1) * self.n_extra])[r::w] for i in range(self.batches)]
        return bases, extras

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        bases, extras = self.plan(epoch)
        positions = self._positions()
        shifts = flips = None
        if self.augment:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            shifts, flips = (draw[positions].to(self.device)
                             for draw in crop_flip_draws(gen, self.batches * self.batch_size))
        # One copy of the epoch's indices to the device: a copy per batch would wait for the device each time.
        base = torch.from_numpy(np.stack(bases)).to(self.device)
        return self._batches(base, self._extra_batches(extras), shifts, flips)

    def _positions(self) -> torch.Tensor:
        """Where this rank's examples sit in the epoch's draws of augmentation, batch by batch."""
        b_lo, b_hi = shard_bounds(self.n_base, self.rank, self.world_size)
        extra = torch.arange(self.rank, self.n_extra, self.world_size)  # plan's every world_size-th extra image
        one = torch.cat([torch.arange(b_lo, b_hi), self.n_base + extra])
        return (torch.arange(self.batches)[:, None] * self.batch_size + one).reshape(-1)

    def _extra_batches(self, extras: list[np.ndarray]):
        if not self.resident:
            return iter(Prefetch(self.extra, extras, self.device))
        index = torch.from_numpy(np.stack(extras)).to(self.device)
        return ((self.extra_images[i], self.extra_labels[i]) for i in index)

    def _batches(self, bases, extra_batches, shifts, flips):
        width = None
        for i, (idx, (extra_x, extra_y)) in enumerate(zip(bases, extra_batches)):
            images = torch.cat([self.images[idx], extra_x.permute(0, 3, 1, 2)])
            labels = torch.cat([self.labels[idx], extra_y])
            if self.augment:
                width = width or len(labels)
                images = crop_flip(images, shifts[i * width:(i + 1) * width], flips[i * width:(i + 1) * width])
            yield to_float(images, self.channels_last), labels


def _to_device(extra: ExtraSet, device: torch.device) -> torch.Tensor:
    """The whole extra set as one uint8 NHWC tensor on ``device``, copied block by block."""
    out = torch.empty((len(extra), *extra.image_shape), dtype=torch.uint8, device=device)
    done = 0
    for part in extra.parts:
        for first in range(0, len(part), ROWS):
            block = np.array(part[first:first + ROWS])  # a writable copy of the block
            out[done:done + len(block)].copy_(torch.from_numpy(block))
            done += len(block)
    return out
