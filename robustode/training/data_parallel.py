"""Data-parallel training across processes, as ``torchrun`` launches them.

    torchrun --nproc_per_node=8 -m robustode train --model wrn34_10 --defense yopo-5-3 ...

Every rank holds the whole data set on its own device and trains on its shard of
each global minibatch (``DeviceLoader(rank=, world_size=)``; ``batch_size`` stays
the global batch, so the run follows the single-process trajectory). Gradients
are summed across ranks, each weighted by its share of the minibatch, right
before every optimizer step; floating-point buffers (batch-norm running
statistics) are taken from rank 0 at the same moment. Rank 0's initial weights are
broadcast; only rank 0 writes checkpoints, logs and records; evaluation is
sharded and gathered (robustode.evaluation.sharded).

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

import torch
import torch.distributed as dist
from torch import nn

from ..defenses.base import EpochStop
from ..dist import all_gather, broadcast_module, context, flat_collective, set_share, share, weighted_all_sum


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

    # The share lives in robustode.dist, where a defense's own collective (AWP's ascent gradient) reads it.
    @property
    def weight(self) -> float:
        return share()

    @weight.setter
    def weight(self, value: float) -> None:
        set_share(value)

    def _hook(self, first: bool):
        def pre_step(opt, args, kwargs):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            weighted_all_sum(grads, self.weight)
            if first:
                flat_collective(self.buffers, lambda flat: dist.broadcast(flat, 0))

        return pre_step


def agree_on_stop(ended, model: nn.Module, optimizers: list) -> EpochStop | None:
    """The first rank's stop from ``end_epoch``'s return value (reason and restore flag); every rank then
    takes that rank's weights.

    A guard (FGSM-RS's) judges each rank's own batch, so ranks may disagree; the
    first rank that stopped has restored its earlier weights, and the others copy them.
    """
    stop = EpochStop.of(ended)
    if not context().enabled:
        return stop
    stops = all_gather(stop)
    src = next((r for r, s in enumerate(stops) if s is not None), None)
    if src is None:
        return None
    broadcast_module(model, src)
    broadcast_optimizers(optimizers, src)
    return stops[src]
