"""PGD-k adversarial training (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..attacks.pgd import run_pgd
from ..modes import bn_mode
from ..rules import COUNT, NONNEG, STEP, rule
from .awp import descend
from .base import Defense, Preset, StepOutput
from .common import BN_MODE, active_autocast_dtype, output
from .natural import yopo_baseline


@dataclass
class PGDTraining(Defense):
    """PGD-k adversarial training (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    Threat model: L-inf ball of radius eps. One step: delta ~ U(-eps, eps), clipped; ``steps``
    times delta <- clip(delta + alpha * sign(grad_delta L(x + delta))) with the model in
    ``bn_mode``; then, in train mode, one optimizer step on L(x + delta) + clean_weight * L(x).

    Settings: eps 8/255, steps 10 (``pgd-10``), alpha 2/255, bn_mode "eval", clean_weight 0
    (pure adversarial loss). Cost: steps + 1 forward+backward passes per batch (an attack step
    counts as one), + 1 when ``clean_weight > 0``; AWP (``awp_gamma``) repeats the training
    loss's passes once more. Preset: the YOPO authors' PGD WRN-34-10 baseline (SGD, momentum
    0.9, lr 0.1, weight decay 2e-4, batch 256, 105 epochs, lr x0.1 at 75, 90, 100).
    Where robustode differs from the authors' code: docs/fidelity.md#pgd-k.

        defense = robustode.defenses.create_defense("pgd-10")
        model, record = robustode.train("wrn34_10", defense, "cifar10")
    """

    steps: int = rule(10, COUNT, label="steps (K of pgd-K)")
    alpha: float = rule(2 / 255, STEP)
    bn_mode: str = rule("eval", BN_MODE)
    clean_weight: float = rule(0.0, NONNEG)

    preset: ClassVar[Preset] = yopo_baseline("pgd10")

    supports_awp: ClassVar[bool] = True

    @property
    def passes_per_batch(self) -> float:
        return self.steps + self.awp_passes(1.0 + (self.clean_weight > 0))

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        with bn_mode(model, self.bn_mode):
            x_adv = run_pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
                        autocast_dtype=active_autocast_dtype(x))
        loss, logits = descend(model, lambda: self.objective(model, x, x_adv, y), optimizers, on_step,
                               self.awp_now())
        return output(loss, logits, y)

    def objective(self, model, x, x_adv, y):
        """(training loss, logits of x_adv): L(x_adv) + clean_weight * L(x)."""
        logits = model(x_adv)
        loss = self.cross_entropy(logits, y)
        if self.clean_weight > 0:
            loss = loss + self.clean_weight * self.cross_entropy(model(x), y)
        return loss, logits
