"""What every defense is: a dataclass of the paper's settings and one ``train_step``.

The shared training loop (robustode.training) owns epochs, schedules, timing,
logging and checkpoints. A defense owns only what happens to one minibatch:
how the perturbation is made and which optimizer steps follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import torch
from torch import nn


@dataclass(frozen=True)
class Preset:
    """The optimizer and schedule a paper used; the loop's defaults for a defense."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 10  # nominal epochs (Free-m runs epochs / m passes over the data)
    schedule: str = "multistep"  # multistep | cyclic | cosine | constant
    milestones: tuple[float, ...] = ()  # nominal epochs at which multistep multiplies lr by gamma
    gamma: float = 0.1
    source: str = ""  # where the numbers come from


@dataclass
class StepOutput:
    """Tensors, not floats: reading them back is the loop's choice (no host sync per step)."""

    loss: torch.Tensor  # mean training loss of the minibatch (detached)
    correct: torch.Tensor  # number of correctly classified training inputs (as the defense sees them)
    count: int  # number of examples counted in ``correct``


@dataclass
class Defense:
    """Base class. Subclasses are dataclasses whose fields are the paper's hyperparameters."""

    eps: float = 8 / 255

    spec: ClassVar[str] = "?"  # set per instance by the factory, e.g. "pgd-10"
    preset: ClassVar[Preset] = Preset()
    replays: ClassVar[int] = 1  # optimizer steps per minibatch; data epochs = nominal epochs / replays

    @property
    def passes_per_batch(self) -> float:
        """Forward+backward passes over one minibatch in one train_step (the cost unit)."""
        return 1.0

    def hyperparameters(self) -> dict:
        return asdict(self)

    def prepare(self, model: nn.Module, example: torch.Tensor) -> str | None:
        """Called once before training, with a small batch shaped like the training images.

        A defense that needs something of the model finds and checks it here, so that a
        model it cannot train fails before the first step; it may return one line for
        the run log. Nothing to do by default.
        """
        return None

    def optimizers(self, model: nn.Module, groups: list[dict], make: Callable[[list[dict]], torch.optim.Optimizer]):
        """Build this defense's optimizers from parameter groups; one optimizer by default."""
        return [make(groups)]

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   optimizers: list, on_step: Callable[[], None]) -> StepOutput:
        """Train on one minibatch. Call ``on_step()`` after every optimizer step."""
        raise NotImplementedError

    def end_epoch(self, model: nn.Module, optimizers: list, epoch: int) -> str | None:
        """Hook after each data epoch; return a reason string to stop training early."""
        return None

    def state_dict(self) -> dict:
        """State carried across minibatches (e.g. Free's perturbation buffer)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
