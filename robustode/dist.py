"""The process group that ``torchrun`` sets up, and the few collectives robustode needs.

Everything here is a no-op in a single process: rank 0 of 1, sums and maxima of
one value. Data-parallel training (robustode.training.data_parallel) and sharded
evaluation (robustode.evaluation.sharded) are built on these.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


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


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The elementwise sum over ranks (the tensor itself in a single process)."""
    if context().enabled:
        values = values.clone()
        dist.all_reduce(values)
    return values


# This rank's share of the current global minibatch: the training loop sets it per minibatch
# (GradientSync.weight), so that uneven last shards weigh by their size. None: 1 / world_size.
_share: list[float | None] = [None]


def set_share(weight: float | None) -> None:
    """Set this rank's share of the current global minibatch (None: an even split)."""
    _share[0] = weight


def share() -> float:
    """This rank's share of the current global minibatch (1 in a single process)."""
    return 1.0 / context().world_size if _share[0] is None else _share[0]


def weighted_all_sum(tensors: list[torch.Tensor], weight: float) -> None:
    """In place: tensor <- the sum over ranks of weight * tensor (with weight = share(), the gradient of
    the global mean loss from each rank's gradient of its shard's mean); a no-op in a single process."""
    if context().enabled:
        flat_collective(tensors, lambda flat: dist.all_reduce(flat.mul_(weight)))


def flat_collective(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` in place on one flat copy per dtype (one call, not one per tensor)."""
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # one order on every rank (a set's is not)
        same = [t for t in tensors if t.dtype == dtype]
        flat = _flatten_dense_tensors(same)
        collective(flat)
        for t, value in zip(same, _unflatten_dense_tensors(flat, same)):
            t.copy_(value)


def all_max(value: float) -> float:
    """The largest of the ranks' values: decisions on times must agree across ranks."""
    if not context().enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather(value) -> list:
    """Every rank's ``value`` (any picklable object), in rank order."""
    if not context().enabled:
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast(value, src: int = 0):
    """``src``'s ``value`` (any picklable object) on every rank."""
    if not context().enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
