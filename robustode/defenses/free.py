"""Free adversarial training (Shafahi et al., NeurIPS 2019): the perturbation rides along for free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..rules import COUNT, rule
from .base import Defense, Preset, StepOutput
from .common import clip_delta, sgd_step


@dataclass
class Free(Defense):
    """Free-m (Shafahi et al. 2019, "Adversarial Training for Free!", https://arxiv.org/abs/1904.12843).

    Threat model: L-inf ball of radius eps. One perturbation buffer delta (zero at the start,
    batch-shaped) is carried across minibatches and never reset. Each minibatch is replayed
    ``m`` times; each replay is ONE forward/backward of L(clamp(x + delta, 0, 1)) that gives
    the weight gradient (an optimizer step; ``on_step`` after each, so the lr schedule counts
    replays) and grad_delta: delta <- clamp(delta + eps * sign(grad_delta), -eps, eps). The
    loop runs nominal epochs / m data epochs (``replays == m``): natural training's passes.

    Settings: eps 8/255, m 8 (``free-8``), clip_to_image False (True: also clip delta to the
    current image's [0, 1] box). Cost: m passes per batch. Preset: Shafahi et al.'s CIFAR-10
    WRN run, 205 nominal epochs of batch 128, SGD momentum 0.9, weight decay 2e-4, lr 0.1
    x0.1 at nominal epochs 102.4 and 153.6.
    Where robustode differs from the authors' code: docs/fidelity.md#free-m.

        defense = robustode.defenses.create_defense("free-8")
        model, record = robustode.train("wrn34_10", defense, "cifar10")
    """

    m: int = rule(8, COUNT, label="m (M of free-M)")
    clip_to_image: bool = False  # also clip the carried delta to the current image's [0, 1] box

    legacy_defaults: ClassVar[dict] = {"clip_to_image": True}  # earlier runs clipped to the image box
    preset: ClassVar[Preset] = Preset(
        lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, epochs=205, milestones=(102.4, 153.6),
        source="Shafahi et al. 2019, github.com/ashafahi/free_adv_train config.py (train_steps 80000, "
        "step_size_schedule [[0, 0.1], [40000, 0.01], [60000, 0.001]], batch 128, wd 2e-4)",
    )

    def __post_init__(self):
        super().__post_init__()
        self._delta: torch.Tensor | None = None

    @property
    def replays(self) -> int:
        return self.m

    @property
    def passes_per_batch(self) -> float:
        return float(self.m)

    def _buffer(self, x: torch.Tensor) -> torch.Tensor:
        """The rows of the persistent buffer that this batch uses (a view: updates write through)."""
        d = self._delta
        if d is not None:
            d = d.to(x.device)
        if d is None or d.shape[1:] != x.shape[1:] or d.shape[0] < x.shape[0]:
            d = torch.zeros_like(x, dtype=torch.float32)
        self._delta = d
        return d[: x.shape[0]]

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        rows = self._buffer(x)
        losses, correct = [], 0
        for _ in range(self.m):
            delta = rows.detach().clone().requires_grad_(True)
            logits = model((x + delta).clamp(0.0, 1.0))
            loss = self.cross_entropy(logits, y)
            # One backward gives the weight gradients and delta.grad together; delta is no optimizer
            # parameter, so its .grad survives the step for the perturbation update below.
            sgd_step(loss, optimizers, on_step)
            stepped = delta.detach() + self.eps * delta.grad.sign()
            rows.copy_(clip_delta(stepped, x, self.eps) if self.clip_to_image else stepped.clamp(-self.eps, self.eps))
            losses.append(loss.detach())
            correct = correct + (logits.detach().argmax(1) == y).sum()
        return StepOutput(loss=torch.stack(losses).mean(), correct=correct, count=self.m * y.shape[0])

    def state_dict(self) -> dict:
        return {"delta": self._delta}

    def load_state_dict(self, state: dict) -> None:
        self._delta = state.get("delta")
