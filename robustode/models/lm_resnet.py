"""LM-ResNet: the linear multi-step scheme on a CIFAR ResNet, and its stochastic-depth variant.

Lu, Zhong, Li, Dong, "Beyond Finite Layer Neural Networks: Bridging Deep
Architectures and Numerical Differential Equations", ICML 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import PreActBlock, PreActResNet
from .cifar_resnet import cifar_resnet, register_depths

# Zero-stability needs |k| < 1 (the characteristic roots are 1 and -k). The
# forward uses a hard clamp to [-K_MAX, K_MAX]; after_optimizer_step puts the
# stored k back into that range so that it keeps receiving gradients.
K_MAX = 1.0 - 1e-3
K_INIT = (-0.1, 0.0)


class LMStage(nn.Module):
    """x[n+1] = (1 - k[n]) x[n] + k[n] x[n-1] + f[n](x[n]) over a stage's blocks.

    The first step of a history uses x[-1] := x[0], i.e. a plain residual step;
    a downsampling block takes a plain residual step and restarts the history
    in the new shape. So a k is created only for the blocks with a real
    previous state (a k on a first step would multiply x[-1] - x[0] = 0).

    ``drop_probs`` (one per block, default 0) turn on stochastic depth: in
    training a block is dropped with its probability p, once per batch (the
    classic rule), so f = 0; a kept block's f is scaled by 1 / (1 - p).
    Evaluation is deterministic and uses f unscaled.
    """

    def __init__(self, blocks: Sequence[PreActBlock], drop_probs: Sequence[float] | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.drop_probs = tuple(drop_probs) if drop_probs is not None else (0.0,) * len(blocks)
        self.k_index: list[int | None] = []  # block -> its entry of k, None for a plain step
        has_prev, count = False, 0
        for block in blocks:
            if block.downsamples or not has_prev:
                self.k_index.append(None)
                has_prev = not block.downsamples
            else:
                self.k_index.append(count)
                count += 1
        self.k = nn.Parameter(torch.empty(count).uniform_(*K_INIT))
        self.scheme = self.schemes[0]

    schemes = ("learned k", "euler")  # test-time choices (robustode probe); euler: k = 0, x[n+1] = x[n] + f(x[n])

    def clamped_k(self) -> torch.Tensor:
        return self.k.clamp(-K_MAX, K_MAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.clamped_k() if self.scheme == self.schemes[0] else torch.zeros_like(self.k)  # "euler": k = 0
        prev = None
        for i, block in enumerate(self.blocks):
            skip, f = self._branches(i, block, x)
            j = self.k_index[i]
            new = skip if j is None else (1 - k[j]) * x + k[j] * prev
            new = new if f is None else new + f
            prev, x = (None if block.downsamples else x), new
        return x

    def _branches(self, i: int, block: PreActBlock, x: torch.Tensor):
        p = self.drop_probs[i]
        if not self.training or p == 0:
            return block.branches(x)
        if torch.rand((), device="cpu").item() < p:  # host RNG: no device sync
            return block.branches(x, residual=False)
        skip, f = block.branches(x)
        return skip, f * (1.0 / (1.0 - p))

    def extra_repr(self) -> str:
        drops = f", drop_probs=({', '.join(f'{p:.3f}' for p in self.drop_probs)})" if any(self.drop_probs) else ""
        return f"scheme={self.scheme}{drops}"


class LMResNet(PreActResNet):
    """A PreActResNet whose stages are LMStages; keeps every k inside (-1, 1)."""

    def after_optimizer_step(self) -> None:
        with torch.no_grad():
            for stage in self.stages:
                stage.k.clamp_(-K_MAX, K_MAX)


def lm_resnet(depth: int, num_classes: int = 10, normalize: bool = True, drop_max: float = 0.0) -> LMResNet:
    """LM-ResNet-depth; ``drop_max`` > 0 adds stochastic depth with p_l = drop_max * l / L.

    Block l = 1..L (counted over the whole network; the input, l = 0, is never
    dropped) is dropped with probability rising linearly to ``drop_max``
    (Huang et al. 2016's linear rule).
    """
    if not 0.0 <= drop_max < 1.0:
        raise ConfigError(f"drop_max must lie in [0, 1), got {drop_max}")
    model = cifar_resnet(depth, num_classes, normalize, stage=LMStage, model_cls=LMResNet)
    total = sum(len(stage.blocks) for stage in model.stages)
    first = 1
    for stage in model.stages:
        stage.drop_probs = tuple(drop_max * (first + i) / total for i in range(len(stage.blocks)))
        first += len(stage.blocks)
    return model


_LM_DOC = """LM-ResNet-{depth} (Lu, Zhong, Li, Dong, ICML 2018), {params} parameters.

    Update rule (linear multi-step): x[n+1] = (1 - k[n]) x[n] + k[n] x[n-1] + f[n](x[n]),
    one learned k[n] per two-step block, initialised in U[-0.1, 0], hard-clamped to
    [-0.999, 0.999]; x[-1] := x[0]; a downsampling block is a plain step that
    restarts the history. {n} blocks per stage, widths 16/32/64.
    Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

_SD_DOC = """LM-ResNet-{depth} with stochastic depth (Lu et al. ICML 2018, the SDE view), {params} parameters.

    Update rule: x[n+1] = (1 - k[n]) x[n] + k[n] x[n-1] + m[n] f[n](x[n]) / (1 - p[n]), with
    m[n] ~ Bernoulli(1 - p[n]) drawn once per batch in training, p rising
    linearly to 0.5 at the last block; in eval m[n] / (1 - p[n]) := 1.
    Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

register_depths(
    "lm_resnet", lm_resnet, _LM_DOC, {20: 272_286, 32: 466_724, 44: 661_162, 56: 855_600, 110: 1_730_571}
)


def _lm_resnet_sd(depth: int, num_classes: int = 10, normalize: bool = True) -> LMResNet:
    return lm_resnet(depth, num_classes, normalize, drop_max=0.5)


register_depths("lm_resnet", _lm_resnet_sd, _SD_DOC, {56: 855_600, 110: 1_730_571}, suffix="_sd")
