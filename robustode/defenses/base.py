"""What every defense is: a dataclass of the paper's settings and one ``train_step``.

The shared training loop (robustode.training) owns epochs, schedules, timing,
logging and checkpoints. A defense owns only what happens to one minibatch:
how the perturbation is made and which optimizer steps follow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..rules import BELOW_ONE, COUNT0, NONNEG, TRAINING_BUDGET, check_fields, rule
from ..threat import DEFAULT_EPS


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
    cyclic_peak: float = 0.5  # fraction of the run where the cyclic schedule peaks
    cycle_momentum: bool = False  # momentum moves against the lr, down to momentum_min at its peak
    momentum_min: float = 0.8  # torch CyclicLR's base_momentum
    source: str = ""  # where the numbers come from


@dataclass
class StepOutput:
    """Tensors, not floats: reading them back is the loop's choice (no host sync per step)."""

    loss: torch.Tensor  # mean training loss of the minibatch (detached)
    correct: torch.Tensor  # number of correctly classified training inputs (as the defense sees them)
    count: int  # number of examples counted in ``correct``


@dataclass(frozen=True)
class EpochStop:
    """What ``end_epoch`` returns to stop training: why, and whether it put earlier weights back.

    ``restored_weights`` tells the loop that the model now holds an earlier epoch's
    weights (FGSM-RS's guard), so a weight average rewinds to that epoch too; a stop
    that leaves the weights as they are leaves the average as it is. A plain reason
    string from ``end_epoch`` is a stop without a restore.
    """

    reason: str
    restored_weights: bool = False

    @classmethod
    def of(cls, value) -> EpochStop | None:
        """``end_epoch``'s return value as an EpochStop (None: go on)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ConfigError(f"end_epoch must return None, a reason string or an EpochStop, got {type(value).__name__}")


@dataclass
class Defense:
    """Base class. Subclasses are dataclasses whose fields are the paper's hyperparameters.

    Every defense also takes the modifiers, settable by spec like any field
    ("pgd-10(ema_decay=0.999)"); 0 switches each off:

    - ``label_smoothing``: the training loss's cross-entropy uses smoothed labels
      (``self.cross_entropy``); Free's and YOPO's perturbations then ascend the
      smoothed loss, the other defenses' attacks the plain one
      (docs/fidelity.md#label-smoothing).
    - ``awp_gamma``, ``awp_warmup``: adversarial weight perturbation (Wu, Xia, Wang,
      NeurIPS 2020, https://arxiv.org/abs/2004.05884), for defenses with
      ``supports_awp``; see robustode.defenses.awp.
    - ``ema_decay``: the training loop keeps an exponential moving average of the
      weights and evaluates and saves it (robustode.training.averaging;
      docs/fidelity.md#ema).
    - ``aux_weight``: every cross-entropy term of the training loss (``self.cross_entropy``)
      adds aux_weight * ``model.auxiliary_loss()``, the model's regularizer of the forward
      behind those logits (TisODE's steady state, SODEF's stability; any model may expose one).

    A subclass calls ``super().__post_init__()`` (it checks every field by its rule) and
    takes its training loss's cross-entropy from ``self.cross_entropy``.
    """

    eps: float = rule(DEFAULT_EPS, TRAINING_BUDGET)
    label_smoothing: float = rule(0.0, BELOW_ONE)  # smoothing factor of the training loss's labels
    awp_gamma: float = rule(0.0, NONNEG)  # AWP's relative weight perturbation ||v_l|| / ||w_l|| per weight tensor
    awp_warmup: int = rule(0, COUNT0, label="awp_warmup (data epochs)")  # data epochs trained before AWP starts
    ema_decay: float = rule(0.0, BELOW_ONE)  # decay of the weight average (e.g. 0.999)
    aux_weight: float = rule(0.0, NONNEG)  # weight of the model's auxiliary_loss() in the training loss

    spec: ClassVar[str] = "?"  # set per instance by the factory, e.g. "pgd-10"
    preset: ClassVar[Preset] = Preset()
    replays: ClassVar[int] = 1  # optimizer steps per minibatch; data epochs = nominal epochs / replays
    supports_awp: ClassVar[bool] = False  # its training loss is a function of fixed adversarial examples
    # Settings whose default changed, with the value runs saved before the setting existed behaved as:
    # such a run is resumed with these (and every other setting it lacks at its current default).
    legacy_defaults: ClassVar[dict] = {}
    epochs_done: ClassVar[int] = 0  # data epochs completed; the loop sets it on the instance (begin_epoch)
    # The model's auxiliary_loss when aux_weight > 0; the loop sets it on the instance (use_auxiliary).
    auxiliary: ClassVar[Callable[[], torch.Tensor] | None] = None
    compiles: ClassVar[bool] = True  # train_step runs under torch.compile (not with double backprop)
    single_step: ClassVar[bool] = False  # one attack step per batch: can overfit catastrophically

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Convert and check every field by the rule declared beside it, then the rules across fields.

        ``__post_init__`` calls it; an entrance calls it again for a Defense it did not build (a subclass
        whose ``__post_init__`` does not call super()'s). Train steps trust the fields it let through.
        """
        check_fields(self)
        if self.awp_gamma > 0 and not self.supports_awp:
            raise ConfigError(f"{type(self).__name__} does not take AWP (awp_gamma > 0): AWP perturbs the "
                              "weights for a loss on fixed adversarial examples, as in pgd-K, trades-K and mart-K")

    @property
    def passes_per_batch(self) -> float:
        """Forward+backward passes over one minibatch in one train_step (the cost unit)."""
        return 1.0

    @property
    def max_perturbation(self) -> float:
        """The largest L-inf distance of a training input from its clean image."""
        return self.eps

    def hyperparameters(self) -> dict:
        """Every field, the defense's own first, then the modifiers."""
        values = asdict(self)
        own = {k: v for k, v in values.items() if k not in MODIFIERS}
        return {**own, **{k: values[k] for k in MODIFIERS if k in values}}

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the training loss, with ``label_smoothing``; with ``aux_weight``, plus the
        model's auxiliary loss of the forward behind ``logits``."""
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if self.auxiliary is not None:
            loss = loss + self.aux_weight * self.auxiliary()
        return loss

    def use_auxiliary(self, model: nn.Module) -> None:
        """Called by the loop before training: with ``aux_weight > 0`` the model must have ``auxiliary_loss``."""
        if self.aux_weight <= 0:
            return
        auxiliary = getattr(model, "auxiliary_loss", None)
        if not callable(auxiliary):
            raise ConfigError(f"aux_weight={self.aux_weight:g} adds the model's auxiliary loss, but "
                              f"{type(model).__name__} has no auxiliary_loss(); use a model with auxiliary_loss()")
        self.auxiliary = auxiliary

    def awp_now(self) -> float:
        """AWP's gamma for the current step: 0 when off or still warming up."""
        return self.awp_gamma if self.epochs_done >= self.awp_warmup else 0.0

    def awp_passes(self, loss_passes: float) -> float:
        """Passes of a training loss taking ``loss_passes``, with AWP's ascent step on the same loss."""
        return loss_passes * (2.0 if self.awp_gamma > 0 else 1.0)

    def begin_epoch(self, epoch: int) -> None:
        """Hook before data epoch ``epoch`` (1-based): the loop says how many epochs are done."""
        self.epochs_done = epoch - 1

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

    def end_epoch(self, model: nn.Module, optimizers: list, epoch: int) -> str | EpochStop | None:
        """Hook after each data epoch; return a reason (or an EpochStop, which says whether this hook
        restored earlier weights) to stop training early."""
        return None

    def state_dict(self) -> dict:
        """State carried across minibatches (e.g. Free's perturbation buffer)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# The modifiers: every field of Defense but the threat's budget eps (label smoothing, AWP, weight average, the
# model's auxiliary loss); hyperparameters() lists them after a defense's own settings.
MODIFIERS = tuple(f.name for f in fields(Defense) if f.name != "eps")
