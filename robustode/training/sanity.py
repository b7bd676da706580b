"""Runs that fail to learn, said out loud: a run can end with a plausible-looking record and have learnt
nothing. Each check is a warning for the run log and the record's notes, never an error."""

from __future__ import annotations

import math

LOSS_FACTOR = 3.0  # a final training loss above 3 * ln(classes) is far above chance's ln(classes)


def run_warnings(trained, evaluation, num_classes: int) -> list[str]:
    """What looks wrong with a finished run and its evaluation (empty: nothing)."""
    warnings = []
    chance, (low, high) = 1.0 / num_classes, evaluation.intervals["clean"]
    if low <= chance:
        warnings.append(f"clean accuracy {evaluation.clean_acc:.1%} on {evaluation.n} points is within chance "
                        f"level ({chance:.1%}, inside its 95% interval [{low:.1%}, {high:.1%}]): the model did not "
                        "learn")
    loss = trained.history[-1]["loss"] if trained.history else None
    if loss is not None and math.isfinite(loss) and loss > LOSS_FACTOR * math.log(num_classes):
        warnings.append(f"the final training loss {loss:.3g} is far above chance's ln({num_classes}) = "
                        f"{math.log(num_classes):.2f}: the learning rate or the defense's settings may not suit "
                        "this model")
    decay = trained.run.defense.hyperparameters.get("ema_decay", 0.0)
    steps = trained.history[-1]["steps"] if trained.history else 0
    if decay and steps < 1.0 / (1.0 - decay):
        warnings.append(f"the weight average (ema_decay {decay:g}) saw {steps} optimizer steps, fewer than its "
                        f"horizon of {1 / (1 - decay):.0f}: the evaluated model averages weights from early in "
                        "training (lower ema_decay, or train longer)")
    return warnings
