"""N-FGSM: noise-augmented FGSM without projection (de Jorge et al., NeurIPS 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..utils import check_eps, check_step
from .base import Defense, Preset, StepOutput
from .common import as_positive, output, random_start, sgd_step


@dataclass
class NFGSM(Defense):
    """N-FGSM single-step training (de Jorge et al. 2022, "Make Some Noise", https://arxiv.org/abs/2202.01181).

    One step: eta ~ U(-k eps, k eps), then clamped so that x + eta lies in
    [0, 1]; one FGSM step delta = eta + alpha * sign(grad_eta L(x + eta)) with
    alpha = eps, clamped to [0, 1] again but NOT projected back to the eps-ball
    (||delta||_inf reaches k eps + alpha = 3 eps); then one optimizer step on
    L(x + delta). Both forwards run in train mode, as in the authors' code
    (github.com/pdejorge/N-FGSM train.py, --unif 2, --alpha = --epsilon, --clip -1).
    Two passes per batch, FGSM-RS's cost.

    Defaults: eps 8/255, k 2, alpha None (= eps). Preset: the authors' CIFAR-10
    PreActResNet-18 runs (experiments.sh): 30 epochs, cyclic lr 0 -> 0.2 -> 0
    per iteration peaking at the midpoint, momentum cycling 0.9 -> 0.8 -> 0.9
    (torch CyclicLR's default, left on), weight decay 5e-4, batch 128.
    Published figures: the paper's tables could not be read here. A
    third-party benchmark (FastAT Benchmark, github.com/fzjcdt/FastAT_Benchmark
    benchmark_data.json, 3 seeds, not a robustode figure; its configs/cifar10/n_fgsm.yaml
    and fast_at/n_fgsm.py: ResNet-18, not PreActResNet-18, 100 epochs, one-cycle lr
    0.1, label smoothing 0.4, a weight average of the whole state dict with tau
    0.9995 and no warm-up, and as the final model the best epoch's better of the
    live and averaged weights by PGD-10 on 1,000 held-out training images)
    reports CIFAR-10 eps 8/255: 78.59% clean, 53.07% PGD-50, 47.77%
    AutoAttack (FGSM-RS there: 43.09%).

        defense = robustode.defenses.create_defense("n-fgsm")
    """

    k: float = 2.0  # noise magnitude in units of eps
    alpha: float | None = None  # FGSM step; None: eps (the paper's alpha = eps)

    single_step: ClassVar[bool] = True  # one FGSM step: the report counts its collapsed seeds
    preset: ClassVar[Preset] = Preset(
        lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=30, schedule="cyclic",
        cycle_momentum=True, momentum_min=0.8,
        source="de Jorge et al. 2022, github.com/pdejorge/N-FGSM train.py and experiments.sh (CyclicLR "
        "0 -> 0.2 -> 0 over 30 epochs, torch's default cycle_momentum)",
    )

    def __post_init__(self):
        super().__post_init__()
        self.eps = check_eps(self.eps)
        self.k = as_positive(self.k, "k", allow_zero=True)
        self.alpha = self.eps if self.alpha is None else check_step(self.alpha, "alpha")

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
