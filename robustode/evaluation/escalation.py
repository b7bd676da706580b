"""Escalation: when an evaluation looks wrong, attack the points still robust harder, in stages.

It starts when a gradient-masking flag fires, when the model is randomized, or when
the model declares an adaptive or stochastic part (``model.robustode_escalate``, a
reason string: ODE blocks with adaptive solvers and stochastic blocks are where the
field has been fooled before). The stages, each only on the points still robust:

1. ``square``: the standard black-box Square attack (5,000 queries), which needs no gradient;
2. ``transfer``: PGD-20 (5 restarts) on a surrogate, replayed on the model; ``surrogate`` is a
   module, or a callable ``(model, data, device) -> (module or None, how)`` that makes one (the
   entrances pass robustode.training.surrogate.train_surrogate: the same architecture trained
   naturally for a short budget); without one the stage is skipped and says so;
3. ``autoattack-rand`` (randomized models only): APGD-CE and APGD-DLR with EOT over 20 draws.

A model whose blocks declare an ODE solver (robustode.models.solver) escalates when a solver is
adaptive, and its first stage is ``solver-swap``: PGD-20 through the same weights solved by a fixed
grid (rk4, SWAP_STEPS steps over [0, T], no adjoint: differentiable end to end), the points then
classified by the model's own solver (BPDA through the solver: Huang et al. 2021, arXiv 2009.13145,
and Carrara et al. 2022 found adaptive-solver robustness to hinge on the solver and its tolerance).
The stage records both solvers.

A stage's verdict counts a point robust only if it is correct on every draw of a randomized model.
Every stage is kept in the result (and the record); the worst case includes them all.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..attacks import build
from ..attacks.pgd import run_pgd
from ..attacks.eot import correct_on_draws
from ..attacks.spec import Attack
from ..models.solver import ode_blocks, solver_override, solvers, swapped
from ..progress import Progress
from .attack_loop import load_batch
from .result import fraction, set_intervals

SQUARE = "square"  # the standard black-box attack: 5,000 queries
RANDOMIZED = "autoattack-rand"  # APGD-CE and APGD-DLR with EOT over 20 draws


SWAP_STEPS = 16  # the solver-swap attack's rk4 steps over [0, T] (64 evaluations of f per forward)


NOT_MASKING = ("outside_threat_model",)  # a broken attack, not a fooled one: escalating would not help


def reasons(result, model) -> list[str]:
    """Why the evaluation should escalate (empty: it should not)."""
    why = [name for name in result.flags.get("fired", []) if name not in NOT_MASKING]
    if result.randomized:
        why.append("randomized")
    if any(solver.adaptive for solver in solvers(model)):
        why.append("adaptive ODE solver")
    declared = getattr(model, "robustode_escalate", None)
    if declared:
        why.append(str(declared))
    return why


def escalate(model, x_all, y_all, result, why: list[str], *, data, batch_size: int, device, draws: int,
             surrogate=None, console=None) -> None:
    """Run the stages on ``result``'s still-robust points; update its worst case, intervals and stages."""
    stages = [("square", build(SQUARE, eps=result.eps), None)]
    if ode_blocks(model):
        stages.insert(0, ("solver-swap", SolverSwapAttack(model, result.eps), None))
    surrogate, how = _surrogate(surrogate, model, data, device)
    stages.append(("transfer", TransferAttack(surrogate, result.eps) if surrogate is not None else None, how))
    if result.randomized:
        stages.append(("autoattack-rand", build(RANDOMIZED, eps=result.eps, eot=draws), None))
    for name, attack, note in stages:
        still = result.per_point["worst_case"]
        if attack is None:
            result.escalation.append({"stage": name, "why": why, "skipped": note})
            continue
        _say(console, f"escalating ({', '.join(why)}): {name} on {int(still.sum())} points still robust")
        start = time.perf_counter()
        with Progress(-(-int(still.sum()) // batch_size), f"escalation: {name}", console=console,
                      quiet=console is None or console.quiet) as progress:
            robust = _attack_points(model, x_all, y_all, still, attack, batch_size, device, draws, progress)
        result.per_point[f"stage:{name}"] = robust
        result.per_point["worst_case"] = still & robust
        result.worst_case = fraction(result.per_point["worst_case"])
        result.escalation.append({"stage": name, "why": why, "attack": attack.name, "settings": attack.settings,
                                  "surrogate": note, "points": int(still.sum()),
                                  "broken": int((still & ~robust).sum()), "worst_case_after": result.worst_case,
                                  "seconds": time.perf_counter() - start})
        _say(console, f"  {name}: broke {result.escalation[-1]['broken']} of them; worst case now "
                      f"{result.worst_case:.2%}")
    set_intervals(result)


def _surrogate(surrogate, model, data, device) -> tuple[nn.Module | None, str]:
    """(the transfer stage's surrogate or None, how it was made or why there is none)."""
    if surrogate is None:
        return None, "no surrogate given: pass surrogate= (a module, or a callable that trains one)"
    if isinstance(surrogate, nn.Module):
        return surrogate, "given"
    return surrogate(model, data, device)


def _attack_points(model, x_all, y_all, mask, attack: Attack, batch_size, device, draws, progress) -> torch.Tensor:
    """Per point: robust after ``attack`` (points outside ``mask`` are left as they were: robust)."""
    robust = torch.ones_like(mask)
    index = mask.nonzero().squeeze(1)
    for b, lo in enumerate(range(0, len(index), batch_size)):
        idx = index[lo:lo + batch_size]
        x, y = load_batch(x_all[idx], y_all[idx], 0, len(idx), device)
        outcome = attack.run(model, x, y)
        verdict = correct_on_draws(model, outcome.x_adv, y, draws)
        if outcome.robust is not None:
            verdict &= outcome.robust
        robust[idx] = verdict.cpu()
        progress.update(b + 1)
    return robust


class TransferAttack(Attack):
    """PGD-20 with 5 restarts on a surrogate model, replayed on the attacked model (black-box transfer)."""

    blackbox = True

    def __init__(self, surrogate: nn.Module, eps: float):
        super().__init__("transfer", {"attack": "transfer", "base": "pgd-20(restarts=5)", "eps": eps,
                                      "norm": "linf", "surrogate": type(surrogate).__name__})
        self.surrogate = surrogate

    def __call__(self, model, x, y):
        device = next(iter(self.surrogate.parameters())).device
        self.surrogate.eval()
        x_adv = run_pgd(self.surrogate, x.to(device), y.to(device), eps=self.settings["eps"],
                    alpha=self.settings["eps"] / 4, steps=20, restarts=5)
        return x_adv.to(x.device)


class SolverSwapAttack(Attack):
    """PGD-20 through the model's weights solved by a fixed-grid rk4 (no adjoint); the caller classifies the
    result with the model's own solver. ``settings`` state the attack's and the test's solvers."""

    def __init__(self, model: nn.Module, eps: float):
        own = solvers(model)
        self.swap = {"method": "rk4", "step_size": min(s.T for s in own) / SWAP_STEPS, "adjoint": False}
        attack_solvers = [swapped(s, **self.swap).describe() for s in own]
        super().__init__("solver-swap", {"attack": "solver-swap", "base": "pgd-20", "eps": eps, "norm": "linf",
                                         "attack_solver": attack_solvers, "test_solver": [s.describe() for s in own]})

    def __call__(self, model, x, y):
        with solver_override(model, **self.swap):
            return run_pgd(model, x, y, eps=self.settings["eps"], alpha=self.settings["eps"] / 4, steps=20)


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False, markup=False)
