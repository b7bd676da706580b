"""MART's and GradAlign's losses against direct formulas; N-FGSM's perturbation against its definition."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import RecordingSGD, TinyNet, blobs, one_thread  # noqa: F401

from robustode.defenses import create_defense
from robustode.defenses.gradalign import misalignment
from robustode.defenses.mart import mart_loss
from robustode.errors import ConfigError
from robustode.training import TrainConfig

EPS = 8 / 255


def mart_by_hand(logits, logits_adv, y, beta):
    """Example by example, as the paper writes it: BCE + beta * KL * (1 - p_y(x))."""
    total_bce, total_kl = 0.0, 0.0
    for i in range(len(y)):
        p, q = logits[i].softmax(0), logits_adv[i].softmax(0)
        wrong = max((k for k in range(len(q)) if k != y[i]), key=lambda k: q[k])
        total_bce += -torch.log(q[y[i]]) - torch.log(1.0001 - q[wrong] + 1e-12)
        kl = sum(p[k] * (torch.log(p[k]) - torch.log(q[k] + 1e-12)) for k in range(len(p)))
        total_kl += kl * (1.0000001 - p[y[i]])
    return total_bce / len(y) + beta * total_kl / len(y)


def test_mart_loss_equals_the_formula_and_keeps_gradients_through_the_natural_branch():
    torch.manual_seed(0)
    logits, logits_adv = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4) * 3
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    logits_adv[0, 0] = 9.0  # an example whose most likely class is its label: the runner-up counts
    loss = mart_loss(logits, logits_adv, y, beta=5.0)
    assert torch.allclose(loss, mart_by_hand(logits, logits_adv, y, 5.0), atol=1e-5)
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad.abs().sum() > 0  # nothing detached: p(x) and the weight 1 - p_y(x) carry gradient


def test_a_mart_step_trains_on_x_and_x_adv_in_train_mode_after_an_eval_mode_attack():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(16)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, args[0].detach().clone())))
    defense = create_defense("mart-3")
    out = defense.train_step(model, x, y, [torch.optim.SGD(model.parameters(), lr=0.0)], lambda: None)
    modes = [training for training, _ in seen]
    assert modes == [False] * 3 + [True, True]  # attack steps in eval mode, then f(x) and f(x')
    (_, clean), (_, adv) = seen[-2], seen[-1]
    assert torch.equal(clean, x) and 0 < (adv - x).abs().max() <= 0.031 + 1e-6
    assert torch.allclose(out.loss, mart_by_hand(model(x), model(adv), y, 5.0), atol=1e-5)


def test_n_fgsm_noise_reaches_k_eps_and_its_step_is_not_projected_back():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(32)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    defense = create_defense("n-fgsm")
    before = copy.deepcopy(model)
    defense.train_step(model, x, y, [torch.optim.SGD(model.parameters(), lr=0.0)], lambda: None)
    noisy, adv = seen
    eta = noisy - x
    assert eta.abs().max() <= 2 * EPS + 1e-6 and eta.abs().max() > 1.9 * EPS  # U(-2 eps, 2 eps)
    assert noisy.min() >= 0 and noisy.max() <= 1
    delta = eta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(before(x + delta), y), delta)
    assert torch.allclose(adv, (noisy + EPS * grad.sign()).clamp(0, 1), atol=1e-7)
    assert (adv - x).abs().max() > EPS + 1e-3  # no projection to the eps-ball
    assert (adv - x).abs().max() <= defense.max_perturbation + 1e-6 and defense.max_perturbation == 3 * EPS


def test_misalignment_is_one_minus_the_mean_cosine_over_examples_with_nonzero_gradients():
    torch.manual_seed(0)
    g1, g2 = torch.randn(5, 3, 2, 2), torch.randn(5, 3, 2, 2)
    g1[1] = 0.0  # dropped, as the authors drop examples with a zero gradient
    kept = [0, 2, 3, 4]
    cosines = [F.cosine_similarity(g1[i].flatten(), g2[i].flatten(), dim=0) for i in kept]
    assert torch.allclose(misalignment(g1, g2), 1 - torch.stack(cosines).mean(), atol=1e-6)
    assert misalignment(torch.zeros(2, 3), torch.ones(2, 3)) == 0.0  # nothing left: no penalty


def test_grad_align_loss_and_its_double_backprop_gradient_match_a_hand_computation():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(16)
    reference = copy.deepcopy(model)
    defense = create_defense("grad-align")
    assert abs(defense.lam - 0.2) < 1e-12  # the authors' rule at 8/255
    opt = RecordingSGD(model.parameters(), lr=0.0)
    torch.manual_seed(1)
    out = defense.train_step(model, x, y, [opt], lambda: None)

    zero = torch.zeros_like(x, requires_grad=True)
    (g1,) = torch.autograd.grad(F.cross_entropy(reference(x + zero), y), zero)
    x_adv = (x + EPS * g1.sign()).clamp(0, 1)
    ce = F.cross_entropy(reference(x_adv), y)
    torch.manual_seed(1)
    eta = ((x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1) - x).requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(reference(x + eta), y), eta, create_graph=True)
    cos = F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1)
    loss = ce + 0.2 * (1 - cos.mean())
    assert torch.allclose(out.loss, loss, atol=1e-6)
    grads = torch.autograd.grad(loss, list(reference.parameters()), retain_graph=True)
    for p, g in zip(model.parameters(), grads):
        assert torch.allclose(opt.seen[0][p], g, atol=1e-6)
    penalty = torch.autograd.grad(cos.mean(), reference.stem[1].weight, retain_graph=True)[0]
    assert penalty.abs().sum() > 0  # the penalty itself reaches the weights (through g2)


def test_grad_align_refuses_torch_compile():
    with pytest.raises(ConfigError, match="double backprop"):
        TrainConfig(compile=True, device="cpu").resolve(create_defense("grad-align"))
