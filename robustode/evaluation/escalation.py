"""Escalation: when an evaluation looks wrong, attack the points still robust harder, in stages.

It starts when a gradient-masking flag fires, when the model is randomized, or when
the model declares an adaptive or stochastic part (``model.robustode_escalate``, a
reason string: ODE blocks with adaptive solvers and stochastic blocks are where the
field has been fooled before). The stages, each only on the points still robust:

1. ``square``: the standard black-box Square attack (5,000 queries), which needs no gradient;
2. ``transfer``: PGD-20 (5 restarts) on a surrogate, replayed on the model; the surrogate is the
   one given, else the same architecture (a registered robustode model; otherwise ``resnet20``
   for 3x32x32 images) trained naturally on the training split for a short budget;
3. ``autoattack-rand`` (randomized models only): APGD-CE and APGD-DLR with EOT over 20 draws.

A stage's verdict counts a point robust only if it is correct on every draw of a randomized model.
Every stage is kept in the result (and the record); the worst case includes them all.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from ..attacks import build, pgd
from ..attacks.eot import correct_on_draws
from ..attacks.spec import Attack
from .attack_loop import load_batch

SQUARE = "square"  # the standard black-box attack: 5,000 queries
RANDOMIZED = "autoattack-rand"  # APGD-CE and APGD-DLR with EOT over 20 draws
SURROGATE = "resnet20"  # the stand-in architecture for a custom model on 3x32x32 images
SURROGATE_IMAGES = 10_000  # training images the surrogate sees at most
SURROGATE_EPOCHS = 10
SURROGATE_SECONDS = 120.0  # the surrogate's training budget


NOT_MASKING = ("outside_threat_model",)  # a broken attack, not a fooled one: escalating would not help


def reasons(result, model) -> list[str]:
    """Why the evaluation should escalate (empty: it should not)."""
    why = [name for name in result.flags.get("fired", []) if name not in NOT_MASKING]
    if result.randomized:
        why.append("randomized")
    declared = getattr(model, "robustode_escalate", None)
    if declared:
        why.append(str(declared))
    return why


def escalate(model, x_all, y_all, result, why: list[str], *, data, batch_size: int, device, draws: int,
             surrogate=None, console=None) -> None:
    """Run the stages on ``result``'s still-robust points; update its worst case, intervals and stages."""
    from .evaluator import fraction, set_intervals

    stages = [("square", build(SQUARE, eps=result.eps), None)]
    surrogate, how = (surrogate, "given") if surrogate is not None else train_surrogate(model, data, device)
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
        robust = _attack_points(model, x_all, y_all, still, attack, batch_size, device, draws)
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


def _attack_points(model, x_all, y_all, mask, attack: Attack, batch_size, device, draws) -> torch.Tensor:
    """Per point: robust after ``attack`` (points outside ``mask`` are left as they were: robust)."""
    robust = torch.ones_like(mask)
    index = mask.nonzero().squeeze(1)
    for lo in range(0, len(index), batch_size):
        idx = index[lo:lo + batch_size]
        x, y = load_batch(x_all[idx], y_all[idx], 0, len(idx), device)
        outcome = attack.run(model, x, y)
        verdict = correct_on_draws(model, outcome.x_adv, y, draws)
        if outcome.robust is not None:
            verdict &= outcome.robust
        robust[idx] = verdict.cpu()
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
        x_adv = pgd(self.surrogate, x.to(device), y.to(device), eps=self.settings["eps"],
                    alpha=self.settings["eps"] / 4, steps=20, restarts=5)
        return x_adv.to(x.device)


def train_surrogate(model, data, device) -> tuple[nn.Module | None, str]:
    """(a naturally trained stand-in for ``model``, how it was made) or (None, why there is none)."""
    from ..models import create
    from ..training import fit

    train = getattr(data, "train", None)
    if train is None:
        return None, "no training split to train a surrogate on: pass surrogate= to evaluate"
    name = getattr(model, "robustode_name", None)
    if name is None and tuple(train.images.shape[1:]) != (3, 32, 32):
        return None, "no surrogate architecture for this model and input shape: pass surrogate= to evaluate"
    kwargs = getattr(model, "robustode_kwargs", {}) if name else {}
    surrogate = create(name or SURROGATE, num_classes=data.num_classes, **kwargs)
    subset = type(data)(data.name, train.subset(min(SURROGATE_IMAGES, len(train))), data.test, data.classes,
                        data.kind, data.source, data.meta)
    trained = fit(surrogate, "natural", subset, epochs=SURROGATE_EPOCHS, schedule="cosine", lr=0.1,
                  batch_size=128, max_seconds=SURROGATE_SECONDS, device=str(device), quiet=True)
    how = (f"{name or SURROGATE} trained naturally for {trained.data_epochs} epoch(s) on "
           f"{len(subset.train)} training images ({trained.train_seconds:.0f} s)")
    return trained.model.eval(), how


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text, highlight=False, markup=False)
