"""Learning-rate schedules as multipliers of the base lr, functions of nominal-epoch progress.

Progress ``t`` counts optimizer steps in epochs: ``t = steps / batches_per_data_epoch``.
Free-m takes m optimizer steps per minibatch, so its ``t`` runs m times faster than its
data epochs: the schedule counts replays (Shafahi et al. 2019) and reaches the lr that
natural training has at the same nominal epoch. The lr used by step k is ``lr * f(k / B)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def multistep(t: float, *, milestones=(), gamma: float = 0.1, **_) -> float:
    """lr x gamma at each milestone passed (the papers' piecewise-constant schedule)."""
    return gamma ** sum(t >= m for m in milestones)


def cyclic(t: float, *, total: float, peak: float = 0.5, **_) -> float:
    """One triangle 0 -> 1 -> 0 over the run, peaking at ``peak * total``.

    Wong, Rice and Kolter's FGSM-RS CIFAR-10 runs (locuslab/fast_adversarial,
    CIFAR10/train_fgsm.py: CyclicLR with step_size_up = step_size_down = steps / 2)
    peak at the midpoint, the default here; their DAWNBench-style script
    (CIFAR10/train_cifar.py) peaks at 2/5 of the epochs: ``cyclic_peak=0.4``.
    """
    top = peak * total
    if t <= top:
        return t / top
    return max(0.0, (total - t) / (total - top))


def cosine(t: float, *, total: float, **_) -> float:
    """Half a cosine from 1 to 0 over the run."""
    return 0.5 * (1.0 + math.cos(math.pi * min(t / total, 1.0)))


def constant(t: float, **_) -> float:
    return 1.0


ONECYCLE_START, ONECYCLE_END = 1 / 25, 1 / (25 * 1e4)  # torch OneCycleLR's div_factor 25, final_div_factor 1e4


def onecycle(t: float, *, total: float, peak: float = 0.3, **_) -> float:
    """torch's OneCycleLR with its defaults: half a cosine from lr / 25 up to lr over the first ``peak``
    of the run, then half a cosine down to lr / 250,000.

    Wang et al. 2023 (DM-Improves-AT core/utils/train.py, scheduler "cosinew": pct_start 0.025) and the
    FastAT benchmark (main.py, "one_cycle": pct_start 0.3) step it once per epoch; here it moves every
    optimizer step. Their OneCycleLR also cycles the momentum (0.95 -> 0.85 -> 0.95), which this does not.
    """
    top = peak * total

    def between(a: float, b: float, done: float) -> float:
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))

    if t <= top:
        return between(ONECYCLE_START, 1.0, t / top)
    return between(1.0, ONECYCLE_END, (t - top) / (total - top))


SCHEDULES: dict[str, Callable[..., float]] = {
    "multistep": multistep, "cyclic": cyclic, "cosine": cosine, "constant": constant, "onecycle": onecycle,
}


def lr_factor(settings) -> Callable[[float], float]:
    """The multiplier as a function of nominal epochs, for a run's TrainSettings.

    The run lasts ``data_epochs * replays`` nominal epochs, which is ``epochs`` unless
    Free-m's m does not divide it (then the run is rounded up to whole data epochs).
    """
    schedule = SCHEDULES[settings.schedule]
    total = settings.data_epochs * settings.replays
    arguments = {"milestones": tuple(settings.milestones), "gamma": settings.gamma, "total": total,
                 "peak": settings.cyclic_peak}
    return lambda t: schedule(t, **arguments)


def make_scheduler(optimizer: torch.optim.Optimizer, factor: Callable[[float], float],
                   batches_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step; step k trains with lr * factor(k / batches_per_epoch)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step / batches_per_epoch))


class MomentumCycle:
    """SGD momentum moving against the lr multiplier, set before every optimizer step.

    Step k trains with momentum = high - (high - low) * factor(k / batches_per_epoch):
    ``high`` where the lr multiplier is 0, ``low`` where it is 1. Under the cyclic
    schedule this is torch CyclicLR's ``cycle_momentum`` (max_momentum -> base_momentum
    at the peak -> max_momentum), which Wong et al.'s FGSM-RS and de Jorge et al.'s
    N-FGSM kept on. Every parameter group gets the same momentum. Runs only under the
    cyclic schedule: TrainConfig.resolve drops the preset's cycle with another one.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[float], float],
                 batches_per_epoch: int, high: float, low: float):
        self.optimizer, self.factor, self.batches = optimizer, factor, batches_per_epoch
        self.high, self.low = high, low
        self.steps = 0
        self._apply()

    def _apply(self) -> None:
        momentum = self.high - (self.high - self.low) * self.factor(self.steps / self.batches)
        for group in self.optimizer.param_groups:
            group["momentum"] = momentum

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = state["steps"]
        self._apply()


def momentum_cycles(optimizers: list, settings, factor: Callable[[float], float],
                    batches_per_epoch: int) -> list[MomentumCycle]:
    """One MomentumCycle per optimizer when the run's momentum cycles (``cycle_momentum``), else none."""
    if not settings.cycle_momentum:
        return []
    return [MomentumCycle(opt, factor, batches_per_epoch, settings.momentum, settings.momentum_min)
            for opt in optimizers]
