"""N-FGSM: noise-augmented FGSM without projection (de Jorge et al., NeurIPS 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..rules import NONNEG, STEP, rule
from .base import Defense, Preset, StepOutput
from .common import output, random_start, sgd_step


@dataclass
class NFGSM(Defense):
    """N-FGSM single-step training (de Jorge et al. 2022, "Make Some Noise", https://arxiv.org/abs/2202.01181).

    Threat model: L-inf ball of radius eps; the training perturbation itself reaches
    k eps + alpha (3 eps by default). One step: eta ~ U(-k eps, k eps), then clamped so that
    x + eta lies in [0, 1]; one FGSM step delta = eta + alpha * sign(grad_eta L(x + eta)),
    clamped to [0, 1] again but NOT projected back to the eps-ball; then one optimizer step on
    L(x + delta), in train mode throughout.

    Settings: eps 8/255, k 2, alpha None (= eps). Cost: 2 passes per batch, FGSM-RS's.
    Preset: the authors' CIFAR-10 PreActResNet-18 runs: 30 epochs, cyclic lr 0 -> 0.2 -> 0 per
    iteration, momentum cycling 0.9 -> 0.8 -> 0.9, weight decay 5e-4, batch 128.
    Where robustode differs from the authors' code: docs/fidelity.md#n-fgsm.

        defense = robustode.defenses.create_defense("n-fgsm")
        model, record = robustode.train("preact_resnet18", defense, "cifar10")
    """

    k: float = rule(2.0, NONNEG)  # noise magnitude in units of eps
    alpha: float | None = rule(None, STEP.optional_())  # FGSM step; None: eps (the paper's alpha = eps)

    single_step: ClassVar[bool] = True  # one FGSM step: the report counts its collapsed seeds
    preset: ClassVar[Preset] = Preset(
        lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=30, schedule="cyclic",
        cycle_momentum=True, momentum_min=0.8,
        source="de Jorge et al. 2022, github.com/pdejorge/N-FGSM train.py and experiments.sh (CyclicLR "
        "0 -> 0.2 -> 0 over 30 epochs, torch's default cycle_momentum)",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.alpha is None:
            self.alpha = self.eps

    @property
    def passes_per_batch(self) -> float:
        return 2.0

    @property
    def max_perturbation(self) -> float:
        return self.k * self.eps + self.alpha

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        # U(-k eps, k eps) lies in its own ball, so random_start's projection is only the [0, 1] clamp.
        eta = random_start(x, self.k * self.eps).requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + eta), y), eta)
        x_adv = (x + eta.detach() + self.alpha * grad.sign()).clamp(0.0, 1.0).detach()
        logits = model(x_adv)
        loss = self.cross_entropy(logits, y)
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)
