"""The model contract every built-in model follows and custom models may follow.

A robustode model maps images in [0, 1] (NCHW, float) to logits and is split
into two parts:

- ``layer_one(x) -> z``: the first layer, the only part coupled to the input
  (normalization, then the first conv or the patch embedding). YOPO's inner
  attack steps run through this part alone.
- ``rest(z) -> logits``: everything after it.

``forward(x) == rest(layer_one(x))`` always holds. ``layer_one_parameters()``
are layer one's parameters, so defenses can give them their own optimizer.
Optionally, ``layer_one_module()`` returns the module ``layer_one`` runs (after
checking the input), or None: YOPO reads it to prove layer one affine and use
its closed form (robustode.split.affine). ``LayerOneModel`` provides all
but ``rest``: its layer one is ``self.stem``.

Custom models need not follow it: ``layer_one`` and ``rest`` submodules are
enough, and without them YOPO finds layer one by tracing the model
(robustode.split).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std with mean and std as buffers; the model's first operation.

    ``persistent=False`` keeps them out of the state dict, for architectures whose published
    checkpoints carry no normalization (RobustBench's DMWideResNet).
    """

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD, persistent: bool = True):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=persistent)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=persistent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalization(enabled: bool) -> nn.Module:
    """Normalize when enabled; the YOPO reference runs had none."""
    return Normalize() if enabled else nn.Identity()


class LayerOneModel(nn.Module):
    """Base class for models that follow the layer-one contract.

    Subclasses set ``self.stem`` (layer one) and implement ``rest``.
    ``input_shape`` (C, H, W) is checked on every call so that a wrong
    input gives a clear error instead of a shape mismatch deep inside.
    """

    stem: nn.Module
    input_shape: tuple[int, int, int] = (3, 32, 32)

    def layer_one(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_shape, type(self).__name__)
        return self.stem(x)

    def rest(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.layer_one(x))

    def layer_one_module(self) -> nn.Module:
        """The module layer_one(x) runs after checking the input's shape."""
        return self.stem

    def layer_one_parameters(self):
        return self.layer_one_module().parameters()


class SelectOutput(nn.Module):
    """``model(x)[key]``: the logits of a model that returns a tuple, list or dict.

        ro.train(SelectOutput(model, 0), "yopo-5-3", "cifar10")   # model returns (logits, features)

    Its ``model`` is yours (trained in place); ``ro.train(..., output=0)`` wraps it so.
    """

    def __init__(self, model: nn.Module, key: int | str):
        super().__init__()
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise ConfigError(f"output must be an index or a key of the model's output, got {key!r}")
        self.model, self.key = model, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            raise ConfigError(f"output={self.key!r} picks an entry of a tuple, list or dict, but "
                              f"{type(self.model).__name__} returns a tensor: leave output out")
        return out[self.key]


def select_output(model: nn.Module, output: int | str | None) -> nn.Module:
    """``model`` itself, or SelectOutput(model, output) when an output is named."""
    return model if output is None else SelectOutput(model, output)


def follows_contract(model: nn.Module) -> bool:
    return callable(getattr(model, "layer_one", None)) and callable(getattr(model, "rest", None))


def check_input(x: torch.Tensor, shape: tuple[int, int, int], who: str) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise ConfigError(
            f"{who} expects images of shape (N, {shape[0]}, {shape[1]}, {shape[2]}), got {tuple(x.shape)}"
        )
