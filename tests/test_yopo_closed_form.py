"""YOPO's closed form for an affine layer one: the same eta and gradients as the autograd path, and when it applies."""

from __future__ import annotations

import copy
from contextlib import nullcontext
from unittest.mock import patch

import pytest
import torch
from defense_fixtures import RecordingSGD, TinyNet, TinyNonlinear, blobs, groups, one_thread  # noqa: F401
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import robustode.defenses.yopo as yopo
from robustode import models
from robustode.models.solver import ode_blocks
from robustode.defenses import YOPO
from robustode.models.contract import LayerOneModel
from robustode.split.affine import is_affine


def registered() -> list[str]:
    """Every registered model name; a family (wrnD_K) by its smallest member, wrn10_1."""
    return [e.name if e.pattern is None else "wrn10_1" for e in models.registry.entries("*")]


def representatives() -> list[str]:
    """The smallest registered model of each (class, layer one) pair: every distinct layer one, each rest class."""
    smallest = {}
    with torch.device("meta"):
        for name in registered():
            model = models.create(name)
            key = (type(model).__name__, repr(model.stem))
            size = models.count_parameters(model)
            if key not in smallest or size < smallest[key][0]:
                smallest[key] = (size, name)
    return sorted(name for _, name in smallest.values())


def batch(shape=(3, 32, 32), n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=g)
    x[0, 0, :2] = 0.0  # pixels on the box edges, so the [0, 1] projection has work to do
    x[-1, 1, :2] = 1.0
    return x, torch.randint(0, 3, (n,), generator=g)


def recording(etas: list, fn):
    def record(*args, **kwargs):
        etas.append(fn(*args, **kwargs).detach().clone())
        return etas[-1]

    return record


def one_step(model, x, y, closed_form: bool, autocast: bool = False, m: int = 2, n: int = 3, **kw) -> dict:
    """One YOPO step on a copy of ``model``: its path, its etas (start, then after each pass's inner steps),
    the gradients, the buffers after."""
    model = copy.deepcopy(model).train()
    defense = YOPO(m=m, n=n, **kw)
    defense.closed_form = closed_form
    defense.prepare(model, x[:2])  # as fit does: the split is found on the training images' shape
    main, one = defense.optimizers(model, groups(model), RecordingSGD)
    etas = []
    torch.manual_seed(1)  # the same random start on both paths
    with (torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext(),
          patch.object(yopo, "random_start", recording(etas, yopo.random_start)),
          patch.object(yopo, "inner_steps", recording(etas, yopo.inner_steps)),
          patch.object(yopo, "sign_steps", recording(etas, yopo.sign_steps))):
        out = defense.train_step(model, x, y, [main, one], lambda: None)
    assert len(etas) == m + 1
    grads = {**main.seen[0], **one.seen[0]}
    names = {p: name for name, p in model.named_parameters()}
    return {"path": defense.last_path, "etas": etas, "loss": out.loss,
            "grads": {names[p]: g for p, g in grads.items()}, "buffers": {k: v.float() for k, v in
                                                                         model.state_dict().items()}}


def assert_same(a: dict, b: dict, layer_one: set, tol: float = 1e-6) -> None:
    """The same etas, loss, buffers and gradients after layer one, bit for bit; layer one's gradients to ``tol``.

    Layer one's gradient is the one sum taken in another order: the closed form adds the cotangents of the
    Hamiltonian and the next pass's loss before one weight-gradient product, the autograd path adds two
    products. The tolerance is relative to the gradient's largest entry.
    """
    assert len(a["etas"]) == len(b["etas"])
    for u, v in zip(a["etas"], b["etas"]):
        assert u.abs().max() > 0 and torch.equal(u, v)
    assert torch.equal(a["loss"], b["loss"])
    for key, value in a["buffers"].items():
        assert torch.equal(value, b["buffers"][key]), key
    assert a["grads"].keys() == b["grads"].keys() and layer_one <= a["grads"].keys()
    for key, g in a["grads"].items():
        expected = b["grads"][key]
        if key in layer_one:
            assert (g - expected).abs().max() <= tol * expected.abs().max(), key
        else:
            assert torch.equal(g, expected), key


def stem(model: nn.Module, name: str = "stem") -> set:
    """The names of layer one's parameters, layer one being the child ``name``."""
    return {f"{name}.{key}" for key, _ in getattr(model, name).named_parameters()}


def layer_one_names(model: nn.Module) -> set:
    """The names (as ``named_parameters`` gives them) of the model's layer-one parameters: a model whose stem
    holds modules registered elsewhere too (RobustBench's names for dm_wrn) names them there."""
    names = {p: name for name, p in model.named_parameters()}
    return {names[p] for p in model.layer_one_parameters()}


@pytest.mark.parametrize("name", representatives())
def test_closed_form_equals_the_autograd_path_on_the_built_in_models(name):
    torch.manual_seed(0)
    model = models.create(name, num_classes=3)
    x, y = batch(model.input_shape)
    closed, reference = one_step(model, x, y, True), one_step(model, x, y, False)
    assert (closed["path"], reference["path"]) == ("closed-form", "autograd")
    # A neural ODE's cotangent reaches layer one through a solve of many steps, and dm_wrn28_10's through 28
    # SiLU layers of width 10: their float32 sums in the two orders part by up to 1.2e-6 and 1.07e-6 of the
    # largest entry (measured); the other models stay within 1e-6.
    deep = ode_blocks(model) or name == "dm_wrn28_10"
    assert_same(closed, reference, layer_one_names(model), tol=4e-6 if deep else 1e-6)


def flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("m, n", [(1, 1), (2, 4), (3, 2)])
def test_the_closed_form_costs_m_full_passes_and_one_layer_one_product(m, n):
    """F a forward, S the stem's: closed form m * 3F + S, whatever n; autograd m * (3F - S + 2 (n + 1) S).

    Each closed-form pass is a natural pass (3F - S) plus the vector-Jacobian product through the stem (S);
    the last Hamiltonian's weight gradient is one product (S) and the others ride on the next pass.
    """
    torch.manual_seed(0)
    model = models.create("resnet20").train()
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    full, stem = flops(lambda: model(x)), flops(lambda: model.stem(x))
    for closed_form, expected in ((True, m * 3 * full + stem), (False, m * (3 * full - stem + 2 * (n + 1) * stem))):
        defense = YOPO(m=m, n=n)
        defense.closed_form = closed_form
        optimizers = defense.optimizers(model, groups(model), RecordingSGD)
        defense.split(model, x)  # the affinity check's two layer-one forwards are not part of a step
        assert flops(lambda: defense.train_step(model, x, y, optimizers, lambda: None)) == expected


def test_every_registered_model_takes_the_closed_form():
    with torch.device("meta"):
        stems = {name: models.create(name).stem for name in registered()}
    assert [name for name, stem in stems.items() if not is_affine(stem)] == []


def test_closed_form_under_bf16_autocast_matches_the_autograd_path():
    torch.manual_seed(0)
    model = models.create("resnet20", num_classes=3)
    x, y = batch()
    closed = one_step(model, x, y, True, autocast=True)
    reference = one_step(model, x, y, False, autocast=True)
    assert closed["path"] == "closed-form"
    # The same etas bit for bit; bf16 keeps 8 significant bits (2^-8 = 0.4%), and the summed cotangents
    # round to them before the layer-one weight gradient.
    assert_same(closed, reference, stem(model), tol=1e-2)


class ScaledStem(nn.Module):
    """An affine layer one no built-in model has: input scaling, conv with bias, a buffer, a permute, a shift."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.register_buffer("gain", torch.linspace(0.5, 1.5, 6).view(1, 6, 1, 1))
        self.shift = nn.Parameter(torch.randn(6))

    def forward(self, x):
        return (self.conv(2 * x - 1) * self.gain).permute(0, 2, 3, 1) + self.shift / 2


class CustomNet(LayerOneModel):
    input_shape = (3, 8, 8)

    def __init__(self, stem: nn.Module, channels_last: bool = True):
        super().__init__()
        self.stem, self.channels_last = stem, channels_last
        self.body = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                  nn.Linear(24, 3))

    def rest(self, z):
        return self.body(z.permute(0, 3, 1, 2) if self.channels_last else z)


def test_closed_form_equals_the_autograd_path_on_a_custom_affine_stem():
    torch.manual_seed(0)
    model = CustomNet(ScaledStem())
    x, y = blobs(4)
    closed, reference = one_step(model, x, y, True, m=3, n=2), one_step(model, x, y, False, m=3, n=2)
    assert closed["path"] == "closed-form"
    assert closed["grads"]["stem.shift"].abs().max() > 0
    assert_same(closed, reference, stem(model))


def test_closed_form_on_a_sequential_model_named_by_its_first_child():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = blobs(4)
    closed, reference = one_step(seq, x, y, True, first="0"), one_step(seq, x, y, False, first="0")
    assert closed["path"] == "closed-form"
    assert_same(closed, reference, stem(seq, "0"))


class ReluStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)).permute(0, 2, 3, 1)


class Overridden(TinyNet):
    def layer_one(self, x):
        return torch.tanh(super().layer_one(x))  # the stem is affine, layer one is not


class Undeclared(CustomNet):
    layer_one_is_affine = False


def test_a_layer_one_not_proven_affine_takes_the_autograd_path():
    x, y = blobs(4)
    torch.manual_seed(0)
    cases = [(TinyNonlinear(), {"nonlinear_layer_one": True}), (CustomNet(ReluStem()), {}), (Overridden(), {}),
             (Undeclared(ScaledStem()), {})]
    for model, kw in cases:
        assert one_step(model, x, y, True, **kw)["path"] == "autograd", type(model).__name__
    assert one_step(TinyNet(), x, y, True)["path"] == "closed-form"


class BranchingStem(ScaledStem):
    def forward(self, x):
        if x.shape[1] != 3:  # data-dependent control flow: torch.fx cannot trace it
            raise ValueError("3 channels")
        return super().forward(x)


class Declared(CustomNet):
    def layer_one_is_affine(self):
        return True


def test_a_model_may_declare_its_layer_one_affine():
    torch.manual_seed(0)
    x, y = blobs(4)
    assert one_step(CustomNet(BranchingStem()), x, y, True)["path"] == "autograd"  # untraceable: not proven
    model = Declared(BranchingStem())
    closed, reference = one_step(model, x, y, True), one_step(model, x, y, False)
    assert closed["path"] == "closed-form"
    assert_same(closed, reference, stem(model))
