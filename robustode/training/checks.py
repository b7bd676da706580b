"""What ``fit`` checks about a model before any training, so that a bad one fails in one line."""

from __future__ import annotations

import torch
from torch import nn

from ..attacks.guards import preserved_mode, preserved_rng
from ..errors import ConfigError

PROBE = 2  # training images in the probing forward


def check_trainable(model, data) -> None:
    """``model`` is a module with trainable parameters whose output on two training images
    (eval mode, no gradient, RNG untouched) is logits of shape (2, data.num_classes)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module or a registered model name, got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"{type(model).__name__} has no trainable parameters: nothing to train")
    x = data.train.images[:PROBE].to(params[0].device).float().div_(255)
    with torch.no_grad(), preserved_mode(model), preserved_rng(0):
        model.eval()
        try:
            out = model(x)
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward is reported as one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{type(model).__name__} failed on a batch of {len(x)} training images of shape "
                              f"{tuple(x.shape[1:])} (floats in [0, 1]): {type(err).__name__}: {first}") from None
    expected = (len(x), data.num_classes)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"{type(model).__name__} returned a {type(out).__name__}, not a tensor of logits of "
                          f"shape (N, {data.num_classes}); return the logits alone")
    if tuple(out.shape) != expected:
        raise ConfigError(f"{type(model).__name__} returned output of shape {tuple(out.shape)} for {len(x)} images "
                          f"of {data.name}; expected logits of shape {expected} ({data.num_classes} classes)")
