"""MART: misclassification-aware adversarial training (Wang, Zou, Yi, Bailey, Ma, Gu, ICLR 2020)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..modes import bn_mode
from ..rules import COUNT, NONNEG, STEP, TRAINING_BUDGET, rule
from .awp import descend
from .base import Defense, Preset, StepOutput
from .common import BN_MODE, output, sign_ascent


def mart_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
              cross_entropy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> torch.Tensor:
    """BCE(f(x'), y) + beta * mean_i KL(p(x_i) || p(x'_i)) * (1 - p_y(x_i)), as the reference's mart.py.

    BCE is the boosted cross-entropy CE(f(x'), y) - log(1 - max_{k != y} p_k(x')), its CE taken by
    ``cross_entropy`` (a defense's ``self.cross_entropy``: label smoothing, the model's auxiliary loss).
    The constants 1.0001, 1e-12 and 1.0000001 are the reference's; nothing is
    detached, so gradients also flow through p(x) and the weight 1 - p_y(x).
    """
    ce = cross_entropy(logits_adv, y)
    probs_adv = logits_adv.softmax(1)
    top2 = probs_adv.topk(2, dim=1).indices
    runner_up = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])  # the most likely wrong class
    boosted = ce + F.nll_loss(torch.log(1.0001 - probs_adv + 1e-12), runner_up)
    probs = logits.softmax(1)
    kl = F.kl_div(torch.log(probs_adv + 1e-12), probs, reduction="none").sum(1)
    p_true = probs.gather(1, y[:, None]).squeeze(1)
    return boosted + beta * (kl * (1.0000001 - p_true)).mean()


@dataclass
class MART(Defense):
    """MART: misclassification-aware training (Wang et al. 2020, https://openreview.net/forum?id=rklOg6EFwS).

    Threat model: L-inf ball of radius eps. One step: x' from ``steps`` sign-ascent steps
    (``step_size``) on CE(f(x'), y) from x + 0.001 * N(0, 1), projected to the eps-ball and
    [0, 1], in ``bn_mode``; then, in train mode, one optimizer step on the boosted
    cross-entropy of x' plus beta times KL(p(x) || p(x')) weighted per example by 1 - p_y(x):
    the examples the model gets wrong count most (``mart_loss``).

    Settings: eps 0.031, step_size 0.007, steps 10 (``mart-10``), beta 5.0, bn_mode "eval".
    Cost: steps + 2 passes per batch; AWP (``awp_gamma``) repeats the training loss's 2 passes.
    Preset: the authors' ResNet-18 CIFAR-10 script: SGD momentum 0.9, lr 0.01, weight decay
    3.5e-3, batch 128, 120 epochs, lr x0.1, x0.01, x0.001 after 74, 89, 99 epochs.
    Where robustode differs from the authors' code: docs/fidelity.md#mart-k.

        defense = robustode.defenses.create_defense("mart-10")
        model, record = robustode.train("preact_resnet18", defense, "cifar10")
    """

    eps: float = rule(0.031, TRAINING_BUDGET)
    step_size: float = rule(0.007, STEP)
    steps: int = rule(10, COUNT, label="steps (K of mart-K)")
    beta: float = rule(5.0, NONNEG)
    bn_mode: str = rule("eval", BN_MODE)

    supports_awp: ClassVar[bool] = True
    preset: ClassVar[Preset] = Preset(
        lr=0.01, momentum=0.9, weight_decay=3.5e-3, batch_size=128, epochs=120, milestones=(74, 89, 99),
        source="Wang et al. 2020, github.com/YisenWang/MART train_resnet.py (ResNet-18, epochs 120, "
        "lr x0.1 when epoch >= 75, x0.01 >= 90, x0.001 >= 100) and mart.py",
    )

    @property
    def passes_per_batch(self) -> float:
        return self.steps + self.awp_passes(2.0)

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        with bn_mode(model, self.bn_mode):
            x_adv = sign_ascent(model, x, lambda logits: F.cross_entropy(logits, y), eps=self.eps,
                                step_size=self.step_size, steps=self.steps)
        loss, logits = descend(model, lambda: self.objective(model, x, x_adv, y), optimizers, on_step,
                               self.awp_now())
        return output(loss, logits, y)

    def objective(self, model, x, x_adv, y):
        """(MART's loss, logits of x_adv); its cross-entropy term, of x_adv, is the latest forward's."""
        logits = model(x)
        logits_adv = model(x_adv)
        return mart_loss(logits, logits_adv, y, self.beta, self.cross_entropy), logits_adv
