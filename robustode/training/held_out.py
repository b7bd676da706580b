"""The periodic held-out evaluations during training: a curve at the standard budget, not the verdict."""

from __future__ import annotations

from ..attacks import Attack, build
from ..threat import ThreatModel

HELD_OUT = ThreatModel()  # the periodic evaluations' threat model


def held_out_attack(config) -> Attack:
    """The periodic evaluations' attack (``config.eval_attack``), built at the threat model's budget."""
    return build(config.eval_attack, eps=HELD_OUT.eps)
