"""Split a model into layer one and the rest, as YOPO needs: logits = rest(layer_one(x)).

Built-in models follow the layer-one contract (robustode.models.contract). A
custom model either defines ``layer_one(x)``, ``rest(z)`` and
``layer_one_parameters()``, or, when its forward is just its children in
order, names its first child: ``split_model(model, first="conv1")``. robustode
checks such a split on a random batch before trusting it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .common import bn_mode

_CONTRACT = ("layer_one", "rest", "layer_one_parameters")
_NONLINEAR = ("layer_one_nonlinear", "rest_nonlinear", "layer_one_nonlinear_parameters")


@dataclass(frozen=True)
class LayerSplit:
    """layer_one(x) -> z and rest(z) -> logits, and the parameters of layer one.

    ``module`` is the nn.Module layer one runs (None when unknown, e.g. the
    nonlinear split), which robustode.defenses.affine inspects.
    """

    layer_one: Callable[[torch.Tensor], torch.Tensor]
    rest: Callable[[torch.Tensor], torch.Tensor]
    layer_one_params: list
    description: str = ""
    module: nn.Module | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.layer_one(x))


def split_model(model: nn.Module, first: str | None = None, nonlinear: bool = False,
                example: torch.Tensor | None = None) -> LayerSplit:
    """The model's layer-one split.

    Args:
        model: a model following the layer-one contract, or (with ``first``)
            one whose forward applies its children in order.
        first: name of the model's first child; the split is then first child /
            remaining children, verified on a random batch in eval mode.
        nonlinear: use the model's ``layer_one_nonlinear`` / ``rest_nonlinear`` /
            ``layer_one_nonlinear_parameters`` (layer one including the first
            nonlinearity), for YOPO's ``nonlinear_layer_one`` option.
        example: a batch whose shape the verification copies (default: the
            model's ``input_shape``, else 3x32x32).
    """
    layer_one, rest, params = _parts(model, first, nonlinear)
    name = type(model).__name__
    if nonlinear:
        description, module = f"{name}.layer_one_nonlinear / rest_nonlinear", None
    elif first is not None:
        description, module = f"first child {first!r} of {name} / the other children", layer_one
    else:
        stem = getattr(model, "stem", None)  # the contract's layer one: layer_one() checks the shape, then runs it
        description, module = f"{name}.layer_one / rest", stem if isinstance(stem, nn.Module) else None
    split = LayerSplit(layer_one, rest, list(params()), description, module)
    if first is not None:
        _verify(model, split, first, example)
    return split


def layer_one_parameters(model: nn.Module, first: str | None = None, nonlinear: bool = False) -> list:
    """Layer one's parameters, found without running the model (optimizers exist before the first batch)."""
    return list(_parts(model, first, nonlinear)[2]())


def _parts(model: nn.Module, first: str | None, nonlinear: bool) -> tuple[Callable, Callable, Callable]:
    name = type(model).__name__
    if nonlinear:
        if first is not None:
            raise ConfigError("nonlinear_layer_one needs the model's own split; it cannot be combined with first=")
        return _methods(model, _NONLINEAR, f"model {name} does not support nonlinear_layer_one")
    if first is not None:
        return _children(model, first)
    return _methods(model, _CONTRACT, f"model {name} does not follow the layer-one contract")


def _methods(model: nn.Module, names: tuple[str, str, str], problem: str) -> tuple[Callable, Callable, Callable]:
    missing = [n for n in names if not callable(getattr(model, n, None))]
    if missing:
        raise ConfigError(
            f"{problem} (missing {', '.join(missing)}): define {names[0]}(x), {names[1]}(z) and {names[2]}(), "
            "or pass first=<name of the first submodule> for a model whose forward is the sequence of its children"
        )
    return tuple(getattr(model, n) for n in names)


def _children(model: nn.Module, first: str) -> tuple[Callable, Callable, Callable]:
    children = list(model.named_children())
    names = [n for n, _ in children]
    if not children or names[0] != first:
        raise ConfigError(f"first={first!r} is not the first submodule of {type(model).__name__} "
                          f"(its submodules, in order: {', '.join(names) or 'none'})")
    layer_one, others = children[0][1], [m for _, m in children[1:]]

    def rest(z: torch.Tensor) -> torch.Tensor:
        for module in others:
            z = module(z)
        return z

    return layer_one, rest, layer_one.parameters


def _verify(model: nn.Module, split: LayerSplit, first: str, example: torch.Tensor | None) -> None:
    """The split must reproduce model(x): a forward may do more than apply its children in order."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    shape = example.shape if example is not None else (2, *getattr(model, "input_shape", (3, 32, 32)))
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)  # leaves the global RNG alone
    problem = (f"{type(model).__name__}'s forward is not its children applied in order, so first={first!r} "
               "cannot split it: define layer_one(x), rest(z) and layer_one_parameters() on the model")
    with torch.no_grad(), bn_mode(model, "eval"):
        try:
            direct, composed = model(x), split(x)
        except (RuntimeError, TypeError, ValueError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{problem} (applying its children in order failed: {first_line})") from err
    if direct.shape != composed.shape or not torch.allclose(direct, composed, rtol=1e-5, atol=1e-5):
        raise ConfigError(problem)
