"""Data-parallel training across processes, as ``torchrun`` launches them.

    torchrun --nproc_per_node=8 -m robustode train --model wrn34_10 --defense yopo-5-3 ...

Every rank holds the whole data set on its own device and trains on its shard of
each global minibatch (``DeviceLoader(rank=, world_size=)``; ``batch_size`` stays
the global batch, so the run follows the single-process trajectory). Gradients
are summed across ranks, each weighted by its share of the minibatch, right
before every optimizer step; floating-point buffers (batch-norm running
statistics) are taken from rank 0 at the same moment. Rank 0's initial weights are
broadcast; only rank 0 writes checkpoints, logs and records; evaluation is
sharded and gathered.

Why not torch's DistributedDataParallel: its reducer syncs inside backward()
of a forward run through the wrapper. YOPO computes through ``model.layer_one``
and ``model.rest`` (no wrapper forward, so the reducer is never prepared);
the training attacks of PGD, FGSM-RS and TRADES run many forwards whose
backward stops at the input (autograd.grad w.r.t. delta), which DDP rejects
unless every defense wraps them in ``no_sync()``; and YOPO accumulates over m
passes while Free steps m times per minibatch. The optimizer step is the one
point every defense shares, so a step pre-hook syncs there and the defenses
stay unchanged. The cost: communication does not overlap the backward pass.

Batch norm normalizes by each rank's shard statistics (torch DDP does the
same without SyncBatchNorm), so a model with batch norm trains slightly
differently from one process on the global batch; a model without batch norm
gets the same weights up to float summation order. Free-m's perturbation
buffer is per rank and per position in the rank's shard, which is that
position of the global batch in a single-process run.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..data.loader import shard_bounds
from ..errors import DataError


@dataclass(frozen=True)
class Context:
    rank: int = 0  # this process among all of them
    world_size: int = 1  # processes training together
    local_rank: int = 0  # this process among those on its machine: its GPU index

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def context() -> Context:
    """This process's place in the process group (rank 0 of 1 when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> Context:
    """Join the process group that torchrun's variables describe (WORLD_SIZE > 1), once.

    nccl for CUDA (each rank on cuda:LOCAL_RANK), gloo for the CPU. A no-op without those variables.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_teardown)
    return context()


def local_device(device: torch.device) -> torch.device:
    """A data-parallel rank's own GPU for a plain "cuda"."""
    ctx = context()
    if ctx.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def _teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Every rank takes ``src``'s parameters and buffers."""
    if context().enabled:
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor.data, src)


def broadcast_optimizers(optimizers: list, src: int) -> None:
    """Every rank takes ``src``'s optimizer state (momentum buffers, step counts) in place."""
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                for value in opt.state.get(p, {}).values():
                    if isinstance(value, torch.Tensor):
                        dist.broadcast(value, src)


class GradientSync:
    """Right before each optimizer step: sum the ranks' gradients, each weighted by ``weight``.

    ``weight`` is this rank's share of the current global minibatch (the loop sets
    it per minibatch), so the sum is the gradient of the global mean loss even
    when the last minibatch splits unevenly. Gradients of all parameters of one
    optimizer travel in one flat buffer per dtype (one collective, not one per
    tensor). The first optimizer's step also hands rank 0's floating-point buffers
    (batch-norm running statistics) to every rank, as DDP's broadcast_buffers does,
    so that all ranks attack in eval mode and evaluate with the same statistics.
    """

    def __init__(self, model: nn.Module, optimizers: list, world_size: int):
        self.weight = 1.0 / world_size
        self.buffers = [b for b in model.buffers() if b.is_floating_point()]
        self.handles = [opt.register_step_pre_hook(self._hook(first=i == 0)) for i, opt in enumerate(optimizers)]

    def _hook(self, first: bool):
        def pre_step(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            _all_reduce(grads, self.weight)
            if first:
                _broadcast(self.buffers)

        return pre_step


def _all_reduce(tensors: list[torch.Tensor], weight: float) -> None:
    """tensor <- sum over ranks of weight * tensor."""
    _flat_collective(tensors, lambda flat: dist.all_reduce(flat.mul_(weight)))


def _broadcast(tensors: list[torch.Tensor]) -> None:
    _flat_collective(tensors, lambda flat: dist.broadcast(flat, 0))


def _flat_collective(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` in place on one flat copy per dtype (one call, not one per tensor)."""
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # one order on every rank (a set's is not)
        same = [t for t in tensors if t.dtype == dtype]
        flat = _flatten_dense_tensors(same)
        collective(flat)
        for t, value in zip(same, _unflatten_dense_tensors(flat, same)):
            t.copy_(value)


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The elementwise sum over ranks (the tensor itself in a single process)."""
    if context().enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values


def all_max(value: float) -> float:
    """The largest of the ranks' values: decisions on times must agree across ranks."""
    if not context().enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def agree_on_stop(reason: str | None, model: nn.Module, optimizers: list) -> str | None:
    """The first rank's stop reason from ``end_epoch``; every rank then takes that rank's weights.

    A guard (FGSM-RS's) judges each rank's own batch, so ranks may disagree; the
    first rank that stopped has restored its earlier weights, and the others copy them.
    """
    if not context().enabled:
        return reason
    reasons = [None] * dist.get_world_size()
    dist.all_gather_object(reasons, reason)
    src = next((r for r, text in enumerate(reasons) if text is not None), None)
    if src is None:
        return None
    broadcast_module(model, src)
    broadcast_optimizers(optimizers, src)
    return reasons[src]


def evaluate(model, data, **kwargs):
    """robustode.evaluator.evaluate, each rank on its shard of the test points, gathered.

    Per-point correctness is gathered in order, so every accuracy equals a single
    process's on the same points for a deterministic attack (random starts are
    drawn per rank). The gradient-masking checks run on rank 0's shard, which
    starts at the first test point, as in a single process.
    """
    from ..evaluator import evaluate as evaluate_one

    ctx = context()
    if not ctx.enabled:
        return evaluate_one(model, data, **kwargs)
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
    mine = evaluate_one(model, part, **kwargs)
    parts = [None] * ctx.world_size
    dist.all_gather_object(parts, (mine.per_point, mine.flags["outside_threat_model"], mine.seconds))
    first = [mine if ctx.main else None]
    dist.broadcast_object_list(first, src=0)  # rank 0's result carries the masking checks
    return _merge(first[0], parts, total)


def _merge(first, parts, total):
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


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
