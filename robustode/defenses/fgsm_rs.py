"""FGSM with a random start ("Fast is better than free", Wong, Rice, Kolter, ICLR 2020)."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import ClassVar

import torch

from ..attacks.pgd import run_pgd
from ..modes import bn_mode
from ..rules import COUNT, POSITIVE, STEP, rule
from .base import Defense, EpochStop, Preset, StepOutput
from .common import BN_MODE, active_autocast_dtype, output, sgd_step

log = logging.getLogger("robustode")


@dataclass
class FGSMRS(Defense):
    """FGSM-RS (Wong, Rice, Kolter 2020, https://arxiv.org/abs/2001.03994), with the overfitting guard.

    Threat model: L-inf ball of radius eps. One step: delta ~ U(-eps, eps), clipped; one step
    delta <- clip(delta + alpha * sign(grad_delta L(x + delta))) with the model in ``bn_mode``;
    then one optimizer step on L(x + delta). The catastrophic-overfitting guard measures PGD
    accuracy on the first training batch after every epoch; if it falls by more than
    ``guard_drop``, the previous epoch's weights come back and training stops.

    Settings: eps 8/255, alpha 10/255 (1.25 eps), bn_mode "train", guard True, guard_drop 0.2
    (20 points), guard_steps 5, guard_alpha 2/255. Cost: 2 passes per batch. Preset: 15
    epochs, cyclic lr 0 -> 0.2 -> 0 per iteration, SGD momentum cycling against it
    0.9 -> 0.8 -> 0.9 (``cycle_momentum=False`` keeps 0.9), weight decay 5e-4, batch 128
    (PreActResNet-18). Where robustode differs from the authors' code: docs/fidelity.md#fgsm-rs.

        defense = robustode.defenses.create_defense("fgsm-rs", guard=False)
        model, record = robustode.train("preact_resnet18", defense, "cifar10")
    """

    alpha: float = rule(10 / 255, STEP)
    bn_mode: str = rule("train", BN_MODE)
    guard: bool = True
    guard_drop: float = rule(0.2, POSITIVE)  # stop when guard-batch PGD-5 accuracy falls by more than this fraction
    guard_steps: int = rule(5, COUNT)
    guard_alpha: float = rule(2 / 255, STEP)

    single_step: ClassVar[bool] = True  # one FGSM step: the report counts its collapsed seeds
    preset: ClassVar[Preset] = Preset(
        lr=0.2, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=15, schedule="cyclic",
        cycle_momentum=True, momentum_min=0.8,
        source="Wong, Rice, Kolter 2020, github.com/locuslab/fast_adversarial CIFAR10/train_fgsm.py "
        "(CyclicLR with torch's default cycle_momentum=True, base_momentum 0.8, max_momentum 0.9)",
    )

    def __post_init__(self):
        super().__post_init__()
        self._guard_batch: tuple[torch.Tensor, torch.Tensor] | None = None
        self._previous: dict | None = None  # {"epoch", "acc", "model", "optimizers"} of the last good epoch

    @property
    def passes_per_batch(self) -> float:
        return 2.0

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        if self.guard and self._guard_batch is None:
            self._guard_batch = (x.detach().clone(), y.detach().clone())
        with bn_mode(model, self.bn_mode):
            x_adv = run_pgd(model, x, y, eps=self.eps, alpha=self.alpha, steps=1,
                        autocast_dtype=active_autocast_dtype(x))
        logits = model(x_adv)
        loss = self.cross_entropy(logits, y)
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)

    def guard_accuracy(self, model) -> float:
        """PGD accuracy on the kept training batch (eval mode, float32)."""
        x, y = self._guard_batch
        device = next(model.parameters()).device
        x, y = x.to(device), y.to(device)
        with bn_mode(model, "eval"), torch.autocast(device.type, enabled=False):
            x_adv = run_pgd(model, x, y, eps=self.eps, alpha=self.guard_alpha, steps=self.guard_steps)
            with torch.no_grad():
                correct = (model(x_adv).argmax(1) == y).sum().item()
        return correct / y.shape[0]

    def end_epoch(self, model, optimizers, epoch: int) -> EpochStop | None:
        if not self.guard or self._guard_batch is None:
            return None
        acc = self.guard_accuracy(model)
        previous = self._previous
        if previous is not None and previous["acc"] - acc > self.guard_drop:
            model.load_state_dict(previous["model"])
            for opt, state in zip(optimizers, previous["optimizers"]):
                opt.load_state_dict(copy.deepcopy(state))
            reason = (
                f"catastrophic overfitting at epoch {epoch}: PGD-{self.guard_steps} accuracy on the guard "
                f"batch fell from {previous['acc']:.1%} to {acc:.1%}; restored epoch {previous['epoch']} weights"
            )
            log.warning(reason)
            return EpochStop(reason, restored_weights=True)
        self._previous = {
            "epoch": epoch,
            "acc": acc,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizers": [copy.deepcopy(opt.state_dict()) for opt in optimizers],
        }
        return None

    def state_dict(self) -> dict:
        return {"guard_batch": self._guard_batch, "previous": self._previous}

    def load_state_dict(self, state: dict) -> None:
        self._guard_batch = state.get("guard_batch")
        self._previous = state.get("previous")
