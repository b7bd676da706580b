"""Small pieces every defense shares: clipping, random starts, mode switches, one SGD step."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..rules import Choice
from .base import StepOutput

BN_MODES = ("eval", "train", "train-frozen")  # train-frozen: train mode, running statistics held (modes.bn_mode)
BN_MODE = Choice(BN_MODES)  # the model's mode during a training-time attack


def clip_delta(delta: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """The perturbation clipped to the L-inf eps-ball, with x + delta in [0, 1] (the papers' clip).

    Returns a delta; robustode.attacks.project returns the image x + delta instead."""
    return (x + delta.clamp(-eps, eps)).clamp(0.0, 1.0) - x


def random_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    """delta ~ U(-eps, eps), projected."""
    return clip_delta(torch.empty_like(x).uniform_(-eps, eps), x, eps)


def sign_ascent(model, x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor], *, eps: float,
                step_size: float, steps: int, start_std: float = 0.001) -> torch.Tensor:
    """x' from ``steps`` steps x' <- clip(x' + step_size * sign(grad loss(model(x')))), from x + start_std * N(0, 1).

    TRADES' and MART's training attack. The start is projected to the eps-ball and
    [0, 1] (their references leave it unclamped). Runs in the model's current mode;
    parameter gradients are not touched.
    """
    delta = clip_delta(start_std * torch.randn_like(x), x, eps)
    for _ in range(steps):
        delta.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(x + delta)), delta)
        delta = clip_delta(delta.detach() + step_size * grad.sign(), x, eps)
    return (x + delta).detach()


def active_autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype of the autocast region the loop runs train_step in (None outside one).

    Training-time attacks run in it too; pgd() would otherwise switch autocast off.
    """
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def sgd_step(loss: torch.Tensor, optimizers: list, on_step: Callable[[], None]) -> None:
    """zero_grad, backward, step every optimizer, then tell the loop."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in optimizers:
        opt.step()
    on_step()


def output(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> StepOutput:
    """StepOutput from tensors only: no .item(), so no host sync per step."""
    correct = (logits.detach().argmax(1) == y).sum()
    return StepOutput(loss=loss.detach(), correct=correct, count=y.shape[0])
