"""An evaluator that masked or randomized models cannot fool: each wrapper is flagged (or found
randomized), escalated, and ends no more robust than the unwrapped model under a strong attack."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustode.attacks import build
from robustode.attacks.eot import correct_on_draws, is_randomized
from robustode.api import evaluate
from robustode.evaluation import escalation

pytestmark = pytest.mark.usefixtures("one_thread")
pgd_module = importlib.import_module("robustode.attacks.pgd")  # the package's name pgd is the function

EPS = 0.04  # the base model keeps most points robust here, so escalation has real work to do


@pytest.fixture(autouse=True)
def cheaper_stages(monkeypatch):
    """Square with 500 queries and a 20-step rand AutoAttack: the standard ones cost minutes on a CPU."""
    monkeypatch.setattr(escalation, "SQUARE", "square(n_queries=500)")
    monkeypatch.setattr(escalation, "RANDOMIZED", "autoattack-rand(apgd_steps=20)")


def blobs(n: int, seed: int):
    """8x8 images of 4 classes: one colour channel brighter (classes 0-2) or all darker (class 3)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.5 + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    for c in range(3):
        x[y == c, c] += 0.3
    x[y == 3] -= 0.3
    return x.clamp(0, 1), y


def trained_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = blobs(512, seed + 10)
    opt = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


class Backward(torch.autograd.Function):
    """The identity whose backward returns zeros, noise or the negated gradient."""

    @staticmethod
    def forward(ctx, x, kind):
        ctx.kind = kind
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        if ctx.kind == "zeros":
            return torch.zeros_like(g), None
        if ctx.kind == "noise":
            return torch.randn_like(g) * g.abs().mean(), None
        return -g, None


class Wrapped(nn.Module):
    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x):
        if self.kind in ("zeros", "noise", "negated"):
            return self.model(Backward.apply(x, self.kind))
        if self.kind == "saturated":
            return self.model(x) * 1e4
        if self.kind == "quantized":
            return self.model(torch.round(x * 255) / 255)
        if self.kind == "gaussian":
            return self.model(x + 0.05 * torch.randn_like(x))
        size = int(torch.randint(6, 9, ()))  # random resize and pad
        small = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        left, top = (int(torch.randint(0, 9 - size, ())) for _ in range(2))
        return self.model(F.pad(small, (left, 8 - size - left, top, 8 - size - top)))


@pytest.fixture(scope="module")
def setting():
    base, surrogate = trained_mlp(0), trained_mlp(1)
    x, y = blobs(128, 99)
    strong = evaluate(base, (x, y), attacks=("pgd-50(restarts=3)",), eps=EPS, quiet=True, escalate=False)
    return base, surrogate, (x, y), strong.robust["pgd-50(restarts=3)"]


MASKED = {"zeros": "zero_grad", "noise": "gradient_misleads", "negated": "gradient_misleads",
          "saturated": "zero_grad", "quantized": "zero_grad"}


@pytest.mark.parametrize(("kind", "flag"), MASKED.items())
def test_a_masked_model_is_flagged_escalated_and_loses_its_fake_robustness(setting, kind, flag):
    base, surrogate, data, strong = setting
    model = Wrapped(base, kind)
    fooled = evaluate(model, data, eps=EPS, quiet=True, escalate=False)
    assert flag in fooled.flags["fired"] and fooled.robust["pgd-20"] > strong + 0.04  # PGD alone is fooled
    result = evaluate(model, data, eps=EPS, quiet=True, surrogate=surrogate)
    assert [stage["stage"] for stage in result.escalation] == ["square", "transfer"]
    assert all(stage["why"] == fooled.flags["fired"] for stage in result.escalation)
    assert result.worst_case <= strong
    assert result.per_point["worst_case"].sum() == round(result.worst_case * 128)


@pytest.mark.parametrize("kind", ["gaussian", "resize"])
def test_a_randomized_model_is_detected_attacked_with_eot_and_escalated(setting, kind):
    base, surrogate, data, strong = setting
    model = Wrapped(base, kind)
    result = evaluate(model, data, eps=EPS, quiet=True, surrogate=surrogate)
    assert result.randomized and result.attack_settings["pgd-20"]["eot"] == 20
    assert [stage["stage"] for stage in result.escalation] == ["square", "transfer", "autoattack-rand"]
    assert "randomized" in result.escalation[0]["why"]
    assert result.worst_case <= strong


def test_a_deterministic_model_raises_no_flag_and_is_not_escalated(setting):
    base, surrogate, data, strong = setting
    result = evaluate(base, data, eps=EPS, quiet=True, surrogate=surrogate)
    assert result.flags["fired"] == [] and not result.randomized and result.escalation == []
    assert result.flags["ascent_fraction"] > 0.95


def test_a_model_that_declares_a_stochastic_part_is_escalated(setting):
    base, surrogate, data, _ = setting
    base.robustode_escalate = "an adaptive ODE solver"
    try:
        result = evaluate(base, data, eps=EPS, quiet=True, surrogate=surrogate)
    finally:
        del base.robustode_escalate
    assert [s["why"] for s in result.escalation] == [["an adaptive ODE solver"]] * 2


def test_robust_never_exceeds_clean_and_the_loose_counting_is_flagged(setting):
    base, _, (x, y), _ = setting
    y = y.clone()
    y[:64] = (y[:64] + 1) % 4  # half the points wrong: the negated gradient makes many of them right
    result = evaluate(Wrapped(base, "negated"), (x, y), eps=0.2, quiet=True, escalate=False)
    assert result.robust["pgd-20"] <= result.clean_acc
    assert result.flags["loose_acc"] > result.clean_acc + 0.1 and "robust_exceeds_clean" in result.flags["fired"]




def test_nan_adversarial_inputs_count_as_not_robust(setting):
    base, _, (x, y), _ = setting
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert correct_on_draws(base, nan, y).tolist()[0] is False
    assert correct_on_draws(base, x, y)[1:].equal(correct_on_draws(base, nan, y)[1:])


def test_randomness_is_detected_by_two_forwards(setting):
    base, _, (x, _), _ = setting
    assert not is_randomized(base, x) and is_randomized(Wrapped(base, "gaussian"), x)


class NoisyGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g + 0.5 * torch.randn_like(g)


def test_eot_averages_the_gradient_to_its_expectation():
    """A linear model whose input gradient carries zero-mean Gaussian noise (sigma 0.5): the EOT gradient
    over k draws is the true gradient W^T (softmax(Wx) - e_y) plus noise of size sigma * sqrt(N / k)."""
    torch.manual_seed(0)
    linear = nn.Linear(12, 3)
    model = lambda x: linear(NoisyGradient.apply(x).flatten(1))  # noqa: E731
    x, y = torch.rand(64, 3, 2, 2) * 0.5 + 0.25, torch.randint(0, 3, (64,))
    with torch.no_grad():
        true = ((F.softmax(linear(x.flatten(1)), 1) - F.one_hot(y, 3)) @ linear.weight).view_as(x)
    delta = torch.zeros_like(x, requires_grad=True)
    for k in (1, 16, 256):
        torch.manual_seed(k)
        summed, _ = pgd_module._gradient(model, x, y, delta, None, k, check=True)
        error = (summed / k - true).norm().item()
        assert error == pytest.approx(0.5 * (x.numel() / k) ** 0.5, rel=0.15)


def test_the_rand_version_and_the_eot_settings_are_registered():
    rand = build("autoattack-rand")
    assert rand.settings["version"] == "rand" and rand.settings["eot_iter"] == 20
    assert [name for name, *_ in rand.components(nn.Linear(4, 10), 10)] == ["apgd-ce", "apgd-dlr"]
    assert build("pgd-20", eot=20).settings["eot"] == 20 and "eot" not in build("pgd-20").settings
    assert build("autoattack", eot=20).settings["version"] == "rand"
