"""What a run cost, for the Pareto plot's axis (``robustode leaderboard --cost``) and the tables' units.

- ``seconds``: training time (the training loop only, synchronized).
- ``gpu-seconds``: training time x data-parallel processes (``training.world_size``):
  what the run took of the machine, so one GPU for 8 h and 8 GPUs for 1 h cost the same.
- ``flops``: counted training FLOPs = ``flops_per_image`` (FLOPs of one training
  step, all its passes, per training image) x images seen, where images seen =
  data epochs completed (the rows of ``training.curve``) x ``dataset.n_train``.
  Each image is counted once per data epoch: Free-m's replays are inside its one step.
- ``passes``: forward+backward passes each training image received over the run.

A record without the chosen cost (FLOPs are not counted in compiled runs, nor in
records before schema 2; a checkpoint robustode did not train has no training cost) is
left out of that plot, and the page says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from ..records import Record

MINUTES_FROM = 600  # a time column or axis whose largest value reaches 10 minutes is in minutes


@dataclass(frozen=True)
class Cost:
    name: str  # the --cost choice
    axis: str  # what the axis shows, before its unit
    value: Callable[[Record], float | None]  # seconds, FLOPs or passes
    missing: str = ""  # why a record may lack it

    def unit(self, largest: float) -> tuple[str, float]:
        """The unit for values up to ``largest``, and the divisor that converts to it."""
        if self.name in ("seconds", "gpu-seconds"):
            return time_unit(largest)
        if self.name == "flops":
            return flops_unit(largest)
        return "", 1.0


def training_flops(record: Record) -> float | None:
    tr = record.training
    if tr.flops_per_image is None or not tr.curve:
        return None
    return tr.flops_per_image * len(tr.curve) * record.dataset.n_train


def gpu_seconds(record: Record) -> float | None:
    tr = record.training
    return None if tr.seconds is None else tr.seconds * tr.world_size


NOT_TRAINED = "a checkpoint robustode did not train: its training cost is unknown"
COSTS = {c.name: c for c in (
    Cost("seconds", "training time", lambda r: r.training.seconds, NOT_TRAINED),
    Cost("gpu-seconds", "GPU time (training time × processes)", gpu_seconds, NOT_TRAINED),
    Cost("flops", "training FLOPs (counted)", training_flops,
         "no counted FLOPs: a compiled run, a record from before robustode counted them, or a checkpoint "
         "robustode did not train"),
    Cost("passes", "forward+backward passes per training image", lambda r: r.training.passes_per_image, NOT_TRAINED),
)}


def cost_named(name: str) -> Cost:
    if name not in COSTS:
        raise ConfigError(f"unknown cost {name!r}; choose one of {', '.join(COSTS)}")
    return COSTS[name]


def time_unit(largest_seconds: float) -> tuple[str, float]:
    """Seconds, or minutes once the largest value reaches ``MINUTES_FROM``: one unit per column."""
    return ("min", 60.0) if largest_seconds >= MINUTES_FROM else ("s", 1.0)


_PREFIXES = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"))


def flops_unit(largest: float) -> tuple[str, float]:
    """The SI prefix that puts the largest value between 1 and 1000: "PFLOP", 1e15."""
    return next(((f"{p}FLOP", f) for f, p in _PREFIXES if largest >= f), ("FLOP", 1.0))


def bytes_unit(largest: float) -> tuple[str, float]:
    return ("GiB", 2.0**30) if largest >= 2**30 else ("MiB", 2.0**20)
