"""ODE solver settings as model settings, the solve itself (torchdiffeq), and function-evaluation counts.

A continuous-depth model holds one or more ``ODEBlock``s; each declares its ``Solver``
(method, step size or tolerances, step budget, adjoint, end time T). The solve is
torchdiffeq's ``odeint`` / ``odeint_adjoint`` (Chen et al. 2018, github.com/rtqichen/torchdiffeq,
torchdiffeq/_impl/odeint.py and adjoint.py). Two facts of that library matter for robustness
evaluation (docs/fidelity.md#neural-odes):

- its adaptive step-size control measures the error with ``_rms_norm`` (torchdiffeq/_impl/misc.py),
  one root-mean-square over the whole batch tensor, so a batch shares one step schedule and a
  point's logits depend on its batchmates;
- the step-size decisions are not differentiated (the steps are constants to autograd).

Fixed-grid methods take ceil(T / step_size) equal steps (our grid: a step size that does not divide T is
shortened evenly, where torchdiffeq's own grid ends with a short step); ``FIXED_STAGES`` are their
evaluations of f per step.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from ..errors import ConfigError, SolverError
from ..rules import COUNT, POSITIVE, Choice, check_fields, rule

FIXED_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}  # torchdiffeq/_impl/fixed_grid.py (rk4: the 3/8 rule)
ADAPTIVE = ("dopri5", "bosh3", "adaptive_heun")
METHODS = (*FIXED_STAGES, *ADAPTIVE)


@dataclass(frozen=True)
class Solver:
    """How an ODE block integrates dx/dt = f(x, t) over [0, T]."""

    method: str = rule("rk4", Choice(METHODS))  # fixed grid: euler, midpoint, rk4; adaptive: dopri5, bosh3, ...
    step_size: float = rule(0.25, POSITIVE)  # fixed grid: the step (ceil(T / step_size) equal steps)
    rtol: float = rule(1e-3, POSITIVE)  # adaptive: relative tolerance
    atol: float = rule(1e-3, POSITIVE)  # adaptive: absolute tolerance
    max_steps: int = rule(1000, COUNT)  # adaptive: step budget (accepted and rejected steps); beyond it: SolverError
    adjoint: bool = rule(False, Choice((False, True)))  # gradients by the adjoint ODE (odeint_adjoint)
    T: float = rule(1.0, POSITIVE)  # end time

    def __post_init__(self):
        check_fields(self)

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE

    @property
    def steps(self) -> int | None:
        """Steps of a fixed-grid solve over [0, T] (None for an adaptive one)."""
        return None if self.adaptive else self.grid_steps(self.T)

    def grid_steps(self, span: float) -> int:
        """Equal fixed-grid steps over an interval of length ``span``: ceil(span / step_size), at least 1
        (the 1e-9 keeps float error from adding a step: 1 / 0.1 is 10 steps)."""
        return max(1, math.ceil(span / self.step_size - 1e-9))

    def describe(self) -> str:
        """One line: "rk4 h=0.25 T=1" or "dopri5 rtol=0.001 atol=0.001 T=1" (+ " adjoint")."""
        own = f"rtol={self.rtol:g} atol={self.atol:g}" if self.adaptive else f"h={self.step_size:g}"
        return f"{self.method} {own} T={self.T:g}" + (" adjoint" if self.adjoint else "")

    def settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_solver(settings: dict) -> Solver:
    """A Solver from a model's keyword settings; a setting it does not have is a ConfigError naming its settings."""
    return swapped(Solver(), **settings)


class CountedField(nn.Module):
    """f(t, x) with its evaluations counted: during the forward solve, and after it (the adjoint's backward)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.forward_evals = 0
        self.backward_evals = 0
        self.solving = False  # True while the block's forward solve runs

    def forward(self, t: torch.Tensor, x):
        if self.solving:
            self.forward_evals += 1
        else:
            self.backward_evals += 1
        return self.field(t, x)


def integrate(field: nn.Module, x, solver: Solver, t0: float = 0.0, t1: float | None = None,
              count: CountedField | None = None):
    """x(t1) from x(t0) = x under dx/dt = field(t, x) (t1 defaults to solver.T); a tensor or a tuple of them.

    ``count`` is the CountedField inside ``field`` that counts the evaluations (default: ``field`` itself)."""
    count = field if count is None else count
    t1 = solver.T if t1 is None else t1
    like = x[0] if isinstance(x, tuple) else x
    t = torch.tensor([t0, t1], dtype=like.dtype, device=like.device)
    if solver.adaptive:
        options = {"max_num_steps": solver.max_steps}
    else:
        steps = solver.grid_steps(abs(t1 - t0))
        options = {"grid_constructor": lambda f, y, tt: torch.linspace(tt[0], tt[-1], steps + 1, dtype=tt.dtype,
                                                                        device=tt.device)}
    kwargs = {"rtol": solver.rtol, "atol": solver.atol, "method": solver.method, "options": options}
    count.solving = True
    try:
        if solver.adjoint:
            out = odeint_adjoint(field, x, t, adjoint_params=tuple(field.parameters()), **kwargs)
        else:
            out = odeint(field, x, t, **kwargs)
    except AssertionError as err:  # torchdiffeq states a failed solve as an assertion (rk_common.py)
        raise SolverError(f"the {solver.describe()} solve failed: {err} (max_steps={solver.max_steps}); raise "
                          "max_steps or the tolerances, or lower the learning rate if this happens in training") \
            from None
    finally:
        count.solving = False
    return tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]


def ode_blocks(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that declare a solver (``module.solver`` is a Solver)."""
    return [m for m in model.modules() if isinstance(getattr(m, "solver", None), Solver)]


def solvers(model: nn.Module) -> list[Solver]:
    return [block.solver for block in ode_blocks(model)]


def function_evaluations(model: nn.Module) -> dict[str, int]:
    """Evaluations of f counted so far, summed over the model's ODE blocks: forward and (adjoint) backward."""
    counted = [m for m in model.modules() if isinstance(m, CountedField)]
    return {"forward": sum(f.forward_evals for f in counted), "backward": sum(f.backward_evals for f in counted)}


def reset_evaluations(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, CountedField):
            m.forward_evals = m.backward_evals = 0


def evaluations_text(forward: float, backward: float) -> str:
    """Evaluations of f per minibatch as the run log and the progress lines show them: forward + backward."""
    return f"f-evals/batch {forward:.0f}+{backward:.0f}"


def evaluation_fields(model: nn.Module, batches: int, prefix: str = "evals") -> dict:
    """The counts since the last reset per minibatch, as record or metrics fields (empty for a discrete model).

    One evaluation of f takes the whole minibatch, so per minibatch is what a step costs."""
    if not ode_blocks(model):
        return {}
    counts = function_evaluations(model)
    return {f"{prefix}_forward_per_batch": counts["forward"] / max(batches, 1),
            f"{prefix}_backward_per_batch": counts["backward"] / max(batches, 1)}


def swapped(solver: Solver, **changes) -> Solver:
    """``solver`` with some settings changed, checked (an unknown setting or a bad value: ConfigError)."""
    unknown = sorted(set(changes) - set(solver.settings()))
    if unknown:
        raise ConfigError(f"an ODE solver has no setting {', '.join(unknown)}; its settings: "
                          f"{', '.join(solver.settings())}")
    return replace(solver, **changes)


@contextmanager
def solver_override(model: nn.Module, **changes):
    """Every ODE block of ``model`` solves with ``changes`` applied, then returns to its own solver.

        with solver_override(model, method="rk4", step_size=0.05):
            x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=20)
    """
    blocks = ode_blocks(model)
    if not blocks:
        raise ConfigError(f"{type(model).__name__} has no ODE block, so it has no solver settings to change")
    saved = [b.solver for b in blocks]
    new = [swapped(s, **changes) for s in saved]  # all checked before any is changed
    try:
        for block, solver in zip(blocks, new):
            block.solver = solver
        yield model
    finally:
        for block, solver in zip(blocks, saved):
            block.solver = solver
