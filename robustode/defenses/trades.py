"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, ICML 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..modes import bn_mode
from ..rules import COUNT, NONNEG, STEP, TRAINING_BUDGET, rule
from .awp import descend
from .base import Defense, Preset, StepOutput
from .common import BN_MODE, output, sign_ascent


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
    return sign_ascent(model, x, lambda logits: kl_batchmean(clean, logits), eps=eps, step_size=step_size,
                       steps=steps, start_std=start_std)


@dataclass
class TRADES(Defense):
    """TRADES (Zhang et al. 2019, https://arxiv.org/abs/1901.08573).

    Threat model: L-inf ball of radius eps. One step: x' from ``steps`` sign-ascent steps
    (``step_size``) on KL(f(x) || f(x')) from x + 0.001 * N(0, 1), projected to the eps-ball and
    [0, 1], with the model in ``bn_mode``; then, in train mode, one optimizer step on
    CE(f(x), y) + beta * KL(f(x) || f(x')), KL summed over classes and averaged over the batch.

    Settings: eps 0.031, step_size 0.007, steps 10 (``trades-10``), beta 6, bn_mode "eval",
    kl_target_forward True (a third train-mode forward, of x, for the KL target, as the
    authors' trades.py). Cost: steps + 3 passes per batch (steps + 2 without
    ``kl_target_forward``); AWP (``awp_gamma``) repeats the training loss's passes once more.
    Preset: TRADES' CIFAR-10 WRN-34-10 run: SGD momentum 0.9, lr 0.1, weight decay 2e-4,
    batch 128, 76 epochs, lr x0.1 after 74 completed epochs.
    Where robustode differs from the authors' code: docs/fidelity.md#trades-k.

        defense = robustode.defenses.create_defense("trades-10", beta=6.0)
        model, record = robustode.train("wrn34_10", defense, "cifar10")
    """

    eps: float = rule(0.031, TRAINING_BUDGET)
    step_size: float = rule(0.007, STEP)
    steps: int = rule(10, COUNT, label="steps (K of trades-K)")
    beta: float = rule(6.0, NONNEG)
    bn_mode: str = rule("eval", BN_MODE)
    kl_target_forward: bool = True  # a third train-mode forward, of x, for the KL target (trades.py)

    supports_awp: ClassVar[bool] = True
    legacy_defaults: ClassVar[dict] = {"kl_target_forward": False}  # earlier runs reused the first forward
    preset: ClassVar[Preset] = Preset(
        lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, epochs=76, milestones=(74,),
        source="Zhang et al. 2019, github.com/yaodongyu/TRADES train_trades_cifar10.py (epochs 76, "
        "lr x0.1 when epoch >= 75) and trades.py",
    )

    @property
    def passes_per_batch(self) -> float:
        return self.steps + self.awp_passes(2.0 + self.kl_target_forward)

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        with bn_mode(model, self.bn_mode):
            x_adv = trades_attack(model, x, eps=self.eps, step_size=self.step_size, steps=self.steps)
        loss, logits = descend(model, lambda: self.objective(model, x, x_adv, y), optimizers, on_step,
                               self.awp_now())
        return output(loss, logits, y)

    def objective(self, model, x, x_adv, y):
        """(CE(f(x), y) + beta * KL(f(x) || f(x')), logits of x), the forwards in the reference's order."""
        logits = model(x)
        natural = self.cross_entropy(logits, y)
        logits_adv = model(x_adv)
        target = model(x) if self.kl_target_forward else logits
        return natural + self.beta * kl_batchmean(target, logits_adv), logits
