"""The evaluation's inner loop: each attack over fixed batches of the test points, resumable.

Attacks run one after the other (so progress and resume are per attack), each over
the same fixed batches, each batch from its own seed: a batch's result never depends
on which batches ran before, so a resumed evaluation equals an uninterrupted one.
A point is robust under an attack only if it is correct clean AND after the attack,
by the attack's own verdict when it has one (AutoAttack), else by the evaluator's
(on every draw of a randomized model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attacks.eot import correct_on_draws
from ..models.solver import evaluations_text, function_evaluations, reset_evaluations
from ..progress import Progress, reporting
from ..threat import NORMS
from .state import EvalState


@dataclass
class Found:
    """What the attacks found, per point (bool tensors on the CPU) and per attack."""

    clean: torch.Tensor
    robust: dict[str, torch.Tensor] = field(default_factory=dict)  # clean and correct after the attack
    loose: dict[str, torch.Tensor] = field(default_factory=dict)  # correct after the attack, clean or not
    blackbox_only: dict[str, torch.Tensor] = field(default_factory=dict)  # composite attacks' black-box breaks
    excess: dict[str, float] = field(default_factory=dict)  # furthest outside [0, 1] or the eps-ball
    non_finite: dict[str, int] = field(default_factory=dict)  # points returned with NaN or inf
    seconds: dict[str, float] = field(default_factory=dict)
    evaluations: dict[str, dict] = field(default_factory=dict)  # ODE models: f-evaluations per batch, per attack


def batch_seed(seed: int, attack: int, batch: int) -> int:
    """The seed of one attack on one batch (attack -1: the clean pass)."""
    return int(np.random.SeedSequence([seed, attack + 1, batch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def run_attacks(model, x_all, y_all, attacks, *, batch_size: int, device, draws: int, seed: int,
                state: EvalState, quiet: bool) -> Found:
    n = len(y_all)
    starts = range(0, n, batch_size)
    clean = []
    for b, lo in enumerate(starts):
        torch.manual_seed(batch_seed(seed, -1, b))
        x, y = load_batch(x_all, y_all, lo, batch_size, device)
        clean.append(correct_on_draws(model, x, y, 1).cpu())  # one forward, as AutoAttack's clean check
    found = Found(torch.cat(clean))
    for i, attack in enumerate(attacks):
        label = f"evaluating {attack.name} ({i + 1}/{len(attacks)}) on {n} points"
        with Progress(len(starts), label, quiet=quiet) as progress:
            for b, lo in enumerate(starts):
                if not state.done(attack.name, b):
                    torch.manual_seed(batch_seed(seed, i, b))
                    with reporting(lambda text, b=b: progress.update(b, f"{attack.name}: {text}")):  # its parts
                        _one_batch(model, x_all, y_all, attack, lo, b, batch_size, device, draws, found, state)
                if progress.wants_line:
                    progress.update(b + 1, _so_far(attack.name, state, min(lo + batch_size, n), b + 1))
                else:
                    progress.update(b + 1)
        _collect(attack.name, found, state)
    return found


def _so_far(name: str, state: EvalState, points: int, batches: int) -> str:
    """An attack's progress line: robust accuracy so far, and an ODE model's f-evaluations per batch."""
    text = f"{name} {state.get(f'robust:{name}')[:points].mean():.1%} so far"
    forward, backward = state.get(f"evals_forward:{name}"), state.get(f"evals_backward:{name}")
    if forward is not None and forward[:batches].any():  # a discrete model counts none
        text += f" {evaluations_text(forward[:batches].mean(), backward[:batches].mean())}"
    return text


def _one_batch(model, x_all, y_all, attack, lo, b, batch_size, device, draws, found, state) -> None:
    x, y = load_batch(x_all, y_all, lo, batch_size, device)
    clean = found.clean[lo:lo + len(y)].to(device)
    start = time.perf_counter()
    reset_evaluations(model)
    outcome = attack.run(model, x, y)
    evals = function_evaluations(model)  # the attack's solves (its own forwards and backwards)
    loose = correct_on_draws(model, outcome.x_adv, y, draws)
    verdict = loose if outcome.robust is None else outcome.robust
    only_bb = outcome.blackbox_only if outcome.blackbox_only is not None else torch.zeros_like(loose)
    name = attack.name
    values = {f"robust:{name}": (verdict & clean).cpu(), f"loose:{name}": loose.cpu(),
              f"bb:{name}": only_bb.cpu(), f"nonfinite:{name}": (~torch.isfinite(outcome.x_adv.flatten(1)).all(1)).cpu()}
    per_batch = {f"excess:{name}": float(_excess(attack, x, outcome.x_adv)),
                 f"seconds:{name}": time.perf_counter() - start,
                 f"evals_forward:{name}": evals["forward"], f"evals_backward:{name}": evals["backward"]}
    state.put(name, b, lo, values, len(y_all), per_batch)


def _collect(name: str, found: Found, state: EvalState) -> None:
    found.robust[name] = torch.from_numpy(state.get(f"robust:{name}").copy())
    found.loose[name] = torch.from_numpy(state.get(f"loose:{name}").copy())
    found.blackbox_only[name] = torch.from_numpy(state.get(f"bb:{name}").copy())
    found.non_finite[name] = int(state.get(f"nonfinite:{name}").sum())
    found.excess[name] = float(np.nan_to_num(state.get(f"excess:{name}"), nan=np.inf).max())
    found.seconds[name] = float(state.get(f"seconds:{name}").sum())
    forward, backward = state.get(f"evals_forward:{name}"), state.get(f"evals_backward:{name}")
    if forward is not None and forward.any():  # an ODE model (a discrete one counts none)
        found.evaluations[name] = {"forward_per_batch": float(forward.mean()),
                                   "backward_per_batch": float(backward.mean())}


def load_batch(x_all, y_all, i, size, device):
    x, y = x_all[i:i + size].to(device, non_blocking=True), y_all[i:i + size].to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x, y


def _excess(attack, x, x_adv) -> torch.Tensor:
    """How far x_adv leaves [0, 1] and the attack's eps-ball (0 when inside; inf for NaN or inf points)."""
    if not torch.isfinite(x_adv).all():
        return torch.tensor(float("inf"))
    outside_box = torch.maximum(-x_adv.min(), x_adv.max() - 1).clamp_min(0)
    eps, norm = attack.settings.get("eps"), str(attack.settings.get("norm", "linf")).lower()
    if not isinstance(eps, float) or norm not in NORMS:
        return outside_box
    diff = (x_adv - x).flatten(1)
    size = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    return torch.maximum(outside_box, (size - eps).max().clamp_min(0))
