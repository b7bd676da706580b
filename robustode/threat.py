"""The threat model: which perturbations an adversary may make. The default budget is defined here, once.

    threat = ThreatModel()                       # L-inf, eps 8/255
    threat = ThreatModel(eps="4/255")            # fractions as on the command line
    threat.describe()                            # 'L-inf eps 8/255'

Conventions every attack and defense of robustode follows: images live in [0, 1] and every
adversarial image stays there; a point counts as robust only if it is classified correctly
clean and after the attack.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .rules import BUDGET, Choice, check_fields, fraction_text, rule

DEFAULT_EPS = 8 / 255  # the field's standard CIFAR L-inf budget
NORMS = ("linf", "l2")  # the attacks' norms
NORM = Choice(NORMS)  # the rule of an attack's norm setting
CORRUPTIONS = "corruptions"  # common corruptions (CIFAR-10-C): no adversary, no budget
THREATS = (*NORMS, CORRUPTIONS)  # what a ThreatModel, a record and a leaderboard table are about


@dataclass(frozen=True)
class ThreatModel:
    """An L-p ball of radius ``eps`` around each image, intersected with the pixel range; or the common
    corruptions (``ThreatModel.corruptions()``: 15 corruptions at 5 severities, no adversary, eps None)."""

    norm: str = rule("linf", Choice(THREATS))
    eps: float | None = rule(DEFAULT_EPS, BUDGET.optional_())  # None exactly for the corruptions

    def __post_init__(self):
        check_fields(self)
        if self.norm == CORRUPTIONS and self.eps is not None:
            raise ConfigError(f"the corruptions threat model has no budget, got eps={self.eps:g}: use "
                              "ThreatModel.corruptions()")
        if self.norm != CORRUPTIONS and self.eps is None:
            raise ConfigError(f"an {self.norm} threat model needs a budget eps, e.g. 8/255")

    @classmethod
    def corruptions(cls) -> ThreatModel:
        return cls(norm=CORRUPTIONS, eps=None)

    @property
    def adversarial(self) -> bool:
        """An adversary within a budget (L-inf, L2), as opposed to fixed corruptions."""
        return self.norm != CORRUPTIONS

    def describe(self) -> str:
        """'L-inf eps 8/255' (the budget as a fraction of 255 where it is one); 'common corruptions'."""
        return describe(self.norm, self.eps)


def describe(norm: str, eps: float | None, symbol: bool = False) -> str:
    """How a threat model is named in logs, records and tables; ``symbol`` writes L-inf as 'L∞' (reports)."""
    if norm == CORRUPTIONS:
        return "common corruptions"
    linf = "L∞" if symbol else "L-inf"
    return f"{linf if norm == 'linf' else 'L2'} eps {eps_text(eps)}"


def eps_text(eps: float) -> str:
    """3/255 or 8/255 for the usual budgets, else the number (0.5), as a spec spells it."""
    return fraction_text(eps)


def corruption_cell(corruption: str, severity: int) -> str:
    """The name of one (corruption, severity) accuracy in a corruptions result or record: "fog-3"."""
    return f"{corruption}-{severity}"


def corruption_grid(robust: dict[str, float]) -> dict[str, list[float]]:
    """A corruptions record's accuracies as {corruption: [severity 1, ..., 5]}, in the record's order."""
    grid: dict[str, list[float]] = {}
    for name, acc in robust.items():
        corruption, _, severity = name.rpartition("-")
        if corruption and len(severity) == 1 and severity.isdigit():  # "fog-3", never "pgd-20"
            grid.setdefault(corruption, []).append(acc)
    return grid

