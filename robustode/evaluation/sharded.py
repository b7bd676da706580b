"""Evaluation under torchrun: each rank attacks its shard of the test points; the results are gathered."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..data.loader import shard_bounds
from ..dist import all_gather, broadcast, context
from ..errors import DataError
from .evaluator import EvalResult, evaluate


def evaluate_sharded(model, data, **kwargs) -> EvalResult:
    """``evaluate``, each data-parallel rank on its shard of the test points, gathered on every rank.

    Per-point correctness is gathered in order, so every accuracy equals a single
    process's on the same points for a deterministic attack (random starts are
    drawn per rank). The gradient-masking checks run on rank 0's shard, which
    starts at the first test point, as in a single process. Without a process
    group this is ``evaluate`` itself.
    """
    ctx = context()
    if not ctx.enabled:
        return evaluate(model, data, **kwargs)
    n = kwargs.pop("n", None)
    test = data.test if hasattr(data, "test") else data
    if n is not None and n > len(test):
        raise DataError(f"asked for n={n} test images, but the test set has only {len(test)}")
    total = len(test) if n is None else n
    lo, hi = shard_bounds(total, ctx.rank, ctx.world_size)
    shard = type(test)(test.images[lo:hi], test.labels[lo:hi])
    part = replace(data, test=shard) if hasattr(data, "test") else shard
    if not ctx.main:
        kwargs["masking_checks"] = False
    mine = evaluate(model, part, **kwargs)
    parts = all_gather((mine.per_point, mine.flags["outside_threat_model"], mine.seconds))
    first = broadcast(mine if ctx.main else None)  # rank 0's result carries the masking checks
    return _merge(first, parts, total)


def _merge(first: EvalResult, parts: list, total: int) -> EvalResult:
    per_point = {k: torch.cat([p[0][k] for p in parts]) for k in first.per_point}
    worst = per_point["clean"].clone()
    for name in first.robust:
        worst &= per_point[name]
    flags = dict(first.flags)
    outside = sorted({name for p in parts for name in p[1]})
    if outside and not flags["outside_threat_model"]:
        flags["fired"] = [*flags["fired"], "outside_threat_model"]
        message = f"attack(s) {', '.join(outside)} returned points outside [0, 1] or their eps-ball"
        flags["messages"] = [*flags["messages"], message]
    flags["outside_threat_model"] = outside
    return replace(first, clean_acc=_fraction(per_point["clean"], total),
                   robust={k: _fraction(per_point[k], total) for k in first.robust},
                   worst_case=_fraction(worst, total), n=total, seconds=max(p[2] for p in parts),
                   flags=flags, per_point=per_point)


def _fraction(mask: torch.Tensor, total: int) -> float:
    return int(mask.sum()) / total
