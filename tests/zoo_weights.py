"""Zoo models whose first layer reads its weight through other operations: a weight-standardized
conv (timm's StdConv2d in ResNetV2 / BiT), ``x @ self.w.t()``, a weight masked by a buffer,
normalization constants kept as frozen parameters, weight norm and spectral norm
(torch.nn.utils.parametrizations), custom autograd Functions (a conv, a straight-through rounding of
the input). Layer one is the first conv / product, with the operations on its weight inside it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations
from zoo_case import Case


class StdConv2d(nn.Conv2d):
    """timm's weight-standardized conv: the weight is standardized per output channel on every call."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.0,
                         eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class BiT(nn.Module):
    """ResNetV2 / BiT-like: a standardized conv stem, then a pre-activation block with GroupNorm."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", StdConv2d(3, 8, 3, padding=1, bias=False))
        self.stem.add_module("pool", nn.MaxPool2d(2))
        self.norm1 = nn.GroupNorm(2, 8)
        self.conv1 = StdConv2d(8, 8, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(2, 8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return _bit_rest(self, self.stem.conv(x))


def _bit_rest(net, z):
    h = net.stem.pool(z)
    h = h + net.conv1(F.relu(net.norm1(h)))
    return net.fc(F.adaptive_avg_pool2d(F.relu(net.norm(h)), 1).flatten(1))


class MatMul(nn.Module):
    """A first layer written as a product with a transposed parameter."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 3 * 32 * 32) * 0.02)
        self.b = nn.Parameter(torch.zeros(16))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(F.relu(x.flatten(1) @ self.w.t() + self.b))


class Masked(nn.Module):
    """A conv whose weight is masked by a buffer (pruning)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.2)
        self.register_buffer("mask", (torch.rand(8, 3, 3, 3) > 0.3).float())
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return _masked_rest(self, F.conv2d(x, self.weight * self.mask, padding=1))


def _masked_rest(net, z):
    return net.fc(F.adaptive_avg_pool2d(F.relu(net.bn(z)), 1).flatten(1))


class FrozenNormalize(nn.Module):
    """Normalization constants as parameters that do not train, as much robustness code keeps them."""

    def __init__(self):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1), requires_grad=False)
        self.std = nn.Parameter(torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1), requires_grad=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class FrozenNormalized(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.norm = FrozenNormalize()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return _masked_rest(self, self.conv1(self.norm(x)))


class ConvNet(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return _masked_rest(self, self.conv1(x))


def _parametrized(how) -> ConvNet:
    net = ConvNet()
    how(net.conv1)
    return net


class ConvFunction(torch.autograd.Function):
    """A conv with its backward written by hand."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, padding=1)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        return (torch.nn.grad.conv2d_input(x.shape, weight, g, padding=1),
                torch.nn.grad.conv2d_weight(x, weight.shape, g, padding=1), g.sum((0, 2, 3)))


class FunctionConv(ConvNet):
    def forward(self, x):
        return _masked_rest(self, ConvFunction.apply(x, self.conv1.weight, self.conv1.bias))


class RoundSTE(torch.autograd.Function):
    """Rounding with the identity as its gradient (a straight-through estimator, as in input-quantization defenses)."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Quantized(ConvNet):
    """Quantizes its input to 8 bits in front of conv1."""

    def forward(self, x):
        return super().forward(RoundSTE.apply(x * 255) / 255)


class GatedWeightNorm(ConvNet):
    """Control flow on values (fx cannot trace it) and weight norm on conv1: split by forward hooks."""

    def __init__(self):
        super().__init__()
        parametrizations.weight_norm(self.conv1)

    def forward(self, x):
        return _gated_rest(self, self.conv1(x))


def _gated_rest(net, z):
    h = net.bn(z)
    return net.fc(F.adaptive_avg_pool2d(F.relu(h) if h.mean() > 0 else 0.5 * h, 1).flatten(1))


def _conv1(net, x):
    return net.conv1(x)


def _conv1_params(net):
    return list(net.conv1.parameters())


WEIGHTS = {
    "bit": Case(BiT, lambda n, x: n.stem.conv(x), _bit_rest, lambda n: [n.stem.conv.weight],
                "layer one: conv2d(stem.conv.weight)"),
    "matmul": Case(MatMul, lambda n, x: x.flatten(1) @ n.w.t(), lambda n, z: n.fc(F.relu(z + n.b)),
                   lambda n: [n.w], "layer one: matmul(w) (+ preprocessing: flatten)"),
    "masked": Case(Masked, lambda n, x: F.conv2d(x, n.weight * n.mask, padding=1), _masked_rest,
                   lambda n: [n.weight], "layer one: conv2d(weight)"),
    "frozen_normalization": Case(FrozenNormalized, lambda n, x: n.conv1(n.norm(x)), _masked_rest,
                                 lambda n: list(n.conv1.parameters()), "layer one: conv1 (+ preprocessing: sub, div)"),
    "weight_norm": Case(lambda: _parametrized(parametrizations.weight_norm), _conv1, _masked_rest, _conv1_params,
                        "layer one: conv1"),
    "spectral_norm": Case(lambda: _parametrized(parametrizations.spectral_norm), _conv1, _masked_rest, _conv1_params,
                          "layer one: conv1"),
    "function_conv": Case(FunctionConv, lambda n, x: ConvFunction.apply(x, n.conv1.weight, n.conv1.bias),
                          _masked_rest, _conv1_params, "layer one: ConvFunction.apply(conv1.bias, conv1.weight)"),
    "straight_through": Case(Quantized, lambda n, x: n.conv1(RoundSTE.apply(x * 255) / 255), _masked_rest,
                             _conv1_params, "layer one: conv1 (+ preprocessing: mul, RoundSTE.apply, div)"),
    "gated_weight_norm": Case(GatedWeightNorm, _conv1, _gated_rest, _conv1_params,
                              "layer one: conv1 (found by forward hooks)"),
}
