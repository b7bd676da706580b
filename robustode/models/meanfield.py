"""Mean-field ResNet: blocks are particles (theta_i, tau_i) sorted by their learned time tau.

Lu, Ma, Lu, Lu, Ying, "A Mean-field Analysis of Deep ResNet and Beyond:
Towards Provable Optimization via Overparameterization from Depth", ICML 2020.
No official code exists; this is the reading of Algorithm 1 in Yiping Lu's talk
"ODE as Continuous Depth Neural Networks" (2020):
sort (theta_i, tau_i) by tau, define the ResNet with steps tau_(l) - tau_(l-1),
update theta and tau by gradient descent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import PreActBlock, PreActResNet
from .cifar_resnet import cifar_resnet, register_depths


class MeanFieldStage(nn.Module):
    """x <- x + (tau_(l) - tau_(l-1)) f_(l)(x) over the blocks sorted by tau, tau_(0) = 0.

    A leading downsampling block stays first and takes a plain residual step;
    the other ``T`` blocks are sortable, with tau initialised to 1, 2, ..., T
    (all steps 1: the plain ResNet of the same weights) and kept in [0, T].
    The sort runs on every forward pass; reading the order back to Python
    costs one host sync per stage on a GPU.
    """

    def __init__(self, blocks: Sequence[PreActBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.first = 1 if blocks[0].downsamples else 0  # blocks before this index are fixed
        if any(b.downsamples for b in blocks[self.first :]):
            raise ConfigError("only the first block of a mean-field stage may change the shape")
        self.horizon = len(blocks) - self.first  # T
        self.tau = nn.Parameter(torch.tensor([float(i) for i in range(1, self.horizon + 1)]))

    def steps(self) -> tuple[torch.Tensor, list[int]]:
        """(step sizes tau_(l) - tau_(l-1), sortable-block indices in the order they run)."""
        tau_sorted, order = torch.sort(self.tau, stable=True)
        return torch.diff(tau_sorted, prepend=tau_sorted.new_zeros(1)), order.tolist()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[: self.first]:
            x = block(x)
        steps, order = self.steps()
        for step, j in zip(steps, order):
            x = x + step * self.blocks[self.first + j].residual(x)
        return x


class MeanFieldResNet(PreActResNet):
    """A PreActResNet of MeanFieldStages, with the training-loop hooks for tau."""

    def tau_parameters(self) -> Iterator[nn.Parameter]:
        return (stage.tau for stage in self.stages)

    def no_weight_decay_parameters(self) -> list[nn.Parameter]:
        return list(self.tau_parameters())

    def after_optimizer_step(self) -> None:
        with torch.no_grad():
            for stage in self.stages:
                stage.tau.clamp_(0.0, float(stage.horizon))


def meanfield_resnet(depth: int, num_classes: int = 10, normalize: bool = True) -> MeanFieldResNet:
    return cifar_resnet(depth, num_classes, normalize, stage=MeanFieldStage, model_cls=MeanFieldResNet)


_DOC = """Mean-field ResNet-{depth} (Lu, Ma, Lu, Lu, Ying, ICML 2020), {params} parameters.

    Update rule: within a stage, sort the blocks by their learned time tau and take
    x <- x + (tau_(l) - tau_(l-1)) f_(l)(x), tau_(0) = 0; the downsampling block
    stays first (plain step). tau starts at 1..T (the plain ResNet), gets no weight
    decay and is clamped to [0, T] after every optimizer step (T = sortable blocks).
    Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

register_depths(
    "meanfield_resnet",
    meanfield_resnet,
    _DOC,
    {20: 272_289, 32: 466_727, 44: 661_165, 56: 855_603, 110: 1_730_574},
)
