"""GradAlign: FGSM training with a gradient-alignment penalty (Andriushchenko & Flammarion, NeurIPS 2020)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..kernels import closed_form_double_backward
from ..rules import NONNEG, rule
from .base import Defense, Preset, StepOutput
from .common import clip_delta, output, random_start, sgd_step


def input_gradient(model, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                   create_graph: bool = False) -> torch.Tensor:
    """grad_delta CE_mean(model(x + delta), y); with ``create_graph`` it stays differentiable in the weights."""
    delta = delta.detach().requires_grad_(True)
    # The flash and memory-efficient attention kernels have no double backward; the math kernel has.
    kernels = sdpa_kernel([SDPBackend.MATH]) if create_graph else nullcontext()
    with kernels:
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta, create_graph=create_graph)
    return grad


def misalignment(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """1 - mean_i cos(g1_i, g2_i) over the examples where neither gradient is zero (0 if there are none).

    As the authors' train.py, which drops examples with a zero gradient; computed
    without boolean indexing, so without a host sync.
    """
    a, b = g1.flatten(1), g2.flatten(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    keep = (na > 0) & (nb > 0)
    cos = (a * b).sum(1) / torch.where(keep, na * nb, torch.ones_like(na))
    kept = keep.sum().clamp(min=1)
    return (keep * (1.0 - cos)).sum() / kept


@dataclass
class GradAlign(Defense):
    """FGSM + GradAlign (Andriushchenko & Flammarion 2020, https://arxiv.org/abs/2007.02617).

    Threat model: L-inf ball of radius eps. One step: g1 = grad_delta L at the clean x,
    detached; delta = eps * sign(g1), clipped to [0, 1]; then one optimizer step on
    L(x + delta) + lam * (1 - cos(g1, g2)), where g2 = grad_eta L(x + eta) at
    eta ~ U(-eps, eps) is kept differentiable, so the penalty backpropagates into the weights
    (double backprop); the cosine is per example.

    Settings: eps 8/255, lam None (the authors' rule 0.02 * 10 ** (eps * 255 / 8): 0.2 at
    8/255). Cost: 4 passes per batch (2 with ``lam=0``); no torch.compile (``compile`` is
    refused); double backwards in closed form (``closed_form = False``: torch's). Preset:
    the authors' CIFAR-10 runs: 30 epochs, cyclic lr 0 -> 0.3 -> 0 per iteration peaking at
    2/5 of the run, momentum 0.9, weight decay 5e-4, batch 128 (PreActResNet-18).
    Where robustode differs from the authors' code: docs/fidelity.md#grad-align.

        defense = robustode.defenses.create_defense("grad-align")
        model, record = robustode.train("preact_resnet18", defense, "cifar10")
    """

    lam: float | None = rule(None, NONNEG.optional_())  # weight of the alignment penalty; None: the authors' rule for eps

    single_step: ClassVar[bool] = True  # one FGSM step: the report counts its collapsed seeds
    compiles: ClassVar[bool] = False  # double backprop: torch.compile cannot run it
    preset: ClassVar[Preset] = Preset(
        lr=0.3, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=30, schedule="cyclic", cyclic_peak=0.4,
        source="Andriushchenko & Flammarion 2020, github.com/tml-epfl/understanding-fast-adv-training train.py "
        "and sh/exps_diff_eps_cifar10.sh (--epochs=30 --lr_max=0.30, cyclic, peak at 2/5)",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.lam is None:
            self.lam = 0.02 * 10 ** (self.eps * 255 / 8)
        # Batch norm's, convolutions' and ReLUs' double backwards in closed form (robustode.kernels.double_backward);
        # False: torch's, the reference.
        self.closed_form = True

    @property
    def passes_per_batch(self) -> float:
        return 4.0 if self.lam > 0 else 2.0

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        g1 = input_gradient(model, x, y, torch.zeros_like(x)).detach()
        x_adv = (x + clip_delta(self.eps * g1.sign(), x, self.eps)).detach()
        logits = model(x_adv)
        loss = self.cross_entropy(logits, y)
        if self.lam > 0:
            with closed_form_double_backward() if self.closed_form else nullcontext():
                g2 = input_gradient(model, x, y, random_start(x, self.eps), create_graph=True)
            loss = loss + self.lam * misalignment(g1, g2)
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)
