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
