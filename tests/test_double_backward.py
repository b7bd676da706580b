"""The closed-form double backwards (robustode.kernels.double_backward) against finite differences and torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustode.defenses import create_defense
from robustode.kernels.double_backward import _BatchNormGrad, closed_form_double_backward
from robustode.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (6, 4), (3, 2, 4)])
def test_the_backward_of_the_backward_matches_finite_differences(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    def backward(grad_out, x, w):  # batch norm's (gI, gW, gB), its statistics taken from x each call
        _, mean, invstd = torch.native_batch_norm(x.detach(), w.detach(), None, None, None, True, 0.1, 1e-5)
        return _BatchNormGrad.apply(grad_out, x, w, mean, invstd, 1e-5)

    assert torch.autograd.gradcheck(backward, (grad_out, x, w))


def conv_bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def penalty_gradients(closed: bool):
    """An input gradient taken with create_graph and a penalty on it backpropagated, as GradAlign does."""
    torch.manual_seed(1)
    model = conv_bn_net().train()
    x = torch.rand(16, 3, 8, 8, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    with closed_form_double_backward() if closed else torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x, create_graph=True)
    (g * g).sum().backward()
    return g.detach(), [p.grad for p in model.parameters()], [b.clone() for b in model.buffers()]


def test_the_closed_form_gives_torchs_gradients_and_statistics():
    g_ref, grads_ref, buffers_ref = penalty_gradients(closed=False)
    g, grads, buffers = penalty_gradients(closed=True)
    assert torch.equal(g, g_ref)  # first order: torch's own backward kernel
    assert all(torch.equal(a, b) for a, b in zip(buffers, buffers_ref))  # running statistics, batches tracked
    for a, b in zip(grads, grads_ref):  # second order: the same sums in another order
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    assert grads_ref[2].abs().max() > 1e-3  # the first batch norm's weight: a gradient that can be wrong


def graph_names(t: torch.Tensor) -> set[str]:
    seen, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in seen:
            seen.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return seen


@pytest.mark.parametrize("case", ["eval", "not affine", "autocast"])
def test_batch_norm_the_closed_form_does_not_cover_runs_as_torchs(case):
    bn = nn.BatchNorm2d(4, affine=case != "not affine").train(case != "eval")
    x = torch.randn(8, 4, 3, 3, requires_grad=True)
    with closed_form_double_backward(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        names = graph_names(bn(x))
    assert "_BatchNormTrainBackward" not in names
    with closed_form_double_backward():
        assert "_BatchNormTrainBackward" in graph_names(nn.BatchNorm2d(4).train()(x))


def test_gradalign_steps_alike_with_and_without_the_closed_form():
    def one_step(closed: bool):
        torch.manual_seed(2)
        model = create("resnet20", num_classes=10).train()
        defense = create_defense("grad-align")
        defense.closed_form = closed
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
        out = defense.train_step(model, x, y, [opt], lambda: None)
        return out.loss, [p.detach().clone() for p in model.parameters()]

    loss_ref, params_ref = one_step(False)
    loss, params = one_step(True)
    assert torch.equal(loss, loss_ref)  # the loss is computed before the double backward
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(params, params_ref))


def conv_case(dims: int, groups: int, bias: bool):
    """A float64 convolution of ``dims`` spatial dimensions with stride, padding and dilation, and its inputs."""
    torch.manual_seed(3)
    size = (5, 6, 4)[:dims]
    x = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, *([3] * dims), dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True) if bias else None
    conv = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]

    def run(x, w, *b):
        with closed_form_double_backward():
            return conv(x, w, b[0] if b else None, stride=2 if dims == 2 else 1, padding=1,
                        dilation=2 if dims == 1 else 1, groups=groups)

    return run, (x, w) + ((b,) if bias else ())


@pytest.mark.parametrize("dims, groups, bias", [(1, 1, True), (2, 1, False), (2, 2, True), (3, 1, True)])
def test_the_convolutions_double_backward_matches_finite_differences(dims, groups, bias):
    run, inputs = conv_case(dims, groups, bias)
    assert "_ConvolutionBackward" in graph_names(run(*inputs))  # the closed form, not torch's node
    assert torch.autograd.gradgradcheck(run, inputs)


def test_the_relus_double_backward_matches_finite_differences():
    torch.manual_seed(4)
    x = torch.randn(3, 5, dtype=torch.float64)
    x = (x + x.sign() * 0.1).requires_grad_()  # away from the kink, where finite differences hold

    def run(x):
        with closed_form_double_backward():
            return F.relu(x) * x  # a second derivative that is not zero

    assert "_ReluBackward" in graph_names(run(x))
    assert torch.autograd.gradgradcheck(run, (x,))


class ConvolutionMasks(torch.utils._python_dispatch.TorchDispatchMode):
    """The output masks of every convolution_backward that runs in the block."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            self.masks.append(tuple(args[-1]))
        return func(*args, **(kwargs or {}))


def test_an_input_gradient_computes_no_weight_gradient():
    torch.manual_seed(5)
    model = conv_bn_net().train()
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    with closed_form_double_backward():
        loss = model(x).square().sum()
    with ConvolutionMasks() as seen:
        torch.autograd.grad(loss, x, create_graph=True)
    assert seen.masks == [(True, False, False)] * 2  # as torch's own node: the input's gradient only


@pytest.mark.parametrize("case", ["string padding", "unbatched", "switched off"])
def test_convolutions_the_closed_form_does_not_cover_run_as_torchs(case):
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    conv = nn.Conv2d(3, 4, 3, padding="same" if case == "string padding" else 1)
    with closed_form_double_backward(convolution=case != "switched off"):
        names = graph_names(conv(x[0] if case == "unbatched" else x))
    assert "ConvolutionBackward0" in names and "_ConvolutionBackward" not in names
    with closed_form_double_backward():
        assert "_ConvolutionBackward" in graph_names(nn.Conv2d(3, 4, 3, padding=1)(x))


@pytest.mark.parametrize("case", ["in place", "switched off"])
def test_relus_the_closed_form_does_not_cover_run_as_torchs(case):
    x = torch.randn(2, 3, requires_grad=True)
    with closed_form_double_backward(relu=case != "switched off"):
        names = graph_names(F.relu(x * 1, inplace=case == "in place"))
        for relu in (F.relu, torch.relu, torch.Tensor.relu, nn.ReLU()):
            assert "_ReluBackward" in graph_names(relu(x)) or case == "switched off"
    assert "_ReluBackward" not in names and names & {"ReluBackward0", "ThresholdBackward0"}


def test_a_convolution_under_autocast_runs_in_autocasts_precision():
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    grads = []
    for closed in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16), (closed_form_double_backward() if closed
                                                           else torch.enable_grad()):
            out = conv(x)
            (g,) = torch.autograd.grad(out.float().square().sum(), x, create_graph=True)
        assert out.dtype == torch.bfloat16
        assert ("_ConvolutionBackward" in graph_names(out)) == closed
        g.square().sum().backward()
        grads.append((out.detach(), g.detach(), conv.weight.grad.clone()))
        conv.weight.grad = None
    (out_ref, g_ref, w_ref), (out, g, w) = grads
    assert torch.equal(out, out_ref)  # torch's kernel on the same bfloat16 operands
    assert torch.allclose(g, g_ref) and torch.allclose(w, w_ref, rtol=2e-2, atol=1e-2)


def test_float64_convolutions_under_autocast_stay_float64_as_torchs():
    torch.manual_seed(7)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.conv2d(x, w)
        with closed_form_double_backward():
            out = F.conv2d(x, w)
    assert ref.dtype == out.dtype == torch.float64 and "_ConvolutionBackward" in graph_names(out)
    assert torch.equal(out, ref)


def test_the_input_given_by_keyword_takes_the_closed_form():
    torch.manual_seed(8)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3)
    bn = nn.BatchNorm2d(3).train()
    with closed_form_double_backward():
        outs = {"_ConvolutionBackward": (F.conv2d(input=x, weight=w, padding=1), F.conv2d(x, w, padding=1)),
                "_ReluBackward": (torch.relu(input=x), F.relu(x)),
                "_BatchNormTrainBackward": (F.batch_norm(input=x, running_mean=bn.running_mean.clone(),
                                                         running_var=bn.running_var.clone(), weight=bn.weight,
                                                         bias=bn.bias, training=True),
                                            bn(x))}
    for node, (by_keyword, by_position) in outs.items():
        assert node in graph_names(by_keyword) and torch.equal(by_keyword, by_position)


@pytest.mark.parametrize("layer", ["conv", "batch norm", "relu"])
@pytest.mark.parametrize("third", ["constant cotangent", "cotangent with a graph"])
def test_a_third_derivative_through_the_closed_form_raises(layer, third):
    """once_differentiable alone lets a third derivative through the saved tensors come out silently wrong."""
    torch.manual_seed(9)
    module = {"conv": nn.Conv2d(2, 2, 3, padding=1), "batch norm": nn.BatchNorm2d(2).train(), "relu": nn.ReLU()}[layer]
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    module = module.double()
    with closed_form_double_backward():
        (g,) = torch.autograd.grad((module(x) ** 3).sum(), x, create_graph=True)
        h = g.sum() if third == "constant cotangent" else g.square().sum()
        with pytest.raises(RuntimeError, match="first and second derivatives only"):
            torch.autograd.grad(h, x, create_graph=True)
    (second,) = torch.autograd.grad(h, x)  # without a graph: the second derivative, as torch's
    (g_ref,) = torch.autograd.grad((module(x) ** 3).sum(), x, create_graph=True)
    (second_ref,) = torch.autograd.grad(g_ref.sum() if third == "constant cotangent" else g_ref.square().sum(), x)
    assert torch.allclose(second, second_ref, rtol=1e-9, atol=1e-12)


def test_batch_norm_over_one_value_per_channel_raises_as_torchs():
    bn = nn.BatchNorm1d(3).train()
    with closed_form_double_backward(), pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(torch.randn(1, 3, requires_grad=True))
    assert torch.isfinite(bn.running_var).all()
