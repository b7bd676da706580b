"""What a training run costs besides its seconds: FLOPs of one training step, peak device memory.

FLOPs are counted with torch's FlopCounterMode (convolutions, matmuls, attention)
over the run's first real training step, all of its passes included: no extra step
and no copy, so nothing a defense or model does is run twice. An attack step's
backward counts its input gradient only, which is all it computes. A compiled run
is not counted (the counter cannot see inside compiled graphs), nor a model with an ODE block solving
with the adjoint (torchdiffeq's adjoint calls autograd.grad inside the backward, which the counter's
module hooks refuse).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models.solver import solvers


class FlopCount:
    """Context around one train_step: stores its FLOPs per training image on ``trainer.flops_per_image``."""

    def __init__(self, trainer, images: int):
        self.trainer, self.images = trainer, images
        adjoint = any(solver.adjoint for solver in solvers(trainer.model))
        self.counter = None if adjoint else FlopCounterMode(display=False)

    def __enter__(self):
        if self.counter is not None:
            self.counter.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.counter is None:
            return
        self.counter.__exit__(*exc)
        if exc[0] is None:
            self.trainer.flops_per_image = self.counter.get_total_flops() / self.images


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Peak memory allocated on a CUDA device since the last reset; None elsewhere."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
