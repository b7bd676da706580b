"""The model registry and the functions users call: create, list_models, describe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..registry import Registry

registry = Registry("model")


def register_model(name: str | None = None, *, pattern: str | None = None) -> Callable:
    """Decorator registering a model factory ``f(num_classes=10, normalize=True, ...) -> nn.Module``.

    The first docstring line becomes the summary shown by ``describe``.

        @register_model("my_net")
        def my_net(num_classes=10, normalize=True): ...
    """
    return registry.register(name, pattern=pattern)


def create(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` (images in [0, 1], normalization inside); 10 classes unless set.

    model = robustode.models.create("wrn34_10", num_classes=10)
    model = robustode.models.create("lm_resnet56", normalize=False)
    model = robustode.models.create("ode_net16_1(method=dopri5, rtol=1e-3)")   # settings in the name

    The registry's spec rules (``Registry.create``): a keyword that disagrees with the name's setting
    is a ConfigError, an unknown name an UnknownSpecError with the close names.
    """
    given = kwargs if num_classes is None else {"num_classes": num_classes, **kwargs}
    model = registry.create(name, defaults={"num_classes": 10}, **given)
    # Checkpoints store these, so the model can be rebuilt: create(name, num_classes=..., **kwargs).
    model.robustode_name, model.robustode_kwargs = name, dict(kwargs)
    return model


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob, sorted: ``list_models("lm_*")``."""
    return registry.names(pattern)


def describe(pattern: str = "*") -> list[dict]:
    """One dict per matching model: name, params (for 10 classes; None for a family) and summary.

    Models are built on the meta device, so no memory is allocated and listing
    every model takes about a second.
    """
    rows = []
    for entry in registry.entries(pattern):
        params = None if entry.pattern is not None else count_parameters(entry.name)
        rows.append({"name": entry.name, "params": params, "summary": entry.summary})
    return rows


def count_parameters(model: nn.Module | str, num_classes: int = 10, **kwargs: Any) -> int:
    """Trainable parameters of a module, or of a registered model by name (built on the meta
    device: no memory, no init cost)."""
    if isinstance(model, str):
        with torch.device("meta"):
            model = create(model, num_classes=num_classes, **kwargs)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
