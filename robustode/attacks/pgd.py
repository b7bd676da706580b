"""Projected gradient descent (PGD), L-infinity and L2."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..rules import BUDGET, STRICT_COUNT
from ..threat import DEFAULT_EPS, NORM
from ..utils import check_positive_int, parse_fraction
from .spec import FunctionAttack, attacks

_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
           "fp16": torch.float16, "float32": None, "fp32": None}


def pgd(model, x, y, *, eps=DEFAULT_EPS, alpha=2 / 255, steps=20, norm="linf", random_start=True,
        restarts=1, early_stop=False, autocast_dtype=None, eot=1) -> torch.Tensor:
    r"""PGD in the paper 'Towards Deep Learning Models Resistant to Adversarial Attacks'
    [https://arxiv.org/abs/1706.06083]

    Threat model: L-infinity (default) or L2 ball of radius ``eps`` around x, intersected with [0, 1].

    Arguments:
        model (nn.Module): maps images in [0, 1] to logits (B, classes). Its mode is the caller's choice.
        x (Tensor): images in [0, 1], (B, ...). Left unchanged.
        y (Tensor): int64 labels, (B,).
        eps (float): radius of the ball. (Default: 8/255)
        alpha (float): step size; a sign step for linf, a step of L2 length alpha for l2. (Default: 2/255)
        steps (int): number of steps. (Default: 20)
        norm (str): "linf" or "l2". (Default: "linf")
        random_start (bool): start uniformly in the ball (linf: each pixel in [-eps, eps];
            l2: uniform in the L2 ball), clipped to [0, 1]. (Default: True)
        restarts (int): independent runs; per example the worst case is kept (a run that
            fools the model, else the one with the highest loss). (Default: 1)
        early_stop (bool): freeze each example at the first iterate that fools the model and
            stop when all are fooled (one host sync per step). (Default: False)
        autocast_dtype (torch.dtype | str | None): e.g. torch.bfloat16 for training-time attacks;
            None runs in float32 with autocast off, as evaluation requires. (Default: None)
        eot (int): expectation over transformation for randomized models: each step's gradient
            is averaged over ``eot`` forward/backward passes (fresh random draws). (Default: 1)

    Returns x_adv (detached) with ||x_adv - x|| <= eps and x_adv in [0, 1].

    The ascent objective is the sum over examples of the cross-entropy: each example's
    gradient is then its own and does not shrink with the batch size; sign and L2-normalized
    steps are the same as for the mean. Gradients are taken w.r.t. the perturbation only
    (torch.autograd.grad), so no weight gradient is computed and parameter .grad is untouched.

    Examples::
        >>> x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=20)
        >>> robust_acc = (model(x_adv).argmax(1) == y).float().mean()
    """
    eps, alpha, steps, norm, restarts, dtype = check_settings(eps, alpha, steps, norm, restarts, autocast_dtype)
    return run_pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start,
                   restarts=restarts, early_stop=early_stop, autocast_dtype=dtype, eot=check_positive_int(eot, "eot"))


def run_pgd(model, x, y, *, eps, alpha, steps, norm="linf", random_start=True, restarts=1, early_stop=False,
            autocast_dtype=None, eot=1) -> torch.Tensor:
    """``pgd`` on settings already checked (``check_settings``): the hot path of training-time attacks and
    of attacks built from specs, which check their settings once."""
    dtype = autocast_dtype
    x = x.detach()
    best, best_fooled, best_loss = None, None, None
    for _ in range(restarts):
        x_adv = _single_run(model, x, y, eps, alpha, steps, norm, random_start, early_stop, dtype, eot)
        if restarts == 1:
            return x_adv
        best, best_fooled, best_loss = _keep_worst(model, x_adv, y, dtype, best, best_fooled, best_loss)
    return best


def check_settings(eps, alpha, steps, norm, restarts=1, autocast_dtype=None):
    """Validate PGD settings by the rules robustode.rules states for them; returns them normalized (norm
    lower-case, dtype resolved)."""
    eps = BUDGET(eps, "eps")
    alpha = _check_alpha(alpha, eps)
    steps, restarts = STRICT_COUNT(steps, "steps"), STRICT_COUNT(restarts, "restarts")
    norm = NORM(norm.lower() if isinstance(norm, str) else norm, "norm")
    return eps, alpha, steps, norm, restarts, _check_dtype(autocast_dtype)


def _check_alpha(alpha, eps: float):
    alpha = parse_fraction(alpha, "alpha") if isinstance(alpha, str) else alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"alpha (the step size) must be a finite number > 0, got {alpha!r}")
    if alpha == 0 and eps > 0:  # a zero step leaves every point at its random start: no attack at all
        raise ConfigError("alpha (the step size) must be > 0 for an eps > 0, got 0")
    return float(alpha)


def _check_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return None if dtype == torch.float32 else dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise ConfigError(f"autocast_dtype must be None, a torch dtype or one of {', '.join(_DTYPES)}, got {dtype!r}")


def _single_run(model, x, y, eps, alpha, steps, norm, random_start, early_stop, dtype, eot):
    # Box constraints on delta; for linf they also encode the eps-ball, so one clamp projects.
    lo = (-x).clamp_(min=-eps) if norm == "linf" else -x
    hi = (1 - x).clamp_(max=eps) if norm == "linf" else 1 - x
    delta = _start(x, eps, norm) if random_start else torch.zeros_like(x)
    delta = delta.clamp_(lo, hi).requires_grad_(True)
    shape = (-1,) + (1,) * (x.dim() - 1)
    active = torch.ones(len(x), 1, device=x.device).view(shape) if early_stop else None
    for step in range(steps):
        grad, logits = _gradient(model, x, y, delta, dtype, eot, check=step == 0)
        with torch.no_grad():
            if early_stop:
                active.mul_((logits.argmax(1) == y).view(shape))
                if not active.any():  # host sync: only with early_stop
                    break
            direction = grad.sign_() if norm == "linf" else _unit(grad, shape)
            if early_stop:
                direction.mul_(active)
            delta.add_(direction, alpha=alpha)
            if norm == "l2":
                _project_l2(delta, eps, shape)
            delta.clamp_(lo, hi)
    return (x + delta.detach()).clamp_(0, 1)


def _gradient(model, x, y, delta, dtype, eot: int, check: bool):
    """The summed cross-entropy's gradient w.r.t. delta, summed over ``eot`` draws (the sum points where
    the average does), and the last draw's logits."""
    grad = None
    for _ in range(eot):
        with torch.enable_grad(), _autocast(x.device, dtype):
            logits = model(x + delta)
            if check:
                _check_logits(logits, len(x))
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
        g = _input_grad(loss, delta)
        grad = g if grad is None else grad.add_(g)
    return grad, logits


def _start(x, eps, norm):
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    # Uniform in the L2 ball: a uniform direction and radius eps * U^(1/d).
    flat = torch.randn(len(x), x[0].numel(), device=x.device, dtype=x.dtype)
    radius = eps * torch.rand(len(x), 1, device=x.device, dtype=x.dtype).pow_(1 / flat.shape[1])
    return (flat * radius / flat.norm(dim=1, keepdim=True).clamp_min_(1e-12)).view_as(x)


def _autocast(device, dtype):
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def _check_logits(logits, batch):
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"the model must return logits of shape ({batch}, num_classes) for {batch} images, got {got}")


def _input_grad(loss, delta):
    # A model that is piecewise constant in its input (argmax, rounding) gives no graph at all:
    # its input gradient is zero, which the gradient-masking check reports.
    if not loss.requires_grad:
        return torch.zeros_like(delta)
    (grad,) = torch.autograd.grad(loss, delta, allow_unused=True)
    return torch.zeros_like(delta) if grad is None else grad


def _unit(grad, shape):
    return grad.div_(grad.flatten(1).norm(dim=1).clamp_min_(1e-12).view(shape))


def _project_l2(delta, eps, shape):
    norms = delta.flatten(1).norm(dim=1).clamp_min_(1e-12)
    delta.mul_((eps / norms).clamp_max_(1.0).view(shape))


def project(x_adv, x, eps, norm="linf"):
    """x_adv moved into the eps-ball around x (linf or l2) and into [0, 1]."""
    delta = x_adv.detach() - x
    if norm == "linf":
        delta = delta.clamp_(-eps, eps)
    else:
        _project_l2(delta, eps, (-1,) + (1,) * (x.dim() - 1))
    return (x + delta).clamp_(0, 1)


def _keep_worst(model, x_adv, y, dtype, best, best_fooled, best_loss):
    with torch.no_grad(), _autocast(x_adv.device, dtype):
        logits = model(x_adv).float()
    loss = F.cross_entropy(logits, y, reduction="none")
    fooled = logits.argmax(1) != y
    if best is None:
        return x_adv, fooled, loss
    better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
    best = torch.where(better.view((-1,) + (1,) * (x_adv.dim() - 1)), x_adv, best)
    return best, best_fooled | fooled, torch.where(better, loss, best_loss)


@attacks.register("pgd-K", pattern=r"pgd-(?P<steps>\d+)")
def pgd_family(steps=20, eps=DEFAULT_EPS, alpha=None, norm="linf", random_start=True, restarts=1,
               early_stop=False, autocast_dtype=None, eot=1):
    """PGD with K steps (eps 8/255, step eps/4 = 2/255, one uniform random start), float32."""
    eps = BUDGET(eps, "eps")
    alpha = eps / 4 if alpha is None else alpha
    eps, alpha, steps, norm, restarts, dtype = check_settings(eps, alpha, steps, norm, restarts, autocast_dtype)
    settings = dict(eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=bool(random_start),
                    restarts=restarts, early_stop=bool(early_stop),
                    autocast_dtype=None if dtype is None else str(dtype).removeprefix("torch."))
    if check_positive_int(eot, "eot") > 1:  # recorded only when used: a deterministic model's settings stay as they were
        settings["eot"] = eot
    return FunctionAttack(f"pgd-{steps}", _run_recorded, settings)


def _run_recorded(model, x, y, *, autocast_dtype=None, **settings):
    """``run_pgd`` on an attack's checked, recorded settings (its autocast dtype by name)."""
    return run_pgd(model, x, y, autocast_dtype=_DTYPES.get(autocast_dtype), **settings)


attacks.add("pgd", pgd_family)
