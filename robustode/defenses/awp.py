"""Adversarial weight perturbation (Wu, Xia, Wang, NeurIPS 2020, https://arxiv.org/abs/2004.05884).

Checked against the authors' code (github.com/csdongxian/AWP, AT_AWP/utils_awp.py
and trades_AWP/): after the attack, one ascent step on the training loss of the
adversarial batch, taken on a copy of the model in train mode, gives per weight
tensor l the perturbation v_l = gamma * ||w_l|| * g_l / ||g_l|| (g_l the loss's
gradient, Frobenius norms over the whole tensor: ||v_l|| = gamma * ||w_l||
exactly). Only multi-dimensional tensors whose names contain "weight" move
(convolution and linear weights; biases, batch-norm affine parameters and
buffers do not). The training loss is then taken at w + v (its train-mode
forward updates the batch-norm statistics there), the optimizer steps, and v
is taken back off. Here the ascent step runs on the model itself with its
batch-norm statistics frozen, which equals the authors' throw-away copy.

The authors' restore subtracts v from the stepped weights; robustode restores
w + (stepped - (w + v)): the same update, and bit-exactly w when the step does
not move the weights. Under data parallelism the ranks' ascent gradients are
summed, each weighted by its share of the minibatch (as robustode.training.data_parallel
weighs the training gradients), so every rank perturbs by the same v, the one of
the global batch.

Forwards that differ from the authors' loops (each a batch-norm statistics update):

- AT-AWP (AT_AWP/train_cifar10.py), after the restore, runs a clean forward of x in
  train mode (not under no_grad) only to log its accuracy: one more update per step,
  which robustode does not run. Its attack (robust_overfitting's attack_pgd) ends with
  one more forward of the final x + delta (reduction="none", to pick the restart) in
  the model's mode, train mode for all but each epoch's first batch; robustode's
  attack has no such forward.
- TRADES-AWP (trades_AWP/train_trades_cifar.py) takes the loss at w + v with the
  forwards f(x'), f(x) (the KL target), f(x) (the cross-entropy); robustode keeps the
  TRADES reference's order f(x), f(x'), f(x): the same three updates, in another order.

Settings: ``pgd-10(awp_gamma=0.01)`` keeps PGD-k's own preset (the YOPO authors' PGD
baseline: batch 256, weight decay 2e-4, 105 epochs, lr x0.1 at 75, 90, 100) and its
attack in ``bn_mode="eval"``. The AWP authors' AT-AWP PreActResNet-18 recipe (their
train_cifar10.py defaults: gamma 0.01, no warm-up, attack in train mode, SGD lr 0.1,
momentum 0.9, weight decay 5e-4 on every parameter, batch 128, 200 epochs, lr /10 at
50% and /100 at 75% of the run) is

    robustode.train("preact_resnet18", "pgd-10(awp_gamma=0.01, bn_mode=train)", "cifar10",
                    epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4,
                    schedule="multistep", milestones=(100, 150), gamma=0.1)

(eps 8/255, alpha 2/255 and 10 steps are pgd-10's defaults), short of the two extra
forwards above.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .. import dist
from .common import frozen_bn_stats, sgd_step

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
