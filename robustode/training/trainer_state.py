"""What a training run's checkpoint captures, and how a run is put back from one: the Trainer's state."""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import torch

from .checkpoint import load_optimizer, rng_state, save_checkpoint, set_rng_state, to_device


class TrainerState:
    """The part of ``Trainer`` (trainer.py) that saves and restores it: weights (and their average),
    optimizers, schedulers, counters, RNG, the loader's place, the defense's state and the run's history."""

    def seed(self) -> None:
        seed = self.settings.seed
        torch.manual_seed(seed + self.dist.rank)  # data-parallel ranks draw independent random starts
        random.seed(seed)
        np.random.seed(seed)

    def state_dict(self, mid_epoch: bool = False) -> dict:
        return {
            "model": self.evaluated.state_dict(),
            "ema": None if self.average is None else self.average.state(),  # with the live weights
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "epoch": self.epoch, "steps": self.steps, "seconds": self.seconds, "lr": self.lr,
            "rng": rng_state(self.device),
            "loader": self.loader.state_dict(),
            "defense": self.defense.state_dict(),
            "config": self.run.to_dict(),
            "history": self.history, "best": self.best, "initial_loss": self.initial_loss,
            "flops_per_image": self.flops_per_image, "peak_memory_bytes": self._peak(),
            "stop": None if self.stop is None else asdict(self.stop),
            "mid_epoch": mid_epoch,  # True only in final.pt of a run stopped inside an epoch
        }

    def load_weights(self, state: dict) -> None:
        """A checkpoint's weights: its model, or its average and the live weights kept beside it."""
        if self.average is None:
            self.model.load_state_dict(state["model"])
        else:
            self.average.load(state["model"], state["ema"])

    def load_state_dict(self, state: dict) -> None:
        self.load_weights(state)
        for opt, saved in zip(self.optimizers, state["optimizers"]):
            load_optimizer(opt, saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        self.epoch, self.steps = state["epoch"], state["steps"]
        self.seconds, self.lr = state["seconds"], state["lr"]
        self.history, self.best = list(state["history"]), state["best"]
        self.initial_loss = state.get("initial_loss")
        self.flops_per_image, self.peak_memory_bytes = state.get("flops_per_image"), state.get("peak_memory_bytes")
        self.loader.load_state_dict(state["loader"])
        self.defense.load_state_dict(to_device(state["defense"], self.device))
        set_rng_state(state["rng"], self.device)

    def save(self, name: str, mid_epoch: bool = False) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / "checkpoints" / name, self.state_dict(mid_epoch))
