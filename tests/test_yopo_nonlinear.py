"""YOPO's nonlinear_layer_one on the built-in models: the WideResNet split after the first BN-ReLU."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import RecordingSGD

import robustode.defenses.yopo as yopo_module
from robustode import models
from robustode.defenses import YOPO
from robustode.defenses.common import clip_delta
from robustode.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

EPS = 8 / 255


def batch(n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def entry_bn(model):
    return model.stages[0].blocks[0].bn1


def yopo_step(model, defense, x, y):
    main, one = defense.optimizers(model, [{"params": list(model.parameters())}], RecordingSGD)
    defense.train_step(model, x, y, [main, one], lambda: None)
    return main, one


@pytest.mark.parametrize("name", ["wrn10_2", "wrn16_2"])  # one block and two blocks in the first stage
def test_composition_is_the_forward_exactly(name):
    torch.manual_seed(0)
    model = models.create(name)
    x, _ = batch()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.rest_nonlinear(model.layer_one_nonlinear(x)), model(x))
    # Train mode: same logits and every BN's running statistics moved identically.
    twin = copy.deepcopy(model).train()
    model.train()
    with torch.no_grad():
        composed, direct = twin.rest_nonlinear(twin.layer_one_nonlinear(x)), model(x)
    assert torch.equal(composed, direct)
    for (key, ours), theirs in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(ours, theirs), key
    assert int(entry_bn(model).num_batches_tracked) == 1


def test_layer_one_nonlinear_is_the_stem_then_the_first_bn_relu():
    model = models.create("wrn10_2").eval()
    x, _ = batch()
    a = model.layer_one_nonlinear(x)
    assert torch.equal(a, F.relu(entry_bn(model)(model.stem(x))))
    assert a.shape == (4, 16, 32, 32) and a.min() == 0  # the ReLU is really inside layer one
    expected = [*model.stem.parameters(), entry_bn(model).weight, entry_bn(model).bias]
    assert [id(p) for p in model.layer_one_nonlinear_parameters()] == [id(p) for p in expected]



@pytest.mark.parametrize("name", ["wrn34_10", "wrn28_10", "wrn40_2"])
def test_wide_wrns_offer_the_split(name):
    with torch.device("meta"):  # parameters only: no memory, no init (the maths is checked on wrn10_2 above)
        model = models.create(name)
    params = model.layer_one_nonlinear_parameters()
    assert [tuple(p.shape) for p in params] == [(16, 3, 3, 3), (16,), (16,)]
    assert params[1] is entry_bn(model).weight and model.stages[0].blocks[0].shortcut.in_channels == 16

def test_yopo_step_on_a_wrn_with_the_nonlinearity_in_layer_one(monkeypatch):
    torch.manual_seed(0)
    model = models.create("wrn10_2").train()
    x, y = batch()
    x[0, 0, :4] = 0.0  # pixels at the box edges, so the [0, 1] projection has something to do
    x[1, 1, :4] = 1.0
    etas = []

    def recording_inner_steps(*args, **kwargs):
        eta = inner_steps(*args, **kwargs)
        etas.append(eta)
        return eta

    inner_steps = yopo_module.inner_steps
    monkeypatch.setattr(yopo_module, "inner_steps", recording_inner_steps)
    bn = entry_bn(model)
    m, n = 2, 3
    main, one = yopo_step(model, YOPO(m=m, n=n, nonlinear_layer_one=True), x, y)
    assert len(etas) == m
    for eta in etas:
        assert eta.abs().max() <= EPS + 1e-7 and eta.abs().max() > EPS / 2
        assert (x + eta).min() >= 0 and (x + eta).max() <= 1
    # Running statistics move in the m full passes only, not in the m * n inner steps or the Hamiltonian passes.
    assert int(bn.num_batches_tracked) == m
    assert all(int(b.num_batches_tracked) == m for b in model.modules() if hasattr(b, "num_batches_tracked"))
    assert set(one.seen[0]) == set(model.layer_one_nonlinear_parameters())
    assert bn.weight not in main.seen[0] and bn.bias not in main.seen[0]


def test_hamiltonian_gradient_reaches_the_batch_norm_inside_layer_one(monkeypatch):
    """m = n = 1 by hand: the layer-one BN's gradient is the CE gradient at eta0 plus d(-H)/dgamma at eta1."""
    torch.manual_seed(0)
    model = models.create("wrn10_2").train()
    x, y = batch()
    eta0 = clip_delta(torch.empty_like(x).uniform_(-EPS, EPS), x, EPS)
    monkeypatch.setattr(yopo_module, "random_start", lambda x_, eps: eta0.clone())
    ref = copy.deepcopy(model)
    bn = entry_bn(ref)
    affine = [bn.weight, bn.bias]

    a0 = ref.layer_one_nonlinear(x + eta0)
    grad_a, *ce_part = torch.autograd.grad(F.cross_entropy(ref.rest_nonlinear(a0), y), [a0, *affine])
    p = -grad_a
    eta = eta0.clone().requires_grad_(True)
    (grad_eta,) = torch.autograd.grad((ref.layer_one_nonlinear(x + eta) * p).sum(), eta)
    eta1 = clip_delta(eta0 - 2 / 255 * grad_eta.sign(), x, EPS)
    hamiltonian_part = torch.autograd.grad(-(ref.layer_one_nonlinear(x + eta1) * p).sum(), affine)

    _, one = yopo_step(model, YOPO(m=1, n=1, nonlinear_layer_one=True), x, y)
    ours = entry_bn(model)
    for param, ce, ham in zip([ours.weight, ours.bias], ce_part, hamiltonian_part):
        assert ham.abs().max() > 0
        assert torch.allclose(one.seen[0][param], ce + ham, rtol=1e-4, atol=1e-7)
        assert not torch.allclose(one.seen[0][param], ce, rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("name", ["preact_resnet18", "wrn16_1", "resnet20", "lm_resnet20"])
def test_identity_first_shortcut_refuses_and_says_why(name):
    with torch.device("meta"):
        model = models.create(name)
    width = model.stages[0].blocks[0].conv1.in_channels
    with pytest.raises(ConfigError, match=rf"{width} -> {width} channels.*identity shortcut.*wrn34_10"):
        YOPO(nonlinear_layer_one=True).optimizers(model, [{"params": list(model.parameters())}], RecordingSGD)
    with pytest.raises(ConfigError, match="not available for"):
        model.layer_one_nonlinear(batch(2)[0])
