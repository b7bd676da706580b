"""A tiny contract model, a scriptable defense and data for the training-loop tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustode.data import make_synthetic
from robustode.defenses.base import Defense, EpochStop, Preset, StepOutput
from robustode.defenses.common import output, sgd_step
from robustode.models.contract import LayerOneModel, Normalize


class Tiny(LayerOneModel):
    """Conv stem (stride 4) -> BN -> ReLU -> pool -> linear; with a tau-like scalar and both model hooks."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(Normalize(), nn.Conv2d(3, 8, 3, stride=4, padding=1))
        self.body = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(8, num_classes))
        self.tau = nn.Parameter(torch.tensor(0.5))
        self.hook_calls = 0

    def rest(self, z):
        return self.body(z * self.tau)

    def no_weight_decay_parameters(self):
        return [self.tau]

    def after_optimizer_step(self):
        self.hook_calls += 1


class Net(nn.Module):
    """A custom model (no layer-one contract) of two layers: a user's own model as the tests use it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv1(x)).flatten(1))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def data(n_train: int = 64, n_test: int = 16):
    return make_synthetic(n_train, n_test, seed=0)


@dataclass
class Plain(Defense):
    """Natural training that can misbehave on cue (train_step calls count from 1)."""

    nan_from_call: int = 0  # from this call on the loss is NaN (0: never)
    stop_at_epoch: int = 0  # end_epoch returns a stop reason after this data epoch (0: never)
    restores: bool = False  # that stop also puts the previous epoch's weights back, as FGSM-RS's guard does

    spec: ClassVar[str] = "plain"
    preset: ClassVar[Preset] = Preset(lr=0.05, batch_size=16, epochs=2, schedule="constant",
                                      weight_decay=5e-4)

    def __post_init__(self):
        self.calls = 0

    def train_step(self, model, x, y, optimizers, on_step) -> StepOutput:
        self.calls += 1
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if self.nan_from_call and self.calls >= self.nan_from_call:
            loss = loss * float("nan")
        sgd_step(loss, optimizers, on_step)
        return output(loss, logits, y)

    def end_epoch(self, model, optimizers, epoch):
        if epoch != self.stop_at_epoch:
            self.kept = copy.deepcopy(model.state_dict())
            return None
        reason = f"guard tripped after epoch {epoch}"
        if not self.restores:
            return reason
        model.load_state_dict(self.kept)
        return EpochStop(reason, restored_weights=True)


class Interrupting:
    """Wraps a defense and raises KeyboardInterrupt on its ``at``-th train_step call, as Ctrl-C would."""

    def __init__(self, defense: Defense, at: int):
        self._defense, self._at, self._calls = defense, at, 0

    def __getattr__(self, name):
        return getattr(self._defense, name)

    def train_step(self, *args):
        self._calls += 1
        if self._calls == self._at:
            raise KeyboardInterrupt
        return self._defense.train_step(*args)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
