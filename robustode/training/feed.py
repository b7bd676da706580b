"""The loader a run trains from: the base split on the device (DeviceLoader), or, with an extra set,
both mixed in fixed shares (MixedLoader), the extra images on the device or streamed from host memory."""

from __future__ import annotations

import os

import torch

from ..data import DeviceLoader
from ..data.extra import ExtraSet
from ..data.mixed import MixedLoader, extra_share

GIB = 1 << 30
BUDGET_SHARE = 4  # by default an extra set may take a quarter of the device's memory (the host's RAM on a CPU)


def default_budget(device: torch.device) -> int:
    """Bytes an extra set may take on ``device`` when no budget is set."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // BUDGET_SHARE
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // BUDGET_SHARE


def budget_bytes(settings, device: torch.device) -> int:
    gb = settings.data_budget_gb
    return default_budget(device) if gb is None else int(gb * GIB)


def train_loader(split, extra: ExtraSet | None, settings, device: torch.device, rank: int, world_size: int):
    """The run's loader; the keyword arguments are the same for both kinds."""
    common = {"augment": settings.augment, "seed": settings.seed, "drop_last": settings.drop_last,
                  "channels_last": settings.channels_last, "rank": rank, "world_size": world_size}
    if extra is None:
        return DeviceLoader(split, settings.batch_size, device, shuffle=True, **common)
    return MixedLoader(split, extra, settings.extra_fraction, settings.batch_size, device,
                       budget_bytes=budget_bytes(settings, device), **common)


def describe_feed(loader, settings, device: torch.device) -> str | None:
    """The log's account of the mix and of where the extra images live (None without extra data)."""
    if not isinstance(loader, MixedLoader):
        return None
    b, k = settings.batch_size, extra_share(settings.extra_fraction, settings.batch_size)
    budget = budget_bytes(settings, device)
    where = (f"on the device ({loader.extra.nbytes / GIB:.2f} GiB <= budget {budget / GIB:.2f} GiB)"
             if loader.resident else
             f"streamed from host memory / disk ({loader.extra.nbytes / GIB:.2f} GiB > budget {budget / GIB:.2f} "
             "GiB): gathered on a background thread into " + ("pinned buffers, copied asynchronously, double "
                                                               "buffered" if device.type == "cuda" else
                                                               "two host buffers (double buffered)"))
    source = "set (data_budget_gb)" if settings.data_budget_gb is not None else "default: a quarter of the memory"
    return (f"extra data {loader.extra.source}: {len(loader.extra)} images; each minibatch {k} extra + {b - k} "
            f"base (floor({settings.extra_fraction:g} x {b})); an epoch is the base set's {len(loader)} "
            f"minibatches, as Wang et al.'s code counts it; extra images {where}; budget {source}")
