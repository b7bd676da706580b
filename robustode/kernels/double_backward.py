"""Batch norm, convolution and ReLU with closed-form double backwards, for double-backprop defenses (GradAlign).

GradAlign's penalty backpropagates through an input gradient, so every layer's backward is itself
differentiated. On the CPU two of torch's double backwards cost far more than their arithmetic
(bench/RESULTS.md):

- Batch norm's: torch differentiates its backward as a composite of element-wise operations over
  the activation. Here the backward is one autograd Function (torch's own
  ``native_batch_norm_backward``, so first-order gradients are torch's to the bit) whose backward
  is the closed form below: its per-channel sums in two passes of torch's reduction kernel (the
  first order's own give the rest), and each output as two or three fused multiply-adds.
- Convolution's: torch takes the weight's part of the double backward as a convolution of the
  upstream gradient with gO, batch and channels swapped (a kernel the size of the image). Here
  the backward is torch's ``convolution_backward`` for the gradients the running backward needs
  (the engine says which), as an autograd Function whose backward is two or three of torch's own
  kernels: for gI = conv^T(gO, w) and gW = corr(x, gO), with upstream ggI, ggW, ggB,

      d gO = conv(ggI, w) + conv(x, ggW) + ggB
      d w  = the weight gradient of a convolution of ggI, given gO
      d x  = the input gradient of a convolution with weight ggW, given gO

- ReLU's: its backward's derivative w.r.t. the saved output is zero wherever it exists; torch writes it
  out as zeros the size of the activation, added into the output's gradient. Here it is left out.

Batch norm, per channel, over the M = N*H*W entries: xh = (x - mean) * r with r =
1/sqrt(var + eps), and P(v) = v - mean(v) - xh * mean(v * xh) (symmetric: P is the projection off
1 and xh). The backward is gI = w r P(gO), gW = sum(gO xh), gB = sum(gO). For upstream ggI, ggW,
ggB, with T = sum(ggI P(gO)), S = sum(ggI xh) and G = sum(gO xh):

    d gO = w r P(ggI) + ggW xh + ggB
    d x  = -(w r^2 / M) (T xh + S P(gO) + G P(ggI)) + ggW r P(gO)
    d w  = r T

(``tests/test_double_backward.py`` checks both against finite differences in float64 and against
torch's double backward in a GradAlign step.)

    with closed_form_double_backward():
        g = torch.autograd.grad(loss(model(x)), x, create_graph=True)

First and second derivatives only: asking the second backward for a graph to differentiate again raises.
Inside the mode torch.func's transforms, forward-mode AD and non-reentrant checkpointing do not run
through these layers (their Functions have no setup_context or jvp); GradAlign uses none of them.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode


def _second_order_only(backward):
    """A double backward's ``backward`` that refuses to be differentiated again: ``once_differentiable`` alone
    attaches its error only when the incoming gradients require grad, so a third derivative through the saved
    tensors would come out silently wrong."""

    once = once_differentiable(backward)

    @functools.wraps(backward)
    def checked(ctx, *grads):
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad
                                           for t in (*grads, *ctx.saved_tensors)):
            raise RuntimeError("closed_form_double_backward covers first and second derivatives only: this backward "
                               "of a backward was asked for a graph (create_graph=True) to differentiate it again; "
                               "run that code outside the mode (GradAlign: closed_form = False)")
        return once(ctx, *grads)

    return checked


def _channel(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel vector shaped to broadcast against ``like`` (N, C, ...)."""
    return v.view(1, -1, *([1] * (like.dim() - 2)))


def _sums(v: torch.Tensor, u: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor) -> tuple:
    """Per channel (sum(v (u - mean) invstd), sum(v)) in one pass: torch's batch-norm backward kernel, whose weight and
    bias gradients are those sums."""
    return torch.ops.aten.native_batch_norm_backward(v, u, None, None, None, mean, invstd, True, 0.0,
                                                     [False, True, True])[1:]


class _BatchNormGrad(torch.autograd.Function):
    """(gO, x, w) -> (gI, gW, gB) of train-mode batch norm, with the closed-form backward of the module docstring."""

    @staticmethod
    def forward(ctx, grad_out, x, weight, mean, invstd, eps):
        ctx.save_for_backward(grad_out, x, weight, mean, invstd)
        grads = torch.ops.aten.native_batch_norm_backward(grad_out, x, weight, None, None, mean, invstd, True, eps,
                                                          [True, True, True])
        ctx.first = (grads[1].detach().clone(), grads[2].detach().clone())  # G = sum(gO xh) and sum(gO), for later
        return grads

    @staticmethod
    @_second_order_only
    def backward(ctx, gg_in, gg_weight, gg_bias):
        grad_out, x, weight, mean, invstd = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        r, w, mu = _channel(invstd, x), _channel(weight, x), _channel(mean, x)
        g, sum_out = (_channel(v, x) for v in ctx.first)
        # The per-channel sums over ggI, two passes of torch's reduction kernel (S = sum(ggI xh), sum(ggI), and
        # sum(ggI gO), the latter as a "batch norm" of gO with mean 0 and invstd 1).
        s, sum_in = (_channel(v, x) for v in _sums(gg_in, x, mean, invstd))
        cross = _channel(_sums(gg_in, grad_out, torch.zeros_like(mean), torch.ones_like(invstd))[0], x)
        m_out, m_in = sum_out / count, sum_in / count
        t = cross - count * m_out * m_in - g * s / count  # sum(ggI P(gO))
        k = w * r * r / count
        gg_w, gg_b = _channel(gg_weight, x), _channel(gg_bias, x)
        a = w * r
        # Each output as per-channel multiples of gO, ggI and x plus a constant (P(v) = v - mean(v) - xh sum(v xh) / M
        # expanded, xh = r x - r mean): a product, then in-place additions (torch.addcmul with a broadcast first
        # operand runs three times slower on the CPU than mul and add_), no activation-sized temporary.
        c = gg_w - a * s / count  # d gO's multiple of xh
        d_out = torch.mul(x, r * c).add_(gg_b - a * m_in - r * mu * c).addcmul_(gg_in, a)
        alpha, beta = gg_w * r - k * s, -k * g  # d x = alpha P(gO) + beta P(ggI) - k T xh
        gamma = -k * t - (alpha * g + beta * s) / count  # d x's multiple of xh
        d_x = torch.mul(x, r * gamma).add_(-alpha * m_out - beta * m_in - r * mu * gamma)
        d_x.addcmul_(grad_out, alpha).addcmul_(gg_in, beta)
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


def _closed_form(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """The closed-form batch norm where it applies (batch statistics over more than one value per channel, affine,
    one dtype, no autocast); else None, and torch's runs (and raises where it does)."""
    x = input
    if (not training or weight is None or bias is None or x.dim() < 2 or x.numel() <= x.shape[1]
            or weight.dtype != x.dtype or torch.is_autocast_enabled(x.device.type)):
        return None
    return _BatchNormTrain.apply(x, weight, bias, (running_mean, running_var), momentum, eps)


_will_execute = getattr(torch._C, "_will_engine_execute_node", None)  # private, as torch.autograd.graph uses it


def _needed(ctx, i: int) -> bool:
    """Whether the running backward uses the gradient of input ``i`` of ``ctx``'s node: torch's own kernels compute
    only those (``autograd.grad`` w.r.t. the input skips the weight's); a custom Function must ask the engine."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None or _will_execute is None:
        return node is not None
    try:
        return _will_execute(node)
    except RuntimeError:  # a leaf autograd.grad() asks for: the engine captures its gradient rather than runs it
        return True


class _ConvolutionGrad(torch.autograd.Function):
    """(gO, x, w) -> (gI, gW, gB) of a convolution, as ``mask`` asks, with the backward of the module docstring."""

    @staticmethod
    def forward(ctx, grad_out, x, weight, conf, mask):
        ctx.save_for_backward(grad_out, x, weight)
        ctx.conf = conf
        return torch.ops.aten.convolution_backward(grad_out, x, weight, *conf, mask)

    @staticmethod
    @_second_order_only
    def backward(ctx, gg_in, gg_weight, gg_bias):
        grad_out, x, weight = ctx.saved_tensors
        _, *geometry = ctx.conf  # bias sizes, then stride, padding, dilation, transposed, output padding, groups
        d_out = d_x = d_weight = None
        if _needed(ctx, 0):
            terms = [torch.convolution(a, b, None, *geometry) for a, b in ((gg_in, weight), (x, gg_weight))
                     if b is not None and a is not None]
            if gg_bias is not None:
                terms.append(_channel(gg_bias, grad_out))
            d_out = sum(terms[1:], terms[0]) if terms else None
        if gg_weight is not None and _needed(ctx, 1):
            d_x = torch.ops.aten.convolution_backward(grad_out, x, gg_weight, None, *geometry, [True, False, False])[0]
        if gg_in is not None and _needed(ctx, 2):
            d_weight = torch.ops.aten.convolution_backward(grad_out, gg_in, weight, None, *geometry,
                                                           [False, True, False])[1]
        if d_out is not None and d_out.shape != grad_out.shape:  # ggB alone: a per-channel broadcast
            d_out = d_out.expand_as(grad_out).contiguous()
        return d_out, d_x, d_weight, None, None


class _Convolution(torch.autograd.Function):
    """A convolution (torch's kernel) whose backward is _ConvolutionGrad."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        geometry = (stride, padding, dilation, False, [0] * len(stride), groups)
        ctx.save_for_backward(x, weight)
        ctx.conf = (None if bias is None else list(bias.shape), *geometry)
        return torch.convolution(x, weight, bias, *geometry)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        mask = [_needed(ctx, 0), _needed(ctx, 1), ctx.conf[0] is not None and _needed(ctx, 2)]
        return (*_ConvolutionGrad.apply(grad_out, x, weight, ctx.conf, mask), None, None, None, None)


_CONVOLUTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}


def _convolution(dims, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The closed-form convolution where it applies (a batch, numeric padding); else None. Under autocast it runs
    in autocast's precision, as torch's convolution does there (float64 operands stay float64, as there)."""
    x = input
    if isinstance(padding, str) or x.dim() != dims + 2:
        return None
    if torch.is_autocast_enabled(x.device.type):
        get_dtype = getattr(torch, "get_autocast_dtype", None)
        if get_dtype is None:
            return None
        low = get_dtype(x.device.type)
        x, weight, bias = (t if t is None or not t.is_floating_point() or t.dtype == torch.float64 else t.to(low)
                           for t in (x, weight, bias))
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        return None

    def tup(v):
        return [int(i) for i in v] if isinstance(v, (tuple, list)) else [int(v)] * dims

    return _Convolution.apply(x, weight, bias, tup(stride), tup(padding), tup(dilation), int(groups))


class _ReluGrad(torch.autograd.Function):
    """gO -> gO where the ReLU's output is positive: torch's threshold_backward. Its own backward is the same mask;
    the derivative w.r.t. the output is zero wherever it exists, and is left out (torch writes a zero tensor)."""

    @staticmethod
    def forward(ctx, grad_out, out):
        ctx.save_for_backward(out)
        return torch.ops.aten.threshold_backward(grad_out, out, 0)

    @staticmethod
    @_second_order_only
    def backward(ctx, gg_in):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(gg_in, out, 0), None


class _Relu(torch.autograd.Function):
    """A ReLU (torch's kernel) whose backward is _ReluGrad."""

    @staticmethod
    def forward(ctx, x):
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (out,) = ctx.saved_tensors
        return _ReluGrad.apply(grad_out, out)


def _relu(input, inplace=False):
    """The ReLU whose double backward writes no zeros, where it applies (not in place); else None."""
    return None if inplace or not isinstance(input, torch.Tensor) else _Relu.apply(input)


_RELUS = (F.relu, torch.relu, torch.Tensor.relu)


class closed_form_double_backward(TorchFunctionMode):  # noqa: N801  (used as a context manager, like torch's modes)
    """Within the block, train-mode ``F.batch_norm`` (every nn.BatchNorm*d), ``F.conv1d/2d/3d`` (nn.Conv*d) and
    ``F.relu`` (nn.ReLU, not in place; ``torch.relu``, ``Tensor.relu``) differentiate their backward in closed form;
    everything else, and the layers where the closed form does not apply, runs as before. ``batch_norm=False``,
    ``convolution=False`` or ``relu=False`` leaves that layer to torch."""

    def __init__(self, batch_norm: bool = True, convolution: bool = True, relu: bool = True):
        super().__init__()
        self.batch_norm, self.convolution, self.relu = batch_norm, convolution, relu

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = None
        if self.batch_norm and func is F.batch_norm:
            out = _closed_form(*args, **kwargs)
        elif self.convolution and func in _CONVOLUTIONS:
            out = _convolution(_CONVOLUTIONS[func], *args, **kwargs)
        elif self.relu and func in _RELUS:
            out = _relu(*args, **kwargs)
        return func(*args, **kwargs) if out is None else out
