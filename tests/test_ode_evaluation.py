"""The evaluator against neural ODEs: the batch-dependence check and the solver-swap escalation stage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_escalation import blobs

from robustode.api import evaluate
from robustode.attacks import build
from robustode.attacks.eot import correct_on_draws
from robustode.evaluation import escalation
from robustode.evaluation.composition import RELATIVE, batch_dependence
from robustode.models import create
from robustode.models.ode_net import ODENet
from robustode.models.solver import Solver

pytestmark = pytest.mark.usefixtures("one_thread")
EPS = 0.04


@pytest.fixture(autouse=True)
def cheaper_stages(monkeypatch):
    monkeypatch.setattr(escalation, "SQUARE", "square(n_queries=100)")


def small_ode_net(method: str) -> ODENet:
    """ODE-Net of width 4 on 8x8 blobs, trained naturally for 60 Adam steps (about a second)."""
    torch.manual_seed(0)
    model = ODENet(4, 1, Solver(method=method, step_size=0.25, rtol=1e-3, atol=1e-3), num_classes=4,
                   normalize=False)
    model.input_shape = (3, 8, 8)
    x, y = blobs(256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for step in range(60):
        idx = torch.arange(step * 32, step * 32 + 32) % 256
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("method,dependent", [("dopri5", True), ("bosh3", True), ("rk4", False), ("euler", False)])
def test_batch_dependence_flags_a_batch_wide_error_norm_and_not_a_fixed_grid(method, dependent):
    torch.manual_seed(0)
    model = create(f"ode_net4_1(method={method})").eval()
    found = batch_dependence(model, torch.rand(24, 3, 32, 32))
    assert (found["batch_change"] > RELATIVE) is dependent
    assert found["points_alone"] == 16


def test_a_randomized_model_is_not_judged_for_batch_dependence():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10), torch.nn.Dropout(0.5)).train()
    assert batch_dependence(model, torch.rand(8, 3, 32, 32))["batch_change"] is None


@pytest.mark.slow  # 10 s on this CPU idle (26 s loaded): masking checks, Square, the swap stage through dopri5
def test_an_adaptive_model_is_flagged_escalated_and_no_more_robust_than_under_the_solver_swap_attack():
    model = small_ode_net("dopri5")
    x, y = blobs(32, seed=2)
    result = evaluate(model, (x, y), attacks="pgd-20", eps=EPS, batch_size=16, quiet=True,
                      surrogate=small_ode_net("rk4"))  # the transfer stage's; the default trains a CIFAR one
    assert result.flags["batch_dependent"] and "batch_dependent" in result.flags["fired"]
    assert "fixed batches of the test order" in result.flags["composition"]
    stages = {stage["stage"]: stage for stage in result.escalation}
    swap = stages["solver-swap"]
    assert "adaptive ODE solver" in swap["why"]
    assert swap["settings"]["attack_solver"] == ["rk4 h=0.0625 T=1"]
    assert swap["settings"]["test_solver"] == ["dopri5 rtol=0.001 atol=0.001 T=1"]
    # The swap attack alone, on every point, classified by the model's own solver:
    attack = escalation.SolverSwapAttack(model, EPS)
    torch.manual_seed(0)
    alone = correct_on_draws(model, attack(model, x, y), y, 1) & (model(x).argmax(1) == y)
    assert result.worst_case <= alone.float().mean().item()
    assert result.clean_acc > 0.5  # a model that learned something: the comparison is not vacuous
    assert result.ode["solvers"] == ["dopri5 rtol=0.001 atol=0.001 T=1"]
    assert result.ode["evaluations_per_batch"]["pgd-20"]["forward_per_batch"] > 20 * 6  # >= 1 dopri5 step a pass


def test_a_fixed_grid_ode_net_raises_no_flag_and_counts_its_attacks_evaluations():
    model = small_ode_net("rk4")
    x, y = blobs(64, seed=2)
    result = evaluate(model, (x, y), attacks=[build("pgd-5", eps=EPS)], eps=EPS, batch_size=32, quiet=True)
    assert result.flags["batch_dependent"] is False and result.flags["fired"] == []
    assert result.escalation == [] and "composition" not in result.flags
    # PGD-5: 5 forward-backward passes, each one rk4 solve of 4 steps (16 evaluations); the final check's
    # forward runs outside the attack.
    assert result.ode["evaluations_per_batch"]["pgd-5"] == {"forward_per_batch": 5 * 16, "backward_per_batch": 0}
