"""Weight averaging: an exponential moving average of the weights, kept beside the model.

Gowal et al. 2020 (https://arxiv.org/abs/2010.03593) and Rebuffi et al. 2021
(https://arxiv.org/abs/2103.01946) evaluate the average, not the last weights.
The t-th update (t = 0, 1, ...) uses d_t = min(decay, (1 + t) / (10 + t)), their
warm-up, so the first updates follow the weights closely instead of dragging the
random initial ones along for ~1 / (1 - decay) steps. Batch-norm running
statistics are averaged with the same decay as the weights, so they cover the
same window as the weights they normalize; integer buffers (num_batches_tracked)
are copied from the live model. Where this differs from DeepMind's code and the
FastAT benchmark's: docs/fidelity.md#ema.

TrainConfig.ema_style picks the way (EMA_STYLES): "robustode" as above; "wang2023" as Wang et
al. 2023's code (github.com/wzekai99/DM-Improves-AT, gowal21uncovering/utils/watrain.py,
ema_update and update_bn): the average is the weights themselves for the first 2.5% of the
run's steps, then takes the warm-up decay counted from there; only parameters are averaged, the
batch-norm statistics are the live model's; "fixed" as the FastAT benchmark's: the fixed decay
from the first step, the whole state averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

EMA_STYLES = ("robustode", "wang2023", "fixed")
WANG_WARMUP = 0.025  # Wang et al.'s share of the run before averaging starts (warmup_steps in watrain.py)


class WeightAverage:
    """``model``: the average, a copy of ``live`` updated by ``update()`` after every optimizer step;
    ``style`` one of EMA_STYLES, ``total_steps`` the run's optimizer steps (for "wang2023")."""

    def __init__(self, live: nn.Module, decay: float, style: str = "robustode", total_steps: int = 0):
        self.live, self.decay, self.style = live, decay, style
        self.start = WANG_WARMUP * total_steps if style == "wang2023" else 0.0
        self.model = copy.deepcopy(live)
        # "wang2023" averages only the parameters; every other entry is copied from the live model
        self.averaged = ({name for name, _ in live.named_parameters()} if style == "wang2023"
                         else {k for k, v in live.state_dict().items() if v.is_floating_point()})
        self.updates = 0
        self._mark = self._snapshot()

    def rate(self) -> float:
        """The decay of the next update, with the style's warm-up."""
        if self.style == "fixed":
            return self.decay
        t = float(self.updates)
        if self.style == "wang2023":
            step = self.updates + 1.0  # their global step counts from 1
            if step < self.start:
                return 0.0  # the average is the weights until the warm-up ends
            t = step - self.start
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self) -> None:
        d = self.rate()
        live = self.live.state_dict()
        floats, averaged = [], []
        for name, tensor in self.model.state_dict().items():
            if name in self.averaged:
                averaged.append(tensor)
                floats.append(live[name].detach())
            else:
                tensor.copy_(live[name])
        if averaged:
            torch._foreach_lerp_(averaged, floats, 1.0 - d)  # avg + (1 - d) (w - avg) = d avg + (1 - d) w
        self.updates += 1

    def state(self) -> dict:
        """What a checkpoint keeps besides the averaged weights (those are its "model")."""
        return {"live": self.live.state_dict(), "updates": self.updates, "decay": self.decay}

    def load(self, averaged: dict, state: dict) -> None:
        self.model.load_state_dict(averaged)
        self.live.load_state_dict(state["live"])
        self.updates = state["updates"]
        self.mark()

    def mark(self) -> None:
        """Remember the average as it is now (the end of a good epoch)."""
        self._mark = self._snapshot()

    def rewind(self) -> None:
        """Back to the last mark: a defense that restored the previous epoch's weights restores their average."""
        weights, self.updates = self._mark
        self.model.load_state_dict(weights)

    def end_epoch(self, restored: bool) -> None:
        """After the defense's end of epoch: rewind if it restored earlier weights (EpochStop.restored_weights),
        else mark (a stop that keeps the weights keeps their average too)."""
        if restored:
            self.rewind()
        else:
            self.mark()

    def _snapshot(self) -> tuple[dict, int]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}, self.updates


def weight_average(model: nn.Module, defense, style: str = "robustode", total_steps: int = 0) -> WeightAverage | None:
    """The defense's weight average (its ``ema_decay``) in ``style``, or None when it has none."""
    decay = getattr(defense, "ema_decay", 0.0)
    return WeightAverage(model, decay, style, total_steps) if decay > 0 else None
