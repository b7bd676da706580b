"""What ``evaluate`` returns: accuracies with intervals, per-point results, flags and how they were obtained."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import torch

from ..progress import duration
from ..stats import interval
from ..text import accuracy_rows, table
from ..threat import eps_text

INTERVAL_METHOD = "wilson"  # 95% Wilson score intervals (robustode.stats)


@dataclass
class EvalResult:
    clean_acc: float  # fractions in [0, 1]
    robust: dict[str, float]  # attack spec -> fraction correct clean AND after the attack (never above clean)
    worst_case: float  # a point counts only if clean, every attack and every escalation stage leave it correct
    n: int
    batch_size: int
    eps: float
    norm: str  # the threat model's: "linf" or "l2"
    attack_settings: dict[str, dict]
    seconds: float  # wall-clock of the whole evaluation, masking checks and escalation included
    device: str
    precision: str = "float32"
    tf32: bool = False  # CUDA float32 convolutions/matmuls may run as TF32 (torch's setting, recorded)
    seed: int = 0
    flags: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    per_point: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # "clean", attacks, stages
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95%: clean, attacks, worst_case
    interval_method: str = INTERVAL_METHOD
    randomized: bool = False  # two eval-mode forwards of one batch differed: attacked with EOT
    escalation: list[dict] = field(default_factory=list)  # the stages run because something looked wrong
    attack_seconds: dict[str, float] = field(default_factory=dict)
    # A model with ODE blocks: its solvers, and per attack the f-evaluations per batch (forward, adjoint backward).
    ode: dict | None = None

    def __str__(self) -> str:
        """A short table: each accuracy with its interval, then how it was obtained and what fired."""
        head = (f"evaluation of {self.n} points at eps {eps_text(self.eps)}, {duration(self.seconds)} on "
                f"{self.device}" + (" (randomized: EOT)" if self.randomized else ""))
        fired = ", ".join(self.flags.get("fired", [])) or "none"
        stages = "".join(f"\nescalation {s['stage']}: broke {s['broken']} of {s['points']} points"
                         for s in self.escalation if "broken" in s)
        rows = accuracy_rows(self.clean_acc, self.robust, self.worst_case, self.intervals)
        return f"{head}\n{table(['', 'accuracy', '95% interval'], rows)}\nmasking flags: {fired}{stages}"

    __repr__ = __str__

    def to_dict(self) -> dict:
        """JSON-friendly dict (per-point tensors left out)."""
        return copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_point"})


def set_intervals(result: EvalResult) -> None:
    """The 95% interval of clean, every attack and the worst case, from the per-point results."""
    names = ["clean", *result.robust, "worst_case"]
    result.intervals = {k: interval(int(result.per_point[k].sum()), result.n, result.interval_method) for k in names}


def fraction(mask: torch.Tensor) -> float:
    return int(mask.sum()) / len(mask)
