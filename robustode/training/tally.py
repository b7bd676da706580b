"""An epoch's running totals, kept on the device, its clock and its count of ODE function evaluations."""

from __future__ import annotations

import math
import time

import torch

from ..dist import all_sum
from ..models.solver import evaluation_fields, reset_evaluations
from ..utils import synchronize


class Tally:
    """One epoch's loss and accuracy sums, kept on the device (no host sync per step), and its clock."""

    def __init__(self, device: torch.device, model: torch.nn.Module | None = None):
        self.device, self.model = device, model
        if model is not None:
            reset_evaluations(model)
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.count = 0
        self.batches = 0
        synchronize(device)
        self.start = time.perf_counter()

    def add(self, out) -> None:
        self.loss_sum += out.loss.float() * out.count
        self.correct += out.correct
        self.count += out.count
        self.batches += 1

    def totals(self) -> tuple[float, float, int]:
        """(mean loss, accuracy, count) over all ranks, read back in one host sync."""
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.device)
        stacked = torch.stack([self.loss_sum.double(), self.correct.double(), count])
        loss_sum, correct, count = all_sum(stacked).tolist()
        if not count:  # the epoch's first step failed (a solve past its budget): no loss to report
            return math.nan, math.nan, 0
        return loss_sum / count, correct / count, int(count)

    def evaluations(self) -> dict:
        """Evaluations of the model's ODE fields per minibatch this epoch, forward and (adjoint) backward,
        all passes of the defense together (this rank's; empty for a discrete model)."""
        return {} if self.model is None else evaluation_fields(self.model, self.batches)

    def elapsed(self) -> float:
        synchronize(self.device)
        return time.perf_counter() - self.start
