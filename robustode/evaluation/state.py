"""A resumable evaluation: per-point results written as they come, so a killed run picks up where it was."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..records.points import load_points, save_points, to_numpy


class EvalState:
    """A resumable evaluation: per attack its per-point arrays and which batches are done.

    ``key`` says what is evaluated (model digest, data, points, attacks, eps, seed, batch);
    a saved state with another key is ignored, so a resume never mixes two evaluations.
    """

    def __init__(self, path: str | os.PathLike | None, key: dict, batches: int):
        self.path, self.key, self.batches = (None if path is None else Path(path)), key, batches
        self.arrays: dict[str, np.ndarray] = {}
        self.resumed = False
        if self.path is not None and self.path.is_file():
            arrays, meta = load_points(self.path)
            if meta.get("key") == key:
                self.arrays, self.resumed = arrays, True

    def done(self, attack: str, batch: int) -> bool:
        return bool(self.arrays.get(f"done:{attack}", np.zeros(self.batches, bool))[batch])

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)

    def put(self, attack: str, batch: int, lo: int, values: dict[str, torch.Tensor], n: int,
            per_batch: dict[str, float] | None = None) -> None:
        """Store one batch's per-point arrays (by name, from point ``lo``) and per-batch numbers; mark it done."""
        for name, tensor in values.items():
            column = self.arrays.setdefault(name, np.zeros(n, bool))
            column[lo:lo + len(tensor)] = to_numpy(tensor)
        for name, value in (per_batch or {}).items():
            self.arrays.setdefault(name, np.zeros(self.batches))[batch] = value
        self.arrays.setdefault(f"done:{attack}", np.zeros(self.batches, bool))[batch] = True
        if self.path is not None:
            save_points(self.path, self.arrays, {"key": self.key})

    def finish(self) -> None:
        """The evaluation completed: its state is no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
