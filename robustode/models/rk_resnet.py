"""Other one-step ODE schemes on the CIFAR ResNet: Heun (RK2) stages and the small-step ResNet.

Both keep the plain ResNet's blocks (same depth, parameters and state-dict
keys), so only the way the residual functions are combined differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import PreActBlock, PreActResNet
from .cifar_resnet import blocks_per_stage, cifar_resnet, register_depths


class HeunStage(nn.Module):
    """One plain residual step, then Heun steps x <- x + 1/2 (k1 + k2), k1 = f1(x), k2 = f2(x + k1).

    Each Heun step uses two blocks (two residual functions), so a stage of n
    blocks is one plain step (the downsampling block in stages 2 and 3)
    followed by (n - 1) / 2 Heun steps; n must be odd.

    ``scheme`` is a test-time choice (robustode probe): "heun" (trained), or "euler": the same blocks,
    each a forward Euler step x <- x + f(x), i.e. read as the plain ResNet.
    """

    schemes = ("heun", "euler")  # the first: the scheme it trains with

    def __init__(self, blocks: Sequence[PreActBlock]):
        super().__init__()
        if len(blocks) % 2 == 0:
            raise ConfigError(
                f"a Heun stage needs an odd number of blocks (1 plain + pairs), got {len(blocks)}"
            )
        self.blocks = nn.ModuleList(blocks)
        self.scheme = "heun"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](x)
        if self.scheme == "euler":
            for f in self.blocks[1:]:
                x = x + f.residual(x)
            return x
        for f1, f2 in zip(self.blocks[1::2], self.blocks[2::2]):
            k1 = f1.residual(x)
            k2 = f2.residual(x + k1)
            x = x + 0.5 * (k1 + k2)
        return x

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}"


class StepSizeStage(nn.Module):
    """Forward Euler with a small step: x <- x + h f(x).

    A downsampling block changes the shape (no ODE step in one space), so it
    takes a plain step shortcut(x) + f(x), as in the other ODE variants.

    ``h`` and ``scheme`` are test-time choices too (robustode probe): "euler" (trained), or "heun", the
    second-order step with each block's own f: x <- x + h/2 (f(x) + f(x + h f(x))), two evaluations per block.
    """

    schemes = ("euler", "heun")  # the first: the scheme it trains with

    def __init__(self, blocks: Sequence[PreActBlock], h: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.h = h
        self.scheme = "euler"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if block.downsamples:
                x = block(x)
            elif self.scheme == "heun":
                k1 = self.h * block.residual(x)
                x = x + 0.5 * (k1 + self.h * block.residual(x + k1))
            else:
                x = x + self.h * block.residual(x)
        return x

    def extra_repr(self) -> str:
        return f"h={self.h}, scheme={self.scheme}"


def rk2_resnet(depth: int, num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    if blocks_per_stage(depth) % 2 == 0:
        raise ConfigError(
            f"rk2_resnet needs 6n + 2 layers with n odd (20, 32, 44, 56, ...), got depth {depth}"
        )
    return cifar_resnet(depth, num_classes, normalize, stage=HeunStage)


def stepsize_resnet(
    depth: int, num_classes: int = 10, normalize: bool = True, h: float = 0.1
) -> PreActResNet:
    return cifar_resnet(depth, num_classes, normalize, stage=partial(StepSizeStage, h=h))


_RK2_DOC = """Heun (RK2) ResNet-{depth} (the Runge-Kutta reading of Lu et al. ICML 2018), {params} parameters.

    Update rule: x[n+1] = x[n] + 1/2 (k1 + k2), k1 = f1(x[n]), k2 = f2(x[n] + k1).
    Depth counts weighted layers as for resnet{depth}: each stage has {n} blocks,
    one plain step (downsampling in stages 2-3) then ({n} - 1) / 2 Heun steps of two blocks.
    Parameters: {params} for 10 classes (same as resnet{depth}). Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

_STEP_DOC = """Small-step ResNet-{depth}, h = 0.1 (Zhang et al., IJCAI 2019), {params} parameters.

    "Towards Robust ResNet: A Small Step but a Giant Leap". Update rule:
    x[n+1] = x[n] + h f[n](x[n]) with h = 0.1; the downsampling block takes a plain step.
    {n} blocks per stage, widths 16/32/64.
    Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

register_depths("rk2_resnet", rk2_resnet, _RK2_DOC, {20: 272_282, 56: 855_578})
register_depths("stepsize_resnet", stepsize_resnet, _STEP_DOC, {20: 272_282, 56: 855_578})
