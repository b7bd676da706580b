"""Parameter groups and the SGD every defense's optimizers are made of."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)


def param_groups(model: nn.Module, weight_decay: float, no_wd_norms: bool = False) -> list[dict]:
    """Split the trainable parameters into a decayed group and a group with weight decay 0.

    Weight decay 0 goes to what the model lists in ``no_weight_decay_parameters()``
    (e.g. mean-field tau: decaying a step size towards 0 is not a regularizer) and,
    with ``no_wd_norms``, to normalization layers and biases. Empty groups are dropped.
    """
    exempt = set()
    if callable(getattr(model, "no_weight_decay_parameters", None)):
        exempt |= {id(p) for p in model.no_weight_decay_parameters()}
    if no_wd_norms:
        norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]
        exempt |= {id(p) for m in norms for p in m.parameters(recurse=False)}
        exempt |= {id(p) for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if id(p) not in exempt]
    no_decay = [p for p in trainable if id(p) in exempt]
    groups = [{"name": "decay", "params": decay, "weight_decay": weight_decay},
              {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def sgd_factory(lr: float, momentum: float, nesterov: bool, device: torch.device
                ) -> Callable[[list[dict]], torch.optim.SGD]:
    """``make(groups)`` for ``Defense.optimizers``: SGD whose defaults a group's own keys override."""

    def make(groups: list[dict]) -> torch.optim.SGD:
        # The fused CUDA kernel updates all parameters in one launch; on CPU torch picks foreach itself.
        fused = True if device.type == "cuda" else None
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=fused)

    return make
