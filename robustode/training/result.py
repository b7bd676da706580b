"""What a training run returns (``TrainResult``) and why it may have ended early (``Stop``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint
from .run import RunInfo


@dataclass(frozen=True)
class Stop:
    """Why training ended before its last epoch."""

    kind: str  # one of robustode.records.schema.STOP_KINDS, where each is explained
    reason: str  # one line for the log and the record
    restored_weights: bool = False  # a guard put an earlier epoch's weights back (the model holds those)

    @property
    def inside_epoch(self) -> bool:
        """Divergence and an exhausted budget are noticed inside an epoch; a guard at its end."""
        return self.kind != "guard"


@dataclass
class TrainResult:
    model: nn.Module | None  # the trained model: the weight average with ema_decay (after a divergence: the
    # last good checkpoint's weights)
    run: RunInfo  # the run's typed description: settings, model, defense, data, provenance
    history: list[dict] = field(default_factory=list)  # one row per data epoch (see runlog.METRICS)
    train_seconds: float = 0.0  # training loop only, synchronized; evaluation and checkpoints excluded
    data_epochs: int = 0  # data epochs completed
    stop: Stop | None = None  # why the run ended early, if it did
    best: dict | None = None  # keep_best: {"epoch", "eval_robust", "eval_clean"} of checkpoints/best.pt
    run_dir: str | None = None
    peak_memory_bytes: int | None = None  # CUDA: peak memory allocated while training (None on the CPU)
    flops_per_image: float | None = None  # counted FLOPs of one training step, per training image

    @property
    def stopped_reason(self) -> str | None:
        return None if self.stop is None else self.stop.reason

    @property
    def images(self) -> int:
        """Training images seen, each counted once per data epoch (Free-m's replays are not recounted)."""
        return sum(row["images"] for row in self.history)

    @property
    def images_per_second(self) -> float:
        """Training images per second of training time."""
        return self.images / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def passes_per_image(self) -> float:
        """Forward+backward passes each training image received, in total."""
        return self.run.defense.passes_per_batch * self.images / self.run.data.n_train

    @property
    def function_evaluations(self) -> dict | None:
        """An ODE model's evaluations of its fields per training minibatch, all the defense's passes together,
        averaged over the run's data epochs: {"forward", "backward" (adjoint)}; None for a discrete model."""
        rows = [row for row in self.history if "evals_forward_per_batch" in row]
        if not rows:
            return None
        return {part: sum(row[f"evals_{part}_per_batch"] for row in rows) / len(rows)
                for part in ("forward", "backward")}

    @property
    def nominal_epochs(self) -> int:
        """Nominal epochs done: whole data epochs, each replayed m times by Free-m (asked for epochs that m does
        not divide, the run is rounded up to them, as the lr schedule is, and the log says so)."""
        return self.data_epochs * self.run.defense.replays

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike | dict, model: nn.Module | None = None) -> TrainResult:
        """The result of the run as its checkpoint (a path, or a loaded state) records it."""
        state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        source = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
        stop = state.get("stop")
        run_dir = None
        if not isinstance(checkpoint, dict):
            folder = Path(checkpoint).resolve().parent
            run_dir = str(folder.parent if folder.name == "checkpoints" else folder)
        return cls(model=model, run=RunInfo.from_dict(state["config"], source), history=list(state["history"]),
                   train_seconds=state["seconds"], data_epochs=state["epoch"],
                   stop=None if stop is None else Stop(**stop), best=state.get("best"), run_dir=run_dir,
                   peak_memory_bytes=state.get("peak_memory_bytes"), flops_per_image=state.get("flops_per_image"))

    def to_dict(self) -> dict:
        """Everything but the model, JSON-ready."""
        return {"run": self.run.to_dict(), "history": self.history, "train_seconds": self.train_seconds,
                "data_epochs": self.data_epochs, "stopped_reason": self.stopped_reason, "best": self.best,
                "run_dir": self.run_dir, "images_per_second": self.images_per_second,
                "passes_per_image": self.passes_per_image}
