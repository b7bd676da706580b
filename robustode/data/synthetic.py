"""A small procedurally drawn data set for tests and demos that need no files.

Each image is a field of soft stripes. The class fixes the stripes' orientation
(five angles, 36 degrees apart) and spatial frequency (coarse or fine); the two
colours, the phase, a small jitter of angle and frequency, and the pixel noise
are random. Colours carry no class information, so a classifier has to see the
pattern, which a small CNN learns in a few epochs on a CPU.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..utils import check_positive_int
from .catalog import datasets
from .types import DataSet, Split

NUM_CLASSES = 10
SIZE = 32
_ANGLES = 5
_CYCLES = (2.5, 5.0)  # stripe periods per image side: coarse, fine
_NOISE = 0.06


def make_synthetic(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> DataSet:
    """The ``synthetic`` data set: 10 balanced classes of 32x32 RGB stripe images.

    The same (n_train, n_test, seed) always gives the same tensors; the test set
    does not depend on n_train.

    Example:
        >>> data = make_synthetic(200, 50, seed=1)
        >>> data.train.images.shape, data.classes[0]
        (torch.Size([200, 3, 32, 32]), 'synthetic-0')
    """
    check_positive_int(n_train, "n_train")
    check_positive_int(n_test, "n_test")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return DataSet(
        name="synthetic",
        train=_draw(n_train, torch.Generator().manual_seed(2 * seed)),
        test=_draw(n_test, torch.Generator().manual_seed(2 * seed + 1)),
        classes=[f"synthetic-{c}" for c in range(NUM_CLASSES)],
        kind="synthetic",
        source=f"procedural (seed {seed})",
        meta={"seed": seed},
    )


@datasets.register("synthetic")
def synthetic(*, data_dir=None, download=True, n_train: int = 2000, n_test: int = 500, seed: int = 0):
    """Procedural 10-class 32x32 stripes (no files); options n_train, n_test, seed."""
    return make_synthetic(n_train, n_test, seed)


def _draw(n: int, gen: torch.Generator) -> Split:
    # Labels cycle 0..9 so classes are balanced and any first-n subset covers them evenly.
    labels = torch.arange(n) % NUM_CLASSES

    def uniform(*shape):
        return torch.rand(*shape, generator=gen)

    angle = (labels % _ANGLES) * (math.pi / _ANGLES) + (uniform(n) - 0.5) * (math.pi / 15)
    cycles = torch.tensor(_CYCLES)[labels // _ANGLES] * (1 + (uniform(n) - 0.5) * 0.2)
    phase = uniform(n) * (2 * math.pi)

    grid = torch.arange(SIZE, dtype=torch.float32) / SIZE
    y, x = grid[:, None], grid[None, :]
    along = x * angle.cos()[:, None, None] + y * angle.sin()[:, None, None]  # (n, H, W)
    wave = torch.sin(2 * math.pi * cycles[:, None, None] * along + phase[:, None, None])
    weight = torch.sigmoid(4 * wave)[:, None]  # soft-edged stripes, (n, 1, H, W)

    # The second colour sits roughly opposite the first on each channel, so every
    # image has contrast but its mean colour says nothing about its class.
    first = uniform(n, 3, 1, 1)
    second = (first + 0.5 + (uniform(n, 3, 1, 1) - 0.5) * 0.3) % 1.0
    images = second + (first - second) * weight
    images = images + _NOISE * torch.randn(images.shape, generator=gen)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return Split(images, labels.to(torch.int64))
