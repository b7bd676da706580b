"""Natural (standard) training: the baseline every robust defense is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Defense, Preset, StepOutput
from .common import output, sgd_step


def yopo_baseline(experiment: str) -> Preset:
    """The YOPO authors' WRN-34-10 baselines: natural and PGD-10 training share one recipe."""
    return Preset(
        lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=256, epochs=105, milestones=(75, 90, 100),
        source=f"YOPO authors' {experiment} baseline, github.com/a1600012888/YOPO-You-Only-Propagate-Once "
        f"experiments/CIFAR10/wide34.{experiment}/config.py",
    )


@dataclass
class Natural(Defense):
    """Natural training: one optimizer step on the clean cross-entropy; no perturbation.

    One step: L = CE(model(x), y); backward; optimizer step (one forward+backward).
    ``eps`` is unused; it is kept so that every defense has the same fields.
    Preset: the YOPO authors' natural WRN-34-10 baseline (SGD, momentum 0.9,
    lr 0.1, weight decay 2e-4, batch 256, 105 epochs, lr x0.1 at 75, 90, 100).
    Where robustode differs from the authors' code: docs/fidelity.md#natural.

        defense = robustode.defenses.create_defense("natural")
        model, record = robustode.train("wrn34_10", defense, "cifar10")
    """

    preset: ClassVar[Preset] = yopo_baseline("natural")

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        logits = model(x)
        loss = self.cross_entropy(logits, y)
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)
