"""Evaluation under torchrun: each rank attacks its shard of the test points; the results are gathered."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ..attacks.eot import EOT_DRAWS
from ..data.loader import shard_bounds
from ..dist import all_gather, broadcast, context
from ..errors import DataError
from . import escalation
from .evaluator import evaluate
from .result import EvalResult, fraction, set_intervals


def evaluate_sharded(model, data, attacks, threat, **kwargs) -> EvalResult:
    """``evaluate``, each data-parallel rank on its shard of the test points, gathered on every rank.

    Per-point correctness is gathered in order, so every accuracy equals a single
    process's on the same points (each batch draws its random start from its own
    seed; shards start batches at other points, so random starts differ from a single
    process's). The gradient-masking checks run on rank 0's shard, which starts at
    the first test point, as in a single process; an escalation they call for runs on
    every rank's shard. Without a process group this is ``evaluate`` itself.
    """
    ctx = context()
    if not ctx.enabled:
        return evaluate(model, data, attacks, threat, **kwargs)
    n, escalate, surrogate = kwargs.pop("n", None), kwargs.pop("escalate", True), kwargs.pop("surrogate", None)
    test = data.test if hasattr(data, "test") else data
    if n is not None and n > len(test):
        raise DataError(f"asked for n={n} test images, but the test set has only {len(test)}")
    total = len(test) if n is None else n
    lo, hi = shard_bounds(total, ctx.rank, ctx.world_size)
    shard = type(test)(test.images[lo:hi], test.labels[lo:hi])
    part = replace(data, test=shard) if hasattr(data, "test") else shard
    if not ctx.main:
        kwargs["masking_checks"] = False
    if kwargs.get("state") is not None:  # each rank keeps the state of its own shard
        state = Path(kwargs["state"])
        kwargs["state"] = state.with_name(f"{state.stem}-rank{ctx.rank}{state.suffix}")
    mine = evaluate(model, part, attacks, threat, escalate=False, **kwargs)
    first = broadcast(mine if ctx.main else None)  # rank 0's result carries the masking checks
    merged = _merge(first, all_gather((mine.per_point, mine.flags, mine.seconds)), total)
    why = escalation.reasons(merged, model) if escalate else []
    if why:  # every rank escalates its own shard, then the stages' per-point results are gathered
        escalation.escalate(model, shard.images, shard.labels, mine, why, data=part, batch_size=mine.batch_size,
                            device=next(iter(model.parameters())).device,
                            draws=EOT_DRAWS if merged.randomized else 1, surrogate=surrogate)
        merged = _merge(first, all_gather((mine.per_point, mine.flags, mine.seconds)), total)
        merged.escalation = broadcast(mine.escalation if ctx.main else None)  # the stages as rank 0 saw them
    return merged


def _merge(first: EvalResult, parts: list, total: int) -> EvalResult:
    per_point = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
    flags = dict(first.flags)
    outside = sorted({name for p in parts for name in p[1]["outside_threat_model"]})
    non_finite = {}
    for p in parts:
        for name, count in p[1]["non_finite"].items():
            non_finite[name] = non_finite.get(name, 0) + count
    for name, on in (("outside_threat_model", outside), ("non_finite", non_finite)):
        if on and name not in flags["fired"]:
            flags["fired"] = [*flags["fired"], name]
            flags["messages"] = [*flags["messages"], f"{name.replace('_', ' ')}: {', '.join(sorted(on))}"]
    flags.update(outside_threat_model=outside, non_finite=non_finite)
    merged = replace(first, clean_acc=fraction(per_point["clean"]),
                     robust={k: fraction(per_point[k]) for k in first.robust},
                     worst_case=fraction(per_point["worst_case"]), n=total, seconds=max(p[2] for p in parts),
                     flags=flags, per_point=per_point)
    set_intervals(merged)
    return merged
