"""Split a model into layer one and the rest, as YOPO needs: logits = rest(layer_one(x)).

Where layer one comes from, first match wins:

1. ``first="conv1"``: the model's first child; its forward must be its children in order.
2. The layer-one contract (every built-in model): methods ``layer_one(x)``,
   ``rest(z)`` and ``layer_one_parameters()``, and optionally ``layer_one_module()``
   (robustode.models.contract).
3. The lighter contract: ``layer_one`` and ``rest`` submodules; layer one's
   parameters are the ``layer_one`` submodule's.
4. Any other model: found automatically. torch.fx traces the forward; layer one
   is the first layer with trainable parameters (or operation on a weight) that
   every path from the input passes through, with the preprocessing in front of
   it (robustode.split.trace_split).
   A forward fx cannot trace (control flow on values) is split with forward
   hooks when its input goes straight into one submodule (robustode.split.hook_split).

Every split is checked on a random batch, in eval and in train mode, before
anyone trusts it: ``rest(layer_one(x))`` must equal ``model(x)``, and so must
the input's gradient through them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ConfigError, first_line
from ..modes import bn_mode, frozen_bn_stats
from ..utils import forked_rng
from .hook_split import hook_split
from .layer_split import ADVICE, CONTRACT, LayerSplit
from .trace_split import TraceFailure, trace_split

_METHODS = ("layer_one", "rest", "layer_one_parameters")
_NONLINEAR = ("layer_one_nonlinear", "rest_nonlinear", "layer_one_nonlinear_parameters")


def split_model(model: nn.Module, first: str | None = None, nonlinear: bool = False,
                example: torch.Tensor | None = None) -> LayerSplit:
    """The model's layer-one split, verified on a random batch.

    Args:
        model: any model mapping images in [0, 1] to logits (see the module docstring
            for how layer one is found).
        first: name of the model's first child; the split is then first child /
            remaining children.
        nonlinear: use the model's ``layer_one_nonlinear`` / ``rest_nonlinear`` /
            ``layer_one_nonlinear_parameters`` (layer one including the first
            nonlinearity), for YOPO's ``nonlinear_layer_one`` option.
        example: a batch whose shape and device the verification copies (default: the
            model's ``input_shape``, else 3x32x32, on the model's device).

    Raises ConfigError, in one line, when no split is found or a split does not
    reproduce the model.
    """
    example = example_batch(model, example)
    split, advice = _find(model, first, nonlinear, example)
    verify(model, split, example, advice)
    return split


def _find(model: nn.Module, first: str | None, nonlinear: bool, example: torch.Tensor) -> tuple[LayerSplit, str]:
    """The split, and what to do when it does not reproduce the model's forward."""
    name = type(model).__name__
    if nonlinear:
        if first is not None:
            raise ConfigError("nonlinear_layer_one needs the model's own split; it cannot be combined with first=")
        return (_methods(model, _NONLINEAR, f"model {name} does not support nonlinear_layer_one"),
                "its forward must equal rest_nonlinear(layer_one_nonlinear(x))")
    if first is not None:
        return _children(model, first), f"with first=, its forward must run its submodules in order; else {CONTRACT}"
    if all(callable(getattr(model, n, None)) for n in _METHODS):
        return _methods(model, _METHODS, ""), "its forward must equal rest(layer_one(x))"
    parts = getattr(model, "layer_one", None), getattr(model, "rest", None)
    if all(isinstance(p, nn.Module) for p in parts):
        return (LayerSplit(parts[0], parts[1], list(parts[0].parameters()),
                           "layer one: layer_one (the model's submodule)", parts[0]),
                "its forward must equal rest(layer_one(x)), since its layer_one and rest submodules are taken "
                "for its split (rename them to have layer one found by tracing)")
    try:
        return trace_split(model, example), ADVICE
    except TraceFailure as failure:
        return hook_split(model, example, failure.reason), ADVICE


def _methods(model: nn.Module, names: tuple[str, str, str], problem: str) -> LayerSplit:
    missing = [n for n in names if not callable(getattr(model, n, None))]
    if missing:
        raise ConfigError(
            f"{problem} (missing {', '.join(missing)}): define {names[0]}(x), {names[1]}(z) and {names[2]}()"
        )
    layer_one, rest, params = (getattr(model, n) for n in names)
    module = _layer_one_module(model) if names == _METHODS else None
    where = f"the model's {names[0]}()"
    name = next((n for n, m in model.named_modules() if m is module), None) if module is not None else None
    return LayerSplit(layer_one, rest, list(params()), f"layer one: {f'{name} ({where})' if name else where}", module)


def _layer_one_module(model: nn.Module) -> nn.Module | None:
    """What the contract's optional ``layer_one_module()`` returns: the module layer_one(x) runs, or None."""
    declared = getattr(model, "layer_one_module", None)
    module = declared() if callable(declared) else None
    if module is not None and not isinstance(module, nn.Module):
        raise ConfigError(f"{type(model).__name__}.layer_one_module() returned {type(module).__name__}: "
                          "it must return the nn.Module that layer_one(x) runs, or None")
    return module


def _children(model: nn.Module, first: str) -> LayerSplit:
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

    return LayerSplit(layer_one, rest, list(layer_one.parameters()), f"layer one: {first} (first=)", layer_one)


def example_batch(model: nn.Module, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        return example
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(2, *getattr(model, "input_shape", (3, 32, 32)), device=device)


def verify(model: nn.Module, split: LayerSplit, example: torch.Tensor, advice: str = ADVICE) -> None:
    """rest(layer_one(x)) must equal model(x) on a random batch shaped like ``example``, in both modes.

    Both sides draw the same random numbers (the RNG is reseeded before each and
    restored after), batch norm keeps its statistics, every other buffer starts
    each side as it was, and autocast is off. Then the input's gradients must
    agree too, in train mode, where YOPO uses them: equal values can hide a
    different backward (a custom autograd Function or a backward hook that the
    split would miss).
    """
    dtype = example.dtype if example.is_floating_point() else torch.float32
    x = torch.rand(example.shape, generator=torch.Generator().manual_seed(0)).to(example.device, dtype)
    where = f"the split of {type(model).__name__} ({split.description or 'layer one / rest'})"
    with _same_buffers(model) as reset:
        for mode in ("eval", "train"):
            with (torch.no_grad(), bn_mode(model, mode), frozen_bn_stats(model), forked_rng(example.device),
                  torch.autocast(example.device.type, enabled=False)):
                direct = _seeded(model, x, reset, f"{type(model).__name__} fails on a batch of shape {tuple(x.shape)}")
                composed = _seeded(split, x, reset, f"{where} fails in {mode} mode", advice)
            gap = difference(direct, composed)
            if gap is not None:
                raise ConfigError(f"{where} does not reproduce {type(model).__name__}'s forward in "
                                  f"{mode} mode ({gap}): {advice}")
        with (bn_mode(model, "train"), frozen_bn_stats(model), forked_rng(example.device),
              torch.autocast(example.device.type, enabled=False)):
            gap = _gradient_gap(model, split, x, reset)
    if gap is not None:
        raise ConfigError(f"{where} does not reproduce {type(model).__name__}'s gradients in train mode ({gap}): "
                          f"{advice}")


@contextmanager
def _same_buffers(model: nn.Module) -> Iterator[Callable[[], None]]:
    """A reset() that puts the model's buffers back as they were, for each side of the verification to start
    from the same state (spectral norm moves its u and v on every train-mode forward); reset on exit too."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]

    def reset() -> None:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)

    try:
        yield reset
    finally:
        reset()


def _gradient_gap(model: nn.Module, split: LayerSplit, x: torch.Tensor, reset) -> str | None:
    """How the input's gradients of <output, a fixed probe> through the model and through the split differ.

    The input's gradient is what YOPO's inner steps and every attack follow. Parameter gradients are not
    compared: computing them would fire the model's gradient hooks (a user's, DDP's).
    """
    grads = []
    for fn in (model, split):
        inputs = x.clone().requires_grad_(True)
        with torch.enable_grad():
            reset()
            torch.manual_seed(0)
            outs = [t for t in _tensors(fn(inputs)) if t.requires_grad]
            if not outs:
                return None  # no gradient reaches the input
            probe = sum((t.float() * torch.linspace(-1, 1, t.numel(), device=t.device).view_as(t)).sum() for t in outs)
            grad = torch.autograd.grad(probe, inputs, allow_unused=True)[0]
        grads.append(torch.zeros_like(x) if grad is None else grad)
    gap = (grads[0] - grads[1]).abs().max()
    # a loose tolerance: a missed backward differs by its whole size, not by rounding
    if gap > 1e-3 * grads[0].abs().max() + 1e-6:
        return f"the input's gradient: max |difference| {gap.item():.3g}"
    return None


def _tensors(out) -> list[torch.Tensor]:
    """The floating-point tensors of an output (a tensor, or tuples / lists / dicts of them)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else []
    return [t for item in items for t in _tensors(item)]


def _seeded(fn, x: torch.Tensor, reset, failure: str, advice: str = ""):
    reset()
    torch.manual_seed(0)
    try:
        return fn(x)
    except Exception as err:  # whatever the user's model raises, the one-line error names it
        raise ConfigError(f"{failure} ({first_line(err)}){': ' + advice if advice else ''}") from err


def difference(a, b) -> str | None:
    """None when two outputs (tensors, or tuples / lists / dicts of them) agree to 1e-5; else how they differ."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return f"shape {tuple(b.shape)} instead of {tuple(a.shape)}"
        if not torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-5, equal_nan=True):
            return f"max |difference| {(a.float() - b.float()).abs().nan_to_num(float('inf')).max().item():.3g}"
        return None
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return next((d for d in (difference(a[k], b[k]) for k in a) if d is not None), None)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b):
        return next((d for d in map(difference, a, b) if d is not None), None)
    return f"{type(b).__name__} instead of {type(a).__name__}"
