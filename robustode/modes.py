"""Run a block with a model's modes changed, and leave them as they were: the defenses' mode switches and the
layer-one split's verification both use these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from torch import nn


@contextmanager
def bn_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run the block with the model in ``mode``; restore every module's own mode after.

    "eval", "train", or "train-frozen": train mode with batch norm's running statistics held
    (``frozen_bn_stats``): it normalizes by the batch's statistics and the block leaves the running ones
    as they were, as Wang et al. 2023's ``track_bn_stats(model, False)`` around their TRADES attack.
    """
    saved = [(m, m.training) for m in model.modules()]
    model.train(mode != "eval")
    try:
        with frozen_bn_stats(model) if mode == "train-frozen" else nullcontext():
            yield
    finally:
        for m, training in saved:
            m.training = training


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Batch norm keeps normalizing by batch statistics but its running statistics do not move.

    momentum 0 makes the running-average update a no-op while the forward stays
    the train-mode function; num_batches_tracked is restored as well.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
