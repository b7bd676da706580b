"""A resumable evaluation: per-point results written as they come, so a killed run picks up where it was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import RecordError
from ..files import content_digest
from ..records.points import load_points, save_points, to_numpy
from ..threat import ThreatModel

log = logging.getLogger("robustode")


class EvalState:
    """A resumable evaluation: per attack its per-point arrays and which batches are done.

    ``key`` says what is evaluated (model digest, data, points, attacks, eps, seed, batch);
    a saved state with another key is ignored, so a resume never mixes two evaluations. A
    damaged one is ignored too, with a warning: the evaluation starts over rather than fail.
    ``seconds_before``: the time the evaluation had spent before this resume (0 when fresh).
    """

    def __init__(self, path: str | os.PathLike | None, key: dict, batches: int):
        self.path, self.key, self.batches = (None if path is None else Path(path)), key, batches
        self.arrays: dict[str, np.ndarray] = {}
        self.resumed, self.seconds_before, self.started = False, 0.0, time.perf_counter()
        if self.path is not None and self.path.is_file():
            try:
                arrays, meta = load_points(self.path)
            except RecordError as err:
                log.warning("the saved evaluation state is damaged (%s); starting the evaluation over", err)
                return
            if meta.get("key") == key and _complete(arrays, batches):
                self.arrays, self.resumed = arrays, True
                self.seconds_before = float(meta.get("seconds", 0.0))

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
            seconds = self.seconds_before + time.perf_counter() - self.started
            save_points(self.path, self.arrays, {"key": self.key, "seconds": seconds})

    def finish(self) -> None:
        """The evaluation completed: its state is no longer needed."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the states' folder goes once it holds no other evaluation's
                self.path.parent.rmdir()


def _complete(arrays: dict[str, np.ndarray], batches: int) -> bool:
    """A state's "done" marks cover every batch (a file cut short or written by other code does not)."""
    return all(len(v) == batches for k, v in arrays.items() if k.startswith("done:"))


def state_file(folder: str | os.PathLike, model_digest: str | None, asked: list) -> Path:
    """The file in ``folder`` that keeps the state of one evaluation: named after the model's digest and
    everything asked of the evaluation, so another model or another evaluation never resumes from it."""
    key = json.dumps([model_digest, *asked], default=str)
    return Path(folder) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def evaluation_state(folder: str | os.PathLike, model_digest: str | None, data: str, n: int | None, attacks,
                     threat: ThreatModel, batch_size: int, masking_checks: bool) -> Path:
    """``state_file`` of one evaluation: data set, points, attacks, the threat model (its eps a number, so
    "8/255" and 8/255 name one file), batch and masking checks."""
    asked = [data, n, [a.name for a in attacks], threat.norm, threat.eps, batch_size, masking_checks]
    return state_file(folder, model_digest, asked)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers (names, shapes, dtypes and bytes), for ``state_file``."""
    return content_digest(model.state_dict())


STATE_DIR = ".eval-state"  # beside an evaluation's output: the resumable states of its evaluations
