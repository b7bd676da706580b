"""PGD-k adversarial training (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..attacks import pgd
from ..utils import check_eps, check_step
from .awp import descend
from .base import Defense, Preset, StepOutput
from .common import active_autocast_dtype, as_bn_mode, as_count, as_positive, bn_mode, output
from .natural import yopo_baseline


@dataclass
class PGDTraining(Defense):
    """PGD-k adversarial training (Madry et al. 2018, https://arxiv.org/abs/1706.06083).

    One step: delta ~ U(-eps, eps), clipped; ``steps`` times
    delta <- clip(delta + alpha * sign(grad_delta L(x + delta))) with the model
    in ``bn_mode`` ("eval" by default, the YOPO authors' choice; Madry used
    "train"); then, in train mode, one optimizer step on
    L(x + delta) + clean_weight * L(x). Pure adversarial loss by default
    (``clean_weight=0``); the YOPO authors' PGD baseline used ``clean_weight=1``.

    Defaults: eps 8/255, alpha 2/255, steps 10 (``pgd-10``). Cost: steps + 1
    forward+backward passes per batch (an attack step's backward stops at the
    input, but it is counted as a full pass), + 1 when ``clean_weight > 0``;
    AWP (``awp_gamma``) repeats the training loss's passes once more.
    Weight decay: robustode decays every trainable parameter (convolution and
    linear weights, biases, batch-norm scales and shifts) unless the run sets
    ``no_wd_norms`` (then normalization layers and biases get none) or the model
    lists ``no_weight_decay_parameters()``; Madry et al.'s code decays the
    convolution and fully connected weights only.
    Preset: the YOPO authors' PGD WRN-34-10 baseline (SGD, momentum 0.9, lr 0.1,
    weight decay 2e-4, batch 256, 105 epochs, lr x0.1 at 75, 90, 100).

    With AWP (AT-AWP, Wu et al. 2020): ``pgd-10(awp_gamma=0.01)`` takes the authors'
    gamma but keeps this preset and ``bn_mode="eval"``; robustode.defenses.awp gives
    the spec and training settings of their PreActResNet-18 recipe.
    Their repository's log of that run (AT_AWP/logs/cifar10_linf/preactresnet18_awp/
    output.log; PGD-20 on the CIFAR-10 test set during training, eps 8/255, not a
    robustode figure): best epoch 81.18% clean / 55.39% PGD-20, against 81.70% /
    52.79% for plain PGD-10 training.

        defense = robustode.defenses.create_defense("pgd-10")
    """

    steps: int = 10
    alpha: float = 2 / 255
    bn_mode: str = "eval"
    clean_weight: float = 0.0

    preset: ClassVar[Preset] = yopo_baseline("pgd10")

    supports_awp: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        self.eps = check_eps(self.eps)
        self.alpha = check_step(self.alpha, "alpha")
        self.steps = as_count(self.steps, "steps (K of pgd-K)")
        self.bn_mode = as_bn_mode(self.bn_mode)
        self.clean_weight = as_positive(self.clean_weight, "clean_weight", allow_zero=True)

    @property
    def passes_per_batch(self) -> float:
        return self.steps + self.awp_passes(1.0 + (self.clean_weight > 0))

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        with bn_mode(model, self.bn_mode):
            x_adv = pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
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
