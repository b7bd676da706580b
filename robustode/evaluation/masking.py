"""Gradient-masking checks reported beside every evaluation.

A model can look robust because its gradients are useless, not because it is:
- its input gradient is exactly zero at many points (rounding, argmax, saturation);
- a small step along its input gradient does not raise the loss (a gradient of noise, or negated);
- PGD accuracy rises with more steps or a larger eps, where a real attack only gets stronger;
- under the loose counting (any point correct after the attack) robust accuracy beats clean: the
  attack makes wrong points right, so its gradients point the wrong way;
- a black-box attack (Square) breaks points that every white-box attack left standing;
- PGD-20 reads far above AutoAttack (3-5 points is typical: docs/published.md#autoattack-against-pgd-20);
- an attack returns NaN or inf, or points outside [0, 1] or its eps-ball;
- a point's logits change when its batchmates change (composition.py: an adaptive ODE solver's
  batch-wide error norm); the model is then evaluated on fixed, stated batches.
The step, eps and gradient checks run on a small subset (the first SUBSET points), so they stay cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attacks.pgd import pgd
from .composition import batch_dependence, is_batch_dependent

CHECKS = 4  # three PGD runs and the gradient checks
SUBSET = 256  # points for the zero-gradient, ascent, steps and eps checks
MORE_STEPS = 50  # PGD-20 against PGD-50: the checks cost about a tenth of a full PGD-20 run
TOLERANCE = 0.01  # a flag fires only beyond one percentage point (noise on a small subset)
MIN_ASCENT = 0.7  # an honest gradient raises the loss almost everywhere; noise about half the time
AA_GAP = 0.08  # PGD-20 above AutoAttack by more than this (twice the usual 3-5 points)
BOUND_SLACK = 1e-5  # float rounding allowed beyond an attack's eps before the result is flagged

MESSAGES = {
    "zero_grad": "{zero_grad_fraction:.1%} of the checked points have an exactly zero input gradient",
    "gradient_misleads": "a small step along the input gradient raised the loss at only {ascent_fraction:.0%} of "
                         "the checked points (an honest gradient raises it almost everywhere)",
    "steps_not_monotone": "PGD accuracy rose with more steps ({pgd20:.1%} at 20 steps, {pgd_more:.1%} at "
                          "{more_steps})",
    "eps_not_monotone": "PGD-20 accuracy rose with a larger eps ({pgd20:.1%} at eps, {pgd20_2eps:.1%} at 2*eps)",
    "robust_exceeds_clean": "counting any point correct after the attack, {loose_attack} left {loose_acc:.1%} "
                            "correct, above the clean {clean_acc:.1%}: the attack makes wrong points right",
    "blackbox_beats_whitebox": "a black-box attack broke {blackbox_only_fraction:.1%} of the evaluated points, "
                               "points that no white-box attack broke",
    "pgd_autoattack_gap": "PGD-20 ({pgd_acc:.1%}) reads {aa_gap:.1%} above AutoAttack ({aa_acc:.1%}); 3-5 points is "
                          "typical",
    "non_finite": "attack(s) {non_finite_attacks} returned NaN or inf inputs (counted as not robust)",
    "outside_threat_model": "attack(s) {outside} returned points outside [0, 1] or their eps-ball",
    "batch_dependent": "a point's logits changed by {batch_change:.1e} of their scale when its batchmates changed "
                       "(an adaptive solver's batch-wide error norm?): evaluated on fixed batches",
}


def subset_checks(model, x, y, *, eps: float, seed: int = 0, status=None) -> dict:
    """Zero-gradient and ascent fractions and the PGD steps/eps checks on the points given (eval mode);
    ``status(done, text)`` hears of each of the CHECKS parts as it starts."""
    accuracy = {}
    runs = {"pgd20": (eps, 20), "pgd_more": (eps, MORE_STEPS), "pgd20_2eps": (min(2 * eps, 1.0), 20)}
    for k, (key, (radius, steps)) in enumerate(runs.items()):
        if status is not None:
            status(k, f"PGD-{steps} at {'2*eps' if key == 'pgd20_2eps' else 'eps'}")
        torch.manual_seed(seed)  # one start per run: the runs differ only in steps or radius
        x_adv = pgd(model, x, y, eps=radius, alpha=radius / 4, steps=steps)
        with torch.no_grad():
            accuracy[key] = (model(x_adv).argmax(1) == y).float().mean().item()
    if status is not None:
        status(len(runs), "input gradients")
    zero, ascent = gradient_checks(model, x, y, step=eps / 4)
    return {"subset": len(x), "zero_grad_fraction": zero, "ascent_fraction": ascent, "more_steps": MORE_STEPS,
            **accuracy, **batch_dependence(model, x)}


def gradient_checks(model, x, y, step: float) -> tuple[float, float | None]:
    """(fraction with an exactly zero input gradient, fraction of the others whose loss rises after one
    sign step of size ``step``; None when fewer than 8 points can be judged)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x).float(), y, reduction="none")
    grad = torch.autograd.grad(loss.sum(), x, allow_unused=True)[0] if loss.requires_grad else None
    if grad is None:  # the output does not depend on the input through autograd at all
        return 1.0, None
    nonzero = grad.flatten(1).abs().amax(1) > 0
    with torch.no_grad():
        after = F.cross_entropy(model((x + step * grad.sign()).clamp(0, 1)).float(), y, reduction="none")
    judged = nonzero & (loss.detach() > 1e-4)  # a saturated loss cannot visibly rise
    ascent = (after > loss.detach())[judged].float().mean().item() if judged.sum() >= 8 else None
    return 1.0 - nonzero.float().mean().item(), ascent


def flags(checks: dict | None, found, attacks) -> dict:
    """The flags a result records; ``fired`` names those that call for a closer look.

    ``checks`` is None when the subset checks were skipped; checks that could not run read None, never False.
    """
    sub = checks or {}
    values = {**sub, **_whitebox_blackbox(found, attacks), **_loose(found, attacks), **_gap(found, attacks)}
    values["non_finite_attacks"] = ", ".join(k for k, v in found.non_finite.items() if v) or None
    values["outside"] = ", ".join(sorted(k for k, v in found.excess.items() if v > BOUND_SLACK)) or None
    zero, ascent = sub.get("zero_grad_fraction"), sub.get("ascent_fraction")
    steps_ok = None if checks is None else sub["pgd_more"] <= sub["pgd20"] + TOLERANCE
    eps_ok = None if checks is None else sub["pgd20_2eps"] <= sub["pgd20"] + TOLERANCE
    beats = None if values["blackbox_only_fraction"] is None else values["blackbox_only_fraction"] > TOLERANCE
    conditions = {"zero_grad": zero is not None and zero > TOLERANCE,
                  "gradient_misleads": ascent is not None and ascent < MIN_ASCENT,
                  "steps_not_monotone": steps_ok is False, "eps_not_monotone": eps_ok is False,
                  "robust_exceeds_clean": values["loose_acc"] is not None
                  and values["loose_acc"] > values["clean_acc"] + TOLERANCE,
                  "blackbox_beats_whitebox": beats is True,
                  "pgd_autoattack_gap": values["aa_gap"] is not None and values["aa_gap"] > AA_GAP,
                  "non_finite": values["non_finite_attacks"] is not None,
                  "outside_threat_model": values["outside"] is not None,
                  "batch_dependent": is_batch_dependent(sub)}
    fired = [name for name, on in conditions.items() if on]
    return {"zero_grad_fraction": zero, "ascent_fraction": ascent, "steps_monotone": steps_ok,
            "eps_monotone": eps_ok, "blackbox_beats_whitebox": beats,
            "blackbox_only_fraction": values["blackbox_only_fraction"], "loose_acc": values["loose_acc"],
            "pgd_autoattack_gap": values["aa_gap"],
            "outside_threat_model": sorted(k for k, v in found.excess.items() if v > BOUND_SLACK),
            "non_finite": {k: v for k, v in found.non_finite.items() if v}, "checks": checks, "fired": fired,
            "batch_dependent": None if checks is None else is_batch_dependent(sub),
            "messages": [MESSAGES[name].format(**values) for name in fired]}


def _whitebox_blackbox(found, attacks) -> dict:
    """Fraction of points robust to every white-box attack (or part) but broken by a black-box one."""
    white, black = found.clean.clone(), torch.zeros_like(found.clean)
    has_white = has_black = False
    for attack in attacks:
        robust, only_bb = found.robust[attack.name], found.blackbox_only[attack.name]
        if attack.settings.get("attack") == "autoattack" and attack.settings.get("version") != "rand":
            # white-box parts, then a black-box one (Square)
            white &= robust | only_bb
            black |= only_bb
            has_white = has_black = True
        elif attack.blackbox:
            black |= found.clean & ~robust
            has_black = True
        else:
            white &= robust
            has_white = True
    fraction = (white & black).float().mean().item() if has_white and has_black else None
    return {"blackbox_only_fraction": fraction}


def _loose(found, attacks) -> dict:
    """The white-box single attack with the highest accuracy under the loose counting."""
    clean = found.clean.float().mean().item()
    loose = {a.name: found.loose[a.name].float().mean().item() for a in attacks
             if not a.blackbox and a.settings.get("attack") != "autoattack"}
    if not loose:
        return {"loose_acc": None, "loose_attack": None, "clean_acc": clean}
    name = max(loose, key=loose.get)
    return {"loose_acc": loose[name], "loose_attack": name, "clean_acc": clean}


def _gap(found, attacks) -> dict:
    pgd20 = [a.name for a in attacks if a.settings.get("steps") == 20 and "alpha" in a.settings]
    aa = [a.name for a in attacks if a.settings.get("attack") == "autoattack"]
    if not (pgd20 and aa):
        return {"aa_gap": None, "pgd_acc": None, "aa_acc": None}
    pgd_acc = found.robust[pgd20[0]].float().mean().item()
    aa_acc = found.robust[aa[0]].float().mean().item()
    return {"aa_gap": pgd_acc - aa_acc, "pgd_acc": pgd_acc, "aa_acc": aa_acc}
