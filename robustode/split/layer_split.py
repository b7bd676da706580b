"""What every way of finding layer one returns (``LayerSplit``), and what they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

CONTRACT = ("define layer_one and rest on the model (submodules, or methods with layer_one_parameters(); "
            "see robustode.models.contract)")
ADVICE = f"{CONTRACT}, or pass first=<name of its first submodule>"


@dataclass(frozen=True)
class LayerSplit:
    """layer_one(x) -> z and rest(z) -> logits, the parameters of layer one, and where they came from.

    ``module`` is the nn.Module layer one runs (None when unknown, e.g. the
    nonlinear split), which robustode.split.affine inspects.
    """

    layer_one: Callable[[torch.Tensor], torch.Tensor]
    rest: Callable[[torch.Tensor], torch.Tensor]
    layer_one_params: list
    description: str = ""  # e.g. "layer one: conv1 (+ preprocessing: sub, div)", for the run log and the record
    module: nn.Module | None = None  # layer one as a module, when it is one

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.layer_one(x))


def trains(module: nn.Module) -> bool:
    """Whether ``module`` has a parameter that trains (frozen ones are constants, e.g. normalization kept so)."""
    return any(p.requires_grad for p in module.parameters())
