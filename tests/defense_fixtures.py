"""A tiny model that follows the layer-one contract, easy data and recording optimizers for the defense tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustode.models.contract import LayerOneModel, normalization


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine run ~20x faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyNet(LayerOneModel):
    """Layer one: [Normalize] + conv 3->8 without bias (linear); rest: BN-ReLU-pool-Linear."""

    input_shape = (3, 8, 8)

    def __init__(self, classes: int = 3, normalize: bool = True):
        super().__init__()
        self.stem = nn.Sequential(normalization(normalize), nn.Conv2d(3, 8, 3, padding=1, bias=False))
        self.body = nn.Sequential(nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(32, classes))

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class TinyNonlinear(TinyNet):
    """TinyNet that also offers the split with its first BN-ReLU inside layer one."""

    def layer_one_nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        return self.body[1](self.body[0](self.layer_one(x)))

    def rest_nonlinear(self, z: torch.Tensor) -> torch.Tensor:
        return self.body[2:](z)

    def layer_one_nonlinear_parameters(self):
        return [*self.stem.parameters(), *self.body[0].parameters()]


def blobs(n: int = 32, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 images whose class sets which colour channel is bright: learnable, and robust at eps 8/255."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.3 + 0.08 * torch.randn(n, 3, 8, 8, generator=g)
    x[torch.arange(n), y % 3] += 0.4
    return x.clamp(0, 1), y


def groups(model: nn.Module) -> list[dict]:
    return [{"params": list(model.parameters()), "weight_decay": 0.0}]


def sgd(lr: float = 0.05):
    return lambda param_groups: torch.optim.SGD(param_groups, lr=lr, momentum=0.9)


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of every parameter's .grad as it was when step() was called."""

    def __init__(self, params, lr: float = 0.0, **kw):
        super().__init__(params, lr=lr, **kw)
        self.seen: list[dict] = []

    def step(self, closure=None):
        self.seen.append({p: p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None})
        return super().step(closure)


class Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, *args):
        self.n += 1
