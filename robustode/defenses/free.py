"""Free adversarial training (Shafahi et al., NeurIPS 2019): the perturbation rides along for free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..utils import check_eps
from .base import Defense, Preset, StepOutput
from .common import as_count, clip_delta, sgd_step


@dataclass
class Free(Defense):
    """Free-m (Shafahi et al. 2019, "Adversarial Training for Free!", https://arxiv.org/abs/1904.12843).

    One persistent perturbation buffer delta (zero at the start, batch-shaped)
    is carried across minibatches and never reset. Each minibatch is replayed
    ``m`` times; each replay is ONE forward/backward of L(clip01(x + delta))
    that yields both the weight gradient and grad_delta: the optimizer steps on
    the weights (``on_step`` after each, so the lr schedule counts replays), then
    delta <- clamp(delta + eps * sign(grad_delta), -eps, eps) (step size = eps).

    Clipping, as the authors (ashafahi/free_adv_train free_train.py, and the
    PyTorch port mahyarnajibi/FreeAdversarialTraining main_free.py): the carried
    delta is kept in the eps box only, and the model input clamp(x + delta, 0, 1)
    keeps the image valid. The buffer rides on to the next minibatch's images, so
    clipping it to the current image's [0, 1] box would cut it to the shape of an
    image it is about to leave. ``clip_to_image=True`` also clips delta to
    [-x, 1 - x], as Wong et al.'s re-implementation (locuslab/fast_adversarial
    CIFAR10/train_free.py) does.

    The loop runs nominal epochs / m data epochs (``replays == m``), so the total
    number of forward/backward passes equals natural training's. A last, smaller
    batch uses (and updates) the first rows of the buffer. A batch of another
    image shape, or larger than the buffer, starts a fresh zero buffer.

    With ``label_smoothing`` the perturbation ascends the smoothed loss: its
    gradient comes from the training loss's own backward.

    Defaults: eps 8/255, m 8 (``free-8``). Preset: Shafahi et al.'s CIFAR-10
    WRN run, 80,000 optimizer steps (replays counted) of batch 128 = 205 nominal
    epochs, SGD momentum 0.9, weight decay 2e-4, lr 0.1 x0.1 at steps 40,000 and
    60,000 (nominal epochs 102.4 and 153.6).

        defense = robustode.defenses.create_defense("free-8")
    """

    m: int = 8
    clip_to_image: bool = False  # also clip the carried delta to the current image's [0, 1] box

    legacy_defaults: ClassVar[dict] = {"clip_to_image": True}  # robustode 0.1 clipped to the image box
    preset: ClassVar[Preset] = Preset(
        lr=0.1, momentum=0.9, weight_decay=2e-4, batch_size=128, epochs=205, milestones=(102.4, 153.6),
        source="Shafahi et al. 2019, github.com/ashafahi/free_adv_train config.py (train_steps 80000, "
        "step_size_schedule [[0, 0.1], [40000, 0.01], [60000, 0.001]], batch 128, wd 2e-4)",
    )

    def __post_init__(self):
        super().__post_init__()
        self.eps = check_eps(self.eps)
        self.m = as_count(self.m, "m (M of free-M)")
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
