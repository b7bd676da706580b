"""The surrogate of the evaluator's transfer stage: the attacked model's architecture, trained naturally.

The evaluation package stands below training, so it cannot train one itself: the entrances
(``robustode.evaluate`` and friends) hand ``train_surrogate`` to it as ``surrogate=``.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..defenses import create_defense
from ..models import create
from .config import TrainConfig
from .loop import fit

SURROGATE = "resnet20"  # the stand-in architecture for a custom model on 3x32x32 images
SURROGATE_IMAGES = 10_000  # training images the surrogate sees at most
SURROGATE_EPOCHS = 10
SURROGATE_SECONDS = 120.0  # the surrogate's training budget


def train_surrogate(model, data, device) -> tuple[nn.Module | None, str]:
    """(a naturally trained stand-in for ``model``, how it was made) or (None, why there is none)."""
    train = getattr(data, "train", None)
    if train is None:
        return None, "no training split to train a surrogate on: pass surrogate= to evaluate"
    name = getattr(model, "robustode_name", None)
    if name is None and tuple(train.images.shape[1:]) != (3, 32, 32):
        return None, "no surrogate architecture for this model and input shape: pass surrogate= to evaluate"
    kwargs = getattr(model, "robustode_kwargs", {}) if name else {}
    surrogate = create(name or SURROGATE, num_classes=data.num_classes, **kwargs)
    subset = dataclasses.replace(data, train=train.subset(min(SURROGATE_IMAGES, len(train))))
    config = TrainConfig(epochs=SURROGATE_EPOCHS, schedule="cosine", lr=0.1,
                         batch_size=min(128, len(subset.train)),
                         max_seconds=SURROGATE_SECONDS, device=str(device))
    trained = fit(surrogate, create_defense("natural"), subset, config, quiet=True)
    how = (f"{name or SURROGATE} trained naturally for {trained.data_epochs} epoch(s) on "
           f"{len(subset.train)} training images ({trained.train_seconds:.0f} s)")
    return trained.model.eval(), how
