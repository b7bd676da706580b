"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, ICML 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..utils import check_eps, check_step
from .base import Defense, Preset, StepOutput
from .common import as_bn_mode, as_count, as_positive, bn_mode, clip_delta, output, sgd_step


def kl_batchmean(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    """KL(f(x) || f(x')) summed over classes, averaged over the batch.

    The reference computes KLDivLoss(size_average=False)(log_softmax(adv), softmax(clean)) / batch_size,
    i.e. torch's reduction="batchmean"; gradients reach both arguments, as there.
    """
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")


def trades_attack(model, x: torch.Tensor, *, eps: float, step_size: float, steps: int,
                  start_std: float = 0.001) -> torch.Tensor:
    """x' from ``steps`` sign-ascent steps on KL(f(x) || f(x')), started at x + start_std * N(0, 1).

    The clean distribution is computed once, without gradient. The start is
    projected to the eps-ball and [0, 1] (the reference leaves it unclamped).
    Runs in the model's current mode; parameter gradients are not touched.
    """
    with torch.no_grad():
        clean = model(x)
    delta = clip_delta(start_std * torch.randn_like(x), x, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(kl_batchmean(clean, model(x + delta)), delta)
        delta = clip_delta(delta.detach() + step_size * grad.sign(), x, eps)
    return (x + delta).detach()


@dataclass
class TRADES(Defense):
    """TRADES (Zhang et al. 2019, https://arxiv.org/abs/1901.08573).

    One step: x' from ``steps`` sign-ascent steps (``step_size``) on
    KL(f(x) || f(x')) from x + 0.001 * N(0, 1), projected to the eps-ball and
    [0, 1], with the model in ``bn_mode`` "eval"; then, in train mode, one
    optimizer step on CE(f(x), y) + beta * KL(f(x) || f(x')), KL summed over
    classes and averaged over the batch (the reference's size_average=False sum
    divided by the batch size).

    Defaults: eps 0.031, step_size 0.007, steps 10 (``trades-10``), beta 6.
    Cost: steps + 2 passes per batch (the attack steps, then forward+backward on
    both x and x'; the attack's clean forward is not counted). The reference
    runs f(x) a third time for the KL target; here the training forward's
    logits serve both terms (same values, one fewer BN-statistics update).
    Preset: TRADES' CIFAR-10 WRN-34-10 run: SGD momentum 0.9, lr 0.1, weight
    decay 2e-4, batch 128, 76 epochs, lr x0.1 from the reference's 1-based epoch
    75 on, i.e. after 74 completed epochs.

        defense = robustode.defenses.create_defense("trades-10", beta=6.0)
    """

    eps: float = 0.031
    step_size: float = 0.007
    steps: int = 10
    beta: float = 6.0
    bn_mode: str = "eval"

    preset: ClassVar[Preset] = Preset(
        lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, epochs=76, milestones=(74,),
        source="Zhang et al. 2019, github.com/yaodongyu/TRADES train_trades_cifar10.py (epochs 76, "
        "lr x0.1 when epoch >= 75) and trades.py",
    )

    def __post_init__(self):
        self.eps = check_eps(self.eps)
        self.step_size = check_step(self.step_size, "step_size")
        self.steps = as_count(self.steps, "steps (K of trades-K)")
        self.beta = as_positive(self.beta, "beta", allow_zero=True)
        self.bn_mode = as_bn_mode(self.bn_mode)

    @property
    def passes_per_batch(self) -> float:
        return self.steps + 2.0

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        with bn_mode(model, self.bn_mode):
            x_adv = trades_attack(model, x, eps=self.eps, step_size=self.step_size, steps=self.steps)
        logits = model(x)
        loss = F.cross_entropy(logits, y) + self.beta * kl_batchmean(logits, model(x_adv))
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)
