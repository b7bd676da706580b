"""A zoo entry: an ordinary model and its layer-one split written by hand (tests/zoo_models.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Case:
    make: Callable[[], nn.Module]
    layer_one: Callable
    rest: Callable
    params: Callable  # net -> layer one's parameters
    found: str


class Contract(nn.Module):
    """A network in the layer-one contract, from its ordinary module and the hand-written split."""

    def __init__(self, net: nn.Module, case: Case):
        super().__init__()
        self.net, self.case = net, case

    def layer_one(self, x):
        return self.case.layer_one(self.net, x)

    def rest(self, z):
        return self.case.rest(self.net, z)

    def layer_one_parameters(self):
        return self.case.params(self.net)

    def forward(self, x):
        return self.rest(self.layer_one(x))


def images(n: int, seed: int = 0) -> torch.Tensor:
    """n uniform random 3x32x32 images in [0, 1]."""
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
