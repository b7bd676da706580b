"""robustode.split.affine: which modules it proves affine, and the conv stems' weight-gradient product."""

from __future__ import annotations

import pytest
import torch
from defense_fixtures import one_thread  # noqa: F401
from torch import nn

from robustode import models
from robustode.split.affine import is_affine, weight_gradient_product


class Fn(nn.Module):
    """A module whose forward is ``f(self, x)``, so that torch.fx traces f."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.register_buffer("c", torch.full((1, 3, 1, 1), 2.0))
        self.w = nn.Parameter(torch.ones(3, 1, 1))

    def forward(self, x):
        return self.f(self, x)


AFFINE = {
    "add/sub of constants and of the input": lambda m, x: x + 1 - m.c + x.transpose(2, 3),
    "scale by buffer, parameter, number": lambda m, x: (m.c * x) * m.w / 4 - x.div(m.c),
    "torch functions": lambda m, x: torch.add(x, m.c, alpha=2).flatten(1).reshape(-1, 3, 8, 8),
    "indexing, permute, view, neg": lambda m, x: -x[:, :2].permute(0, 2, 3, 1).contiguous().view(4, -1),
    "a function of constants only": lambda m, x: x * torch.relu(m.w) + torch.tanh(m.c),
}
NOT_AFFINE = {
    "input times input": lambda m, x: x * x,
    "input over input": lambda m, x: m.c / (x + 1),
    "same input twice in mul": lambda m, x: torch.mul(x, x),
    "relu": lambda m, x: torch.relu(x),
    "floor division": lambda m, x: torch.div(x, 2, rounding_mode="floor"),
    "power": lambda m, x: x ** 2,
    "index by the input": lambda m, x: x[x > 0.5],
    "uses the shape": lambda m, x: x.view(x.shape[0], -1),
    "tuple output": lambda m, x: (x, x + 1),
    "input by keyword": lambda m, x: torch.add(m.c, other=x),
}


@pytest.mark.parametrize("case", AFFINE)
def test_is_affine_proves_affine_forms(case):
    module = Fn(AFFINE[case])
    assert is_affine(module)
    x = torch.rand(4, 3, 8, 8)  # and it really is: f(a u + b v) = a f(u) + b f(v) - (a + b - 1) f(0)
    u, v, zero = torch.rand_like(x), torch.rand_like(x), torch.zeros_like(x)
    with torch.no_grad():
        assert torch.allclose(module(2 * u - 3 * v), 2 * module(u) - 3 * module(v) + 2 * module(zero), atol=1e-5)


@pytest.mark.parametrize("case", NOT_AFFINE)
def test_is_affine_rejects_what_it_cannot_prove(case):
    assert not is_affine(Fn(NOT_AFFINE[case]))


def test_is_affine_on_modules_and_graph_modules():
    vit = models.create("vit_tiny")
    assert is_affine(vit.stem) and is_affine(torch.fx.symbolic_trace(vit.stem))
    assert is_affine(nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)))
    assert not is_affine(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))  # batch statistics: not affine
    assert not is_affine(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU()))
    assert not is_affine(SquaringConv(3, 4, 3))  # a subclass's forward is traced, not trusted


class SquaringConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x) ** 2


def test_the_weight_gradient_product_equals_the_backward_where_it_applies():
    torch.manual_seed(0)
    u = torch.rand(2, 3, 8, 8)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, dilation=1)
    for module in (models.create("resnet20").stem, conv, nn.Sequential(nn.Identity(), nn.Conv2d(3, 6, 3, groups=3))):
        cotangent = torch.randn_like(module(u))
        expected = torch.autograd.grad(module(u), list(module.parameters()), cotangent)
        seen = []
        hooks = [p.register_hook(seen.append) for p in module.parameters()]
        weight_gradient_product(module)(u, cotangent)
        for hook in hooks:
            hook.remove()
        assert len(seen) == len(expected)  # through autograd: the parameters' hooks see it
        for param, grad in zip(module.parameters(), expected):
            assert torch.allclose(param.grad, grad, rtol=1e-5, atol=1e-6)
    others = (models.create("vit_tiny").stem, nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()), nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
              nn.Conv2d(3, 4, 3, padding="same"), nn.Sequential(nn.Linear(8, 8), nn.Conv2d(3, 4, 3)),
              SquaringConv(3, 4, 3))
    assert [weight_gradient_product(module) for module in others] == [None] * len(others)  # the backward runs
