"""Neural ODE models (robustode.models.solver, ode_net, sodef): the solve against closed forms, the
function-evaluation counts, the adjoint's gradient, the auxiliary loss and bad solver settings."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from robustode.api import fit
from robustode.data import make_synthetic
from robustode.defenses import create_defense, defenses
from robustode.defenses.natural import Natural
from robustode.errors import ConfigError, SolverError
from robustode.models import create
from robustode.models.solver import (
    FIXED_STAGES,
    CountedField,
    Solver,
    function_evaluations,
    integrate,
    reset_evaluations,
    solver_override,
)
from robustode.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """f(t, x) = x A^T: x(T) = x(0) exp(A T)^T."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, x):
        return x @ self.a.T


A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=torch.float64)  # a damped rotation
X0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=torch.float64)
# Global error bound of each method at its setting, for this field over [0, 1] (~C h^order, C ~ 1).
SETTINGS = {"euler": ({"step_size": 1e-3}, 2e-3), "midpoint": ({"step_size": 1e-2}, 1e-4),
            "rk4": ({"step_size": 0.1}, 1e-5), "dopri5": ({"rtol": 1e-7, "atol": 1e-9}, 1e-6),
            "bosh3": ({"rtol": 1e-7, "atol": 1e-9}, 1e-4), "adaptive_heun": ({"rtol": 1e-6, "atol": 1e-8}, 1e-4)}


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_a_linear_field_integrates_to_its_matrix_exponential(method):
    settings, tolerance = SETTINGS[method]
    solver = Solver(method=method, T=1.0, max_steps=100_000, **settings)
    out = integrate(CountedField(Linear(A.clone())), X0, solver)
    exact = X0 @ torch.linalg.matrix_exp(A * 1.0).T
    assert (out - exact).abs().max().item() < tolerance
    # The error shrinks with the step: the method really is the one asked for, not a finer one.
    if not solver.adaptive:
        coarse = integrate(CountedField(Linear(A.clone())), X0, Solver(method=method, step_size=0.25))
        assert (coarse - exact).abs().max().item() > 10 * (out - exact).abs().max().item()


@pytest.mark.parametrize("method", sorted(FIXED_STAGES))
@pytest.mark.parametrize("step_size,T", [(0.25, 1.0), (0.1, 1.0), (0.3, 1.0), (0.5, 2.0)])
def test_a_fixed_grid_solve_evaluates_f_stages_times_steps(method, step_size, T):
    field = CountedField(Linear(A.clone()))
    solver = Solver(method=method, step_size=step_size, T=T)
    integrate(field, X0, solver)
    assert solver.steps == math.ceil(round(T / step_size, 9))
    assert field.forward_evals == FIXED_STAGES[method] * solver.steps and field.backward_evals == 0


def test_a_model_counts_its_forward_and_adjoint_backward_evaluations():
    model = create("ode_net4_1(method=rk4, step_size=0.5, adjoint=true)")
    reset_evaluations(model)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    counts = function_evaluations(model)
    assert counts["forward"] == 4 * 2  # rk4, 2 steps
    assert counts["backward"] == 4 * 2  # the adjoint solves back on the same grid
    model = create("ode_net4_1(method=rk4, step_size=0.5)")
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    assert function_evaluations(model) == {"forward": 8, "backward": 0}  # direct backprop: no evaluation


class Smooth(nn.Module):
    """f(t, x) = tanh(x W^T + b) (t-independent, smooth)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6).double()

    def forward(self, t, x):
        return torch.tanh(self.fc(x))


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_the_adjoint_input_gradient_matches_direct_backpropagation(method):
    torch.manual_seed(0)
    field = CountedField(Smooth())
    x = torch.randn(3, 6, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        solver = Solver(method=method, step_size=0.01, rtol=1e-9, atol=1e-11, adjoint=adjoint, max_steps=10_000)
        xx = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(integrate(field, xx, solver).pow(2).sum(), xx)
        grads.append(grad)
    # The adjoint solves a second ODE backwards (optimize-then-discretize): equal up to the solvers' error.
    # (With ReLU fields the backward re-integration crosses kinks elsewhere: ~1e-3 apart, docs/fidelity.md.)
    assert (grads[0] - grads[1]).norm() / grads[0].norm() < 1e-7
    assert field.backward_evals > 0


def test_solver_override_changes_every_block_and_restores_it():
    model = create("ode_net4_2(method=dopri5)")
    with solver_override(model, method="rk4", step_size=0.1):
        assert [b.solver.method for b in model.blocks] == ["rk4", "rk4"]
    assert [b.solver.method for b in model.blocks] == ["dopri5", "dopri5"]
    with pytest.raises(ConfigError, match="no setting h"), solver_override(model, h=0.1):
        pass
    with pytest.raises(ConfigError, match="no ODE block"), solver_override(create("resnet20"), method="rk4"):
        pass


@pytest.mark.parametrize("spec,message", [
    ("ode_net4_1(method=rk5)", "method must be one of euler, midpoint, rk4, dopri5"),
    ("ode_net4_1(step_size=0)", "step_size must be > 0"), ("ode_net4_1(step_size=-0.1)", "step_size must be > 0"),
    ("ode_net4_1(rtol=0)", "rtol must be > 0"), ("ode_net4_1(atol=-1e-3)", "atol must be > 0"),
    ("ode_net4_1(T=0)", "T must be > 0"), ("ode_net4_1(max_steps=0)", "max_steps must be a positive integer"),
    ("ode_net4_1(adjoint=maybe)", "adjoint must be one of False, True"),
    ("ode_net4_1(tol=1e-3)", "no setting tol"), ("tisode16_1(steady_window=0)", "steady_window must be > 0"),
    ("ode_net4_9", "1 to 3 ODE blocks"),
])
def test_bad_solver_settings_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        create(spec)
    assert "\n" not in str(err.value)


def test_a_solve_over_its_step_budget_is_a_solver_error_not_a_hang():
    model = create("ode_net4_1(method=dopri5, rtol=1e-9, atol=1e-9, max_steps=3)")
    with pytest.raises(SolverError, match="max_steps=3") as err:
        model(torch.rand(2, 3, 32, 32))
    assert "\n" not in str(err.value)


def test_the_defense_adds_the_models_auxiliary_loss_with_its_weight():
    torch.manual_seed(0)
    model = create("tisode16_1(step_size=0.5)").train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    plain, weighted = create_defense("natural"), create_defense("natural(aux_weight=0.5)")
    plain.use_auxiliary(model), weighted.use_auxiliary(model)
    logits = model(x)
    state = model.blocks[-1].last_state
    base = plain.cross_entropy(logits, y)
    total = weighted.cross_entropy(logits, y)
    model.blocks[-1].last_state = state
    aux = model.auxiliary_loss()
    assert aux.item() > 0 and torch.allclose(total, base + 0.5 * aux)
    with pytest.raises(ConfigError, match="needs a forward"):  # consumed: a stale graph is never reused
        model.auxiliary_loss()
    with pytest.raises(ConfigError, match="has no auxiliary_loss"):
        create_defense("pgd-1(aux_weight=0.1)").use_auxiliary(create("resnet20"))


def test_tisodes_steady_state_term_is_the_integral_of_the_fields_size():
    model = create("tisode16_1(method=euler, step_size=0.05)", normalize=False).train()
    field = model.blocks[0].field.field
    nn.init.zeros_(field.conv2.conv.weight)  # f = 0: a steady state everywhere, the term vanishes
    model(torch.rand(2, 3, 32, 32))
    assert model.auxiliary_loss().item() == 0.0


def test_sodef_jacobian_is_the_autograd_jacobian():
    torch.manual_seed(0)
    field = create("sodef_net16").ode.field.field.double()
    z, t = torch.randn(3, 64, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    auto = torch.stack([torch.autograd.functional.jacobian(lambda v: field(t, v[None])[0], z[i]) for i in range(3)])
    assert torch.allclose(field.jacobian(t, z), auto, atol=1e-12)


@dataclass
class BlowsUp(Natural):
    """Natural training whose model's solve exceeds its step budget after data epoch ``after``."""

    after: int = 1

    def end_epoch(self, model, optimizers, epoch):
        if epoch >= self.after:
            for block in model.blocks:
                block.solver = Solver(method="dopri5", rtol=1e-9, atol=1e-9, max_steps=2)


def test_a_solve_that_fails_in_training_is_a_diverged_run_that_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create("ode_net4_1(step_size=0.5)")  # rk4, 2 steps: 8 evaluations of f per forward
    result = fit(model, BlowsUp(), make_synthetic(8, 4, seed=0), epochs=3, batch_size=4, device="cpu", quiet=True,
                 out_dir=tmp_path / "run", eval_every=0)
    assert result.stop.kind == "diverged" and result.data_epochs == 1
    assert "max_steps=2" in result.stop.reason and "; in data epoch 2, minibatch 1 of 2" in result.stop.reason
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.equal(v, kept["model"][k]) for k, v in result.model.state_dict().items())
    log = (tmp_path / "run" / "train.log").read_text()
    assert "stopped: SolverError: the dopri5" in log and "kept the checkpoint of data epoch 1" in log
    # The failed solve's evaluations are not the epoch's cost: the diverged row leaves them out.
    assert [("evals_forward_per_batch" in row) for row in result.history] == [True, False]
    assert result.function_evaluations == {"forward": 8.0, "backward": 0.0}


def test_a_solve_that_fails_in_the_held_out_evaluation_is_a_diverged_run_too(tmp_path):
    torch.manual_seed(0)
    model = create("ode_net4_1(step_size=0.5)")
    result = fit(model, BlowsUp(after=2), make_synthetic(8, 4, seed=0), epochs=3, batch_size=4, device="cpu",
                 quiet=True, out_dir=tmp_path / "run", eval_every=1, eval_n=4)
    assert result.stop.kind == "diverged" and result.data_epochs == 1
    assert "; in the held-out evaluation after data epoch 2" in result.stop.reason
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    assert "stopped: SolverError" in (tmp_path / "run" / "train.log").read_text()


@pytest.mark.parametrize("form", defenses.in_order())
def test_every_defense_with_aux_weight_adds_the_models_auxiliary_loss_in_its_step(form):
    torch.manual_seed(0)
    spec = re.sub(r"\b[KMN]\b", "1", form)  # pgd-K -> pgd-1, yopo-M-N -> yopo-1-1
    model = create("tisode16_1(step_size=0.5)").train()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    defense = create_defense(spec, aux_weight=1.0)
    defense.prepare(model, x)
    defense.use_auxiliary(model)
    calls = []
    auxiliary = defense.auxiliary
    defense.auxiliary = lambda: calls.append(1) or auxiliary()
    defense.train_step(model, x, y, defense.optimizers(model, [{"params": list(model.parameters())}],
                                                       lambda groups: torch.optim.SGD(groups, lr=0.0)), lambda: None)
    assert len(calls) >= 1, f"{spec}(aux_weight=1) never called the model's auxiliary_loss in a train_step"
