"""Gradient-masking checks reported beside every evaluation (reference section 3).

A model can look robust because its gradients are useless, not because it is:
- its input gradient is exactly zero at many points (rounding, argmax, saturation);
- PGD accuracy rises with more steps or a larger eps, where a real attack only gets stronger;
- a black-box attack (Square) breaks points that every white-box attack left standing.
The step and eps checks run on a small subset (the first SUBSET points), so they stay cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks.pgd import pgd

SUBSET = 256  # points for the zero-gradient, steps and eps checks
MORE_STEPS = 50  # PGD-20 against PGD-50: the checks cost about a tenth of a full PGD-20 run
TOLERANCE = 0.01  # a flag fires only beyond one percentage point (noise on a small subset)

MESSAGES = {
    "zero_grad": "{zero_grad_fraction:.1%} of the checked points have an exactly zero input gradient",
    "steps_not_monotone": "PGD accuracy rose with more steps ({pgd20:.1%} at 20 steps, {pgd_more:.1%} at "
                          "{more_steps})",
    "eps_not_monotone": "PGD-20 accuracy rose with a larger eps ({pgd20:.1%} at eps, {pgd20_2eps:.1%} at 2*eps)",
    "blackbox_beats_whitebox": "a black-box attack broke {blackbox_only_fraction:.1%} of the evaluated points, "
                               "points that no white-box attack broke",
}


def subset_checks(model, x, y, *, eps: float, seed: int = 0) -> dict:
    """Zero-gradient fraction and the PGD steps/eps checks on the points given (model in eval mode)."""
    accuracy = {}
    for key, (radius, steps) in {"pgd20": (eps, 20), "pgd_more": (eps, MORE_STEPS),
                                 "pgd20_2eps": (min(2 * eps, 1.0), 20)}.items():
        torch.manual_seed(seed)  # one start per run: the runs differ only in steps or radius
        x_adv = pgd(model, x, y, eps=radius, alpha=radius / 4, steps=steps)
        with torch.no_grad():
            accuracy[key] = (model(x_adv).argmax(1) == y).float().mean().item()
    return {"subset": len(x), "zero_grad_fraction": zero_grad_fraction(model, x, y), "more_steps": MORE_STEPS,
            **accuracy}


def zero_grad_fraction(model, x, y) -> float:
    """Fraction of points whose cross-entropy gradient w.r.t. the input is exactly zero."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
    grad = torch.autograd.grad(loss, x, allow_unused=True)[0] if loss.requires_grad else None
    if grad is None:  # the output does not depend on the input through autograd at all
        return 1.0
    return (grad.flatten(1).abs().amax(1) == 0).float().mean().item()


def blackbox_only_fraction(whitebox_robust: torch.Tensor, blackbox_fooled: torch.Tensor) -> float:
    """Fraction of points robust to every white-box attack but fooled by a black-box one."""
    return (whitebox_robust & blackbox_fooled).float().mean().item()


def flags(checks: dict | None, blackbox_only: float | None) -> dict:
    """The flags a result records; ``fired`` names those that call for a closer look.

    ``checks`` is None when the subset checks were skipped; ``blackbox_only`` is None
    when no black-box attack ran. Skipped checks read None, never False.
    """
    sub = checks or {}
    zero = sub.get("zero_grad_fraction")
    steps_ok = None if checks is None else sub["pgd_more"] <= sub["pgd20"] + TOLERANCE
    eps_ok = None if checks is None else sub["pgd20_2eps"] <= sub["pgd20"] + TOLERANCE
    beats = None if blackbox_only is None else blackbox_only > TOLERANCE
    fired = [name for name, on in [("zero_grad", zero is not None and zero > TOLERANCE),
                                   ("steps_not_monotone", steps_ok is False),
                                   ("eps_not_monotone", eps_ok is False),
                                   ("blackbox_beats_whitebox", beats is True)] if on]
    values = {**sub, "blackbox_only_fraction": blackbox_only}
    return {"zero_grad_fraction": zero, "steps_monotone": steps_ok, "eps_monotone": eps_ok,
            "blackbox_beats_whitebox": beats, "blackbox_only_fraction": blackbox_only, "checks": checks,
            "fired": fired, "messages": [MESSAGES[name].format(**values) for name in fired]}
