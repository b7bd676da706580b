"""Batch norm's closed-form double backward (robustode.defenses.bn_double) against finite differences and torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustode.defenses import create_defense
from robustode.defenses.bn_double import _BatchNormGrad, closed_form_batch_norm
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
    with closed_form_batch_norm() if closed else torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x, create_graph=True)
    (g * g).sum().backward()
    return g.detach(), [p.grad for p in model.parameters()], [b.clone() for b in model.buffers()], g.grad_fn


def test_the_closed_form_gives_torchs_gradients_and_statistics():
    g_ref, grads_ref, buffers_ref, fn_ref = penalty_gradients(closed=False)
    g, grads, buffers, fn = penalty_gradients(closed=True)
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
    with closed_form_batch_norm(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        names = graph_names(bn(x))
    assert "_BatchNormTrainBackward" not in names
    with closed_form_batch_norm():
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
