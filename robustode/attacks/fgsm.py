"""Fast gradient sign method (FGSM)."""

from __future__ import annotations

import torch

from ..rules import BUDGET
from ..threat import DEFAULT_EPS
from ..utils import check_positive_int
from .pgd import run_pgd
from .spec import FunctionAttack, attacks


def fgsm(model, x, y, *, eps=DEFAULT_EPS, eot=1) -> torch.Tensor:
    r"""FGSM in the paper 'Explaining and Harnessing Adversarial Examples'
    [https://arxiv.org/abs/1412.6572]

    Threat model: L-infinity ball of radius ``eps``, intersected with [0, 1].
    One signed-gradient step of size eps from x itself (no random start):
    x_adv = clip(x + eps * sign(grad_x CE(model(x), y)), 0, 1).

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits. Its mode is the caller's choice.
        x (Tensor): images in [0, 1], (B, ...). Left unchanged.
        y (Tensor): int64 labels, (B,).
        eps (float): maximum perturbation. (Default: 8/255)
        eot (int): gradient averaged over this many draws of a randomized model. (Default: 1)

    Examples::
        >>> x_adv = fgsm(model, x, y, eps=8/255)
        >>> robust_acc = (model(x_adv).argmax(1) == y).float().mean()
    """
    return _fgsm(model, x, y, eps=BUDGET(eps, "eps"), eot=check_positive_int(eot, "eot"))


def _fgsm(model, x, y, *, eps, eot=1) -> torch.Tensor:
    """``fgsm`` on checked settings."""
    return run_pgd(model, x, y, eps=eps, alpha=eps, steps=1, random_start=False, eot=eot)


@attacks.register("fgsm")
def fgsm_attack(eps=DEFAULT_EPS, eot=1):
    """FGSM: one signed-gradient step of size eps (default 8/255)."""
    settings = {"eps": BUDGET(eps, "eps")}
    if check_positive_int(eot, "eot") > 1:
        settings["eot"] = eot
    return FunctionAttack("fgsm", _fgsm, settings)
