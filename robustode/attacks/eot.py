"""Randomized models: a point is robust only if it survives every draw of the model's randomness.

Expectation over transformation (EOT, Athalye et al. 2018) averages the attack's
gradient over draws (``pgd(..., eot=k)``); the verdict here is its counterpart:
classified correctly on each of ``draws`` forwards, as AutoAttack's rand version
asks. A fresh single forward after the attack would give a randomized model a
second chance on every point it broke.
"""

from __future__ import annotations

import torch

EOT_DRAWS = 20  # AutoAttack's rand version


def correct_on_draws(model, x: torch.Tensor, y: torch.Tensor, draws: int = 1) -> torch.Tensor:
    """Per point: classified correctly on every one of ``draws`` forwards (no gradient, float32).

    A point whose input is not finite (NaN or inf anywhere) is never correct.
    """
    finite = torch.isfinite(x.flatten(1)).all(1)
    correct = finite.clone()
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        for _ in range(draws):
            correct &= model(x.float()).argmax(1) == y
    return correct


def is_randomized(model, x: torch.Tensor, tolerance: float = 1e-4) -> bool:
    """Whether two eval-mode forwards of the same batch differ (beyond float noise, as AutoAttack's check).

    Outputs are compared after normalizing each row to unit length, so that nondeterministic
    GPU kernels (summation order) do not count as randomness; a changed prediction always does.
    """
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        first, second = model(x).float(), model(x).float()
    if not torch.equal(first.argmax(1), second.argmax(1)):
        return True
    unit = lambda t: t / t.norm(dim=1, keepdim=True).clamp_min(1e-10)  # noqa: E731
    return bool((unit(first) - unit(second)).norm(dim=1).max() > tolerance)
