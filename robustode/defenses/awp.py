"""Adversarial weight perturbation (Wu, Xia, Wang, NeurIPS 2020, https://arxiv.org/abs/2004.05884).

After the attack, one ascent step on the training loss of the adversarial batch (batch-norm
statistics frozen) gives per weight tensor l the perturbation
v_l = gamma * ||w_l|| * g_l / ||g_l|| (``awp_gamma``; convolution and linear weights only,
g_l the loss's gradient). The training loss is then taken at w + v, the optimizer steps, and
v is taken back off; ``awp_warmup`` data epochs train without it. It serves the defenses
with ``supports_awp`` (pgd-K, trades-K, mart-K) and doubles their training loss's passes.

    defense = robustode.defenses.create_defense("pgd-10(awp_gamma=0.01)")
    model, record = robustode.train("preact_resnet18", defense, "cifar10")

Where robustode differs from the authors' code, and their AT-AWP PreActResNet-18 recipe as a
robustode call: docs/fidelity.md#awp.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import dist
from ..modes import frozen_bn_stats
from .common import sgd_step

Objective = Callable[[], tuple[torch.Tensor, torch.Tensor]]  # () -> (training loss, logits of the batch)


def perturbed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The tensors AWP moves: trainable, at least 2-d, named "...weight..." (conv and linear weights)."""
    return [p for name, p in model.named_parameters() if p.requires_grad and p.dim() > 1 and "weight" in name]


class WeightPerturbation:
    """w -> w + v on ``params`` now; ``restore()`` takes v back off (once)."""

    def __init__(self, params: list[nn.Parameter], grads: list[torch.Tensor], gamma: float):
        self.params = params
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in params]
            self.v = [gamma * w.norm() * g / (g.norm() + 1e-20) for w, g in zip(self.saved, grads)]
            for p, w, v in zip(params, self.saved, self.v):
                p.copy_(w + v)
        # Autocast caches one low-precision copy of each weight per region, keyed by the tensor with no
        # version check: without this the next forward would still run at w (AWP a no-op under bf16).
        torch.clear_autocast_cache()
        self.active = True

    def restore(self) -> None:
        if not self.active:
            return
        with torch.no_grad():
            for p, w, v in zip(self.params, self.saved, self.v):
                p.copy_(w + (p - (w + v)))  # keeps the optimizer's update, drops v
        torch.clear_autocast_cache()  # a later forward in this region must see the restored weights
        self.active = False


def ascent_gradients(model: nn.Module, params: list[nn.Parameter], objective: Objective) -> list[torch.Tensor]:
    """Gradients of the training loss w.r.t. ``params``; batch-norm statistics and .grad untouched."""
    with frozen_bn_stats(model):
        loss, _ = objective()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    # Under data parallelism: the gradient of the global mean loss, each rank weighted by its share of the
    # minibatch as GradientSync weighs the training gradients (an uneven last shard counts by its size).
    dist.weighted_all_sum(grads, dist.share())
    return grads


def descend(model: nn.Module, objective: Objective, optimizers: list, on_step: Callable[[], None],
            gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on ``objective()``; with ``gamma > 0`` taken at the AWP-perturbed weights.

    The perturbation is removed before ``on_step`` (so a weight average sees the
    restored weights) and, should anything fail, on the way out.
    """
    if gamma <= 0:
        loss, logits = objective()
        sgd_step(loss, optimizers, on_step)
        return loss, logits
    params = perturbed_parameters(model)
    perturbation = WeightPerturbation(params, ascent_gradients(model, params, objective), gamma)
    try:
        loss, logits = objective()

        def restore_then_step():
            perturbation.restore()
            on_step()

        sgd_step(loss, optimizers, restore_then_step)
    finally:
        perturbation.restore()
    return loss, logits
