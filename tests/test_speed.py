"""The loop's speed contract: no host sync per minibatch, and bf16 weights refreshed after every step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import one_thread  # noqa: F401 (autouse: one CPU thread)
from torch.utils._python_dispatch import TorchDispatchMode
from training_utils import data, tiny

from robustode.defenses import create_defense
from robustode.defenses.base import Defense, Preset
from robustode.defenses.common import output, sgd_step
from robustode.api import fit

# Ops that copy a value from the device to the host (a sync on CUDA) or whose output shape depends on data.
SYNCING = {"_local_scalar_dense", "item", "nonzero", "masked_select", "unique", "_unique2", "equal"}


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in SYNCING:
            self.count += 1
        return func(*args, **(kwargs or {}))


def syncs(spec: str, n_train: int) -> int:
    counter = SyncCounter()
    with counter:
        fit(tiny(), create_defense(spec), data(n_train), epochs=create_defense(spec).replays, batch_size=8,
            augment=True, quiet=True)
    return counter.count


@pytest.mark.parametrize("spec", ["natural", "pgd-2", "free-2", "yopo-2-1", "fgsm-rs", "trades-2"])
def test_an_epoch_reads_back_a_fixed_number_of_times_whatever_its_length(spec):
    assert syncs(spec, 16) == syncs(spec, 48)  # 2 minibatches or 6: the readbacks are per epoch


@dataclass
class TwoSteps(Defense):
    """Two optimizer steps per minibatch, then the model's output and a cache-free bf16 output."""

    seen: list = field(default_factory=list)

    spec: ClassVar[str] = "two-steps"
    preset: ClassVar[Preset] = Preset(lr=0.5, batch_size=16, epochs=1, schedule="constant")

    def train_step(self, model, x, y, optimizers, on_step):
        for _ in range(2):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            sgd_step(loss, optimizers, on_step)
        with torch.no_grad():
            with torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=False):
                fresh = model(x)
            self.seen.append((model(x), fresh))
        return output(loss, logits, y)


def test_bf16_forwards_after_an_optimizer_step_use_the_new_weights():
    defense = TwoSteps()
    fit(tiny(), defense, data(32), precision="bf16", augment=False, quiet=True)
    assert len(defense.seen) == 2
    for in_loop, fresh in defense.seen:
        assert in_loop.dtype == torch.bfloat16 and torch.equal(in_loop, fresh)
