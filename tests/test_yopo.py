"""YOPO: the layer-one identity, the Hamiltonian gradient by hand, accumulation, the optimizers; layer splits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import Counter, RecordingSGD, TinyNet, TinyNonlinear, blobs, groups, one_thread  # noqa: F401
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

import robustode.defenses.yopo as yopo_module
from robustode.defenses import YOPO, create_defense
from robustode.defenses.common import clip_delta
from robustode.defenses.yopo import hamiltonian, inner_steps
from robustode.errors import ConfigError
from robustode.split import split_model

EPS = 8 / 255


def costate(model, x, eta, y):
    """p = -dL/dz at z = layer_one(x + eta)."""
    z = model.layer_one(x + eta)
    (grad_z,) = torch.autograd.grad(F.cross_entropy(model.rest(z), y), z)
    return -grad_z


def test_layer_one_identity_rebuilds_the_full_input_gradient():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(8)
    eta = clip_delta(torch.empty_like(x).uniform_(-EPS, EPS), x, EPS).requires_grad_(True)
    (full,) = torch.autograd.grad(F.cross_entropy(model(x + eta), y), eta)
    p = costate(model, x, eta.detach(), y)
    (through_layer_one,) = torch.autograd.grad(hamiltonian(model.layer_one, x, eta, p), eta)
    assert full.abs().max() > 0
    assert torch.allclose(through_layer_one, -full, rtol=1e-5, atol=1e-9)


def run_step(model, defense, x, y, lr=0.0):
    main, one = defense.optimizers(model, groups(model), lambda g: RecordingSGD(g, lr=lr))
    steps = Counter()
    out = defense.train_step(model, x, y, [main, one], steps)
    return out, main, one, steps


def test_layer_one_gets_cross_entropy_and_hamiltonian_gradients(monkeypatch):
    torch.manual_seed(0)
    model = TinyNet(normalize=False).train()  # layer one = one conv without bias: z = W * u
    x, y = blobs(8)
    eta0 = clip_delta(torch.empty_like(x).uniform_(-EPS, EPS), x, EPS)
    monkeypatch.setattr(yopo_module, "random_start", lambda x_, eps: eta0.clone())
    conv = model.stem[1]
    W = conv.weight.detach().clone()

    # By hand, m = 1, n = 1: CE gradient at u0 = x + eta0, one inner step, Hamiltonian gradient at x + eta1.
    u0 = x + eta0
    z0 = F.conv2d(u0, W, padding=1).requires_grad_(True)
    loss0 = F.cross_entropy(model.rest(z0), y)
    rest_params = list(model.body.parameters())
    grads = torch.autograd.grad(loss0, [z0, *rest_params])
    p = -grads[0]
    dH_deta = conv2d_input(x.shape, W, p, padding=1)
    eta1 = clip_delta(eta0 - 2 / 255 * dH_deta.sign(), x, EPS)
    ce_part = conv2d_weight(u0, W.shape, -p, padding=1)
    hamiltonian_part = conv2d_weight(x + eta1, W.shape, -p, padding=1)  # d(-H)/dW, p fixed

    out, main, one, steps = run_step(model, YOPO(m=1, n=1), x, y)
    got = one.seen[0][conv.weight]
    assert torch.allclose(got, ce_part + hamiltonian_part, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(got, ce_part, rtol=1e-2, atol=1e-5)  # the Hamiltonian part is really there
    for param, expected in zip(rest_params, grads[1:]):
        assert torch.allclose(main.seen[0][param], expected, rtol=1e-4, atol=1e-7)
    assert torch.allclose(out.loss, loss0.detach(), atol=1e-6)
    assert (len(main.seen), len(one.seen), steps.n) == (1, 1, 1)


@pytest.mark.parametrize("closed_form", [False, True])
def test_weight_gradients_accumulate_over_the_m_passes(closed_form):
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(8)
    pieces = {p: [] for p in model.parameters()}
    for param in model.parameters():
        param.register_hook(lambda g, param=param: pieces[param].append(g.clone()))
    m = 3
    defense = YOPO(m=m, n=2)
    defense.closed_form = closed_form
    _, main, one, steps = run_step(model, defense, x, y)
    at_step = {**main.seen[0], **one.seen[0]}
    layer_one = set(model.stem.parameters())
    # Layer one, autograd path: m CE + m Hamiltonian pieces. Closed form: each Hamiltonian joins the next
    # pass's CE backward (same eta), the last one comes alone: m + 1 pieces.
    stem_pieces = m + 1 if closed_form else 2 * m
    assert defense.last_path == ("closed-form" if closed_form else "autograd")
    for param, parts in pieces.items():
        assert len(parts) == (stem_pieces if param in layer_one else m)
        assert torch.allclose(at_step[param], torch.stack(parts).sum(0), rtol=1e-5, atol=1e-8)
    assert (len(main.seen), len(one.seen), steps.n) == (1, 1, 1)


def test_linear_layer_one_n_steps_equal_one_step_of_n_sigma():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(8)
    p = costate(model, x, torch.zeros_like(x), y)
    sigma, n = 0.01, 4
    # Interior: x is far from 0 and 1 relative to n * sigma and eps is large, so nothing clips.
    inner = x * 0.4 + 0.3
    eta0 = torch.zeros_like(inner)
    many = inner_steps(model.layer_one, inner, eta0, p, steps=n, sigma=sigma, eps=0.5)
    once = inner_steps(model.layer_one, inner, eta0, p, steps=1, sigma=n * sigma, eps=0.5)
    assert torch.allclose(many, once, atol=1e-6)
    assert many.abs().max() == pytest.approx(n * sigma, rel=1e-5)
    # Clipped: eps < n * sigma and x reaches 0 and 1, so the projection bites; n steps still equal one big
    # step followed by one projection.
    eps = 2.5 * sigma
    eta0 = clip_delta(torch.empty_like(x).uniform_(-eps, eps), x, eps)
    many = inner_steps(model.layer_one, x, eta0, p, steps=n, sigma=sigma, eps=eps)
    once = inner_steps(model.layer_one, x, eta0, p, steps=1, sigma=n * sigma, eps=eps)
    probe = torch.zeros_like(x).requires_grad_(True)
    (constant,) = torch.autograd.grad(hamiltonian(model.layer_one, x, probe, p), probe)  # W^T p, any eta
    assert torch.allclose(many, once, atol=1e-6)
    assert torch.allclose(many, clip_delta(eta0 - n * sigma * constant.sign(), x, eps), atol=1e-6)
    assert (many.abs() - eps).abs().lt(1e-6).float().mean() > 0.5


def test_optimizers_split_layer_one_and_keep_group_settings():
    model = TinyNet()
    stem, linear = model.stem[1], model.body[4]
    bn = model.body[0]
    param_groups = [{"params": [stem.weight, linear.weight], "weight_decay": 5e-4},
                    {"params": [bn.weight, bn.bias, linear.bias], "weight_decay": 0.0}]
    made = []
    main, one = YOPO().optimizers(model, param_groups, lambda g: made.append(g) or g)
    assert [[id(p) for p in g["params"]] for g in main] == [[id(linear.weight)],
                                                          [id(bn.weight), id(bn.bias), id(linear.bias)]]
    assert [g["weight_decay"] for g in main] == [5e-4, 0.0]
    assert len(one) == 1 and one[0]["params"] == [stem.weight] and one[0]["weight_decay"] == 5e-4


def test_main_lr_is_scaled_by_four_over_m():
    for m in (1, 3, 5, 8):
        assert create_defense(f"yopo-{m}-3").preset.lr == pytest.approx(0.1 * 4 / m)


def test_nonlinear_layer_one_keeps_batch_norm_statistics_frozen_in_the_inner_steps():
    torch.manual_seed(0)
    model = TinyNonlinear().train()
    x, y = blobs(8)
    defense = YOPO(m=2, n=3, nonlinear_layer_one=True)
    _, main, one, _ = run_step(model, defense, x, y)
    first_bn = model.body[0]
    assert int(first_bn.num_batches_tracked) == 2  # the m full passes only, not the 2 * (3 + 1) inner ones
    assert first_bn.weight in one.seen[0] and first_bn.weight not in main.seen[0]
    with pytest.raises(ConfigError, match="does not support nonlinear_layer_one.*layer_one_nonlinear"):
        run_step(TinyNet(), defense, x, y)


def test_split_model_contract_and_children():
    model = TinyNet().eval()
    split = split_model(model)
    x, _ = blobs(4)
    assert torch.equal(split(x), model(x)) and split.layer_one_params == list(model.stem.parameters())
    assert split.module is model.stem and split.description == "layer one: stem (the model's layer_one())"
    assert split_model(TinyNonlinear(), nonlinear=True).module is None  # no one module runs that layer one
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    split = split_model(seq, first="0", example=x)
    assert torch.equal(split(x), seq(x)) and split.layer_one_params == list(seq[0].parameters())
    assert split.module is seq[0] and split.description == "layer one: 0 (first=)"
    z = torch.randn(2, 4, 6, 6, requires_grad=True)
    assert torch.equal(split.rest(z), seq[1:](z))


class Doubling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        return self.head(2 * self.conv(x))  # not its children in order


def test_split_model_traces_a_forward_that_is_not_its_children_in_order():
    x, _ = blobs(4)
    model = Doubling().eval()
    split = split_model(model, example=x)
    assert split.description == "layer one: conv" and split.module is not None
    assert split.layer_one_params == list(model.conv.parameters())
    assert torch.equal(split(x), model(x))


def test_split_model_with_first_says_what_to_add():
    x, _ = blobs(4)
    with pytest.raises(ConfigError, match=r"does not reproduce Doubling's forward in eval mode.*define layer_one and "
                                          r"rest on the model"):
        split_model(Doubling(), first="conv", example=x)
    with pytest.raises(ConfigError, match="'head' is not the first submodule.*conv, head"):
        split_model(Doubling(), first="head")
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 3))  # the Linear cannot take a feature map
    with pytest.raises(ConfigError, match=r"^Sequential fails on a batch of shape \(4, 3, 8, 8\) \(RuntimeError"):
        split_model(seq, first="0", example=x)


def test_yopo_trains_a_custom_sequential_model_named_by_its_first_child():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = blobs(8)
    defense = create_defense("yopo-2-2", first="0")
    assert defense.prepare(seq, x) == "layer one: 0 (first=)"
    main, one = defense.optimizers(seq, groups(seq), lambda g: RecordingSGD(g, lr=0.1))
    before = seq[0].weight.detach().clone()
    out = defense.train_step(seq, x, y, [main, one], lambda: None)
    assert torch.isfinite(out.loss) and not torch.equal(before, seq[0].weight)
    assert set(one.seen[0]) == {seq[0].weight}
