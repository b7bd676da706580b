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
from fractions import Fraction

from .rules import BUDGET, Choice, check_fields, rule

DEFAULT_EPS = 8 / 255  # the field's standard CIFAR L-inf budget
NORMS = ("linf", "l2")
NORM = Choice(NORMS)  # the rule of an attack's norm setting
PIXEL_RANGE = (0.0, 1.0)  # every image, clean or adversarial


@dataclass(frozen=True)
class ThreatModel:
    """An L-p ball of radius ``eps`` around each image, intersected with the pixel range."""

    norm: str = rule("linf", Choice(NORMS))
    eps: float = rule(DEFAULT_EPS, BUDGET)

    def __post_init__(self):
        check_fields(self)

    def describe(self) -> str:
        """'L-inf eps 8/255' (the budget as a fraction of 255 where it is one)."""
        return f"{'L-inf' if self.norm == 'linf' else 'L2'} eps {eps_text(self.eps)}"


def eps_text(eps: float) -> str:
    """8/255 for the usual budgets, else the decimal."""
    frac = Fraction(eps).limit_denominator(255)
    if frac.denominator == 255 and abs(float(frac) - eps) < 1e-9:
        return f"{frac.numerator}/255"
    return f"{eps:g}"
