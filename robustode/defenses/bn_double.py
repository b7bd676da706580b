"""Train-mode batch norm with a closed-form double backward, for double-backprop defenses (GradAlign).

torch differentiates batch norm's backward as a composite of element-wise operations over the
activation; GradAlign's penalty backpropagates through the input gradient of every batch-norm
layer, and on the CPU that double backward was the largest part of GradAlign's cost beyond its
passes (bench/RESULTS.md). Here the backward is one autograd Function (torch's own
``native_batch_norm_backward``, so first-order gradients are torch's to the bit) whose backward
is the closed form below: one pass for xh, three products and five per-channel sums, and each
output as two or three fused multiply-adds.

Per channel, over the M = N*H*W entries: xh = (x - mean) * r with r = 1/sqrt(var + eps), and
P(v) = v - mean(v) - xh * mean(v * xh) (symmetric: P is the projection off 1 and xh). The
backward is gI = w r P(gO), gW = sum(gO xh), gB = sum(gO). For upstream ggI, ggW, ggB, with
T = sum(ggI P(gO)), S = sum(ggI xh) and G = sum(gO xh):

    d gO = w r P(ggI) + ggW xh + ggB
    d x  = -(w r^2 / M) (T xh + S P(gO) + G P(ggI)) + ggW r P(gO)
    d w  = r T

(``tests/test_bn_double.py`` checks it against finite differences in float64 and against
torch's double backward in a GradAlign step.)

    with closed_form_batch_norm():
        g = torch.autograd.grad(loss(model(x)), x, create_graph=True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode


def _channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector shaped to broadcast against ``like`` (N, C, ...)."""
    return v.view(1, -1, *([1] * (like.dim() - 2)))


class _BatchNormGrad(torch.autograd.Function):
    """(gO, x, w) -> (gI, gW, gB) of train-mode batch norm, with the closed-form backward of the module docstring."""

    @staticmethod
    def forward(ctx, grad_out, x, weight, mean, invstd, eps):
        ctx.save_for_backward(grad_out, x, weight, mean, invstd)
        return torch.ops.aten.native_batch_norm_backward(grad_out, x, weight, None, None, mean, invstd, True, eps,
                                                         [True, True, True])

    @staticmethod
    @once_differentiable
    def backward(ctx, gg_in, gg_weight, gg_bias):
        grad_out, x, weight, mean, invstd = ctx.saved_tensors
        dims, count = [0, *range(2, x.dim())], x.numel() // x.shape[1]
        r, w = _channel(invstd, x), _channel(weight, x)
        xh = torch.addcmul(-_channel(mean, x) * r, x, r)

        product = torch.empty_like(x)

        def total(v, u=None):  # per-channel sum of v (of v * u), the products written into one buffer
            return (v if u is None else torch.mul(v, u, out=product)).sum(dims, keepdim=True)

        # The per-channel sums, then each output as a sum of per-channel multiples of gO, ggI, xh and 1
        # (P(v) = v - mean(v) - xh * sum(v xh) / M expanded): one allocation and two or three passes each.
        m_out, m_in = total(grad_out) / count, total(gg_in) / count
        g, s = total(grad_out, xh), total(gg_in, xh)
        t = total(gg_in, grad_out) - count * m_out * m_in - g * s / count  # sum(ggI P(gO))
        k = w * r * r / count
        gg_w, gg_b = _channel(gg_weight, x), _channel(gg_bias, x)
        a = w * r
        d_out = torch.addcmul(gg_b - a * m_in, xh, gg_w - a * s / count).addcmul_(gg_in, a)
        alpha, beta = gg_w * r - k * s, -k * g  # d x = alpha P(gO) + beta P(ggI) - k T xh
        gamma = -k * t - (alpha * g + beta * s) / count
        d_x = torch.addcmul(-alpha * m_out - beta * m_in, xh, gamma).addcmul_(grad_out, alpha).addcmul_(gg_in, beta)
        return d_out, d_x, (r * t).flatten(), None, None, None


class _BatchNormTrain(torch.autograd.Function):
    """Train-mode batch norm (running statistics updated as torch's) whose backward is _BatchNormGrad."""

    @staticmethod
    def forward(ctx, x, weight, bias, stats, momentum, eps):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, stats[0], stats[1], True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        g_in, g_weight, g_bias = _BatchNormGrad.apply(grad_out, x, weight, mean, invstd, ctx.eps)
        return g_in, g_weight, g_bias, None, None, None


def _closed_form(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """The closed-form batch norm where it applies (batch statistics, affine, one dtype, no autocast); else None."""
    if (not training or weight is None or bias is None or x.dim() < 2 or weight.dtype != x.dtype
            or torch.is_autocast_enabled(x.device.type)):
        return None
    return _BatchNormTrain.apply(x, weight, bias, (running_mean, running_var), momentum, eps)


class closed_form_batch_norm(TorchFunctionMode):  # noqa: N801  (used as a context manager, like torch's modes)
    """Within the block, train-mode ``F.batch_norm`` (every nn.BatchNorm*d) differentiates its backward in closed
    form; everything else, and batch norm where the closed form does not apply, runs as before."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            out = _closed_form(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)
