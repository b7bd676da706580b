"""Split a model that torch.fx cannot trace (control flow on values), with forward hooks.

One eval-mode forward of an example batch, with a hook on every leaf submodule
(a module whose only children are its parametrizations, e.g. a conv under
weight norm, counts as a leaf; the model itself never does), records which
modules run, in order, and on which tensors. When the input tensor itself goes
into exactly one module, and from there through modules without trainable
parameters (if any) straight into a module with trainable parameters, those
modules are layer one. The rest is the model's own forward with layer one's
modules answering instead of running: the last answers z; the input and the
other answers are sealed stand-ins, on which any operation but a read of their
shape, dtype or device raises, so a forward that reads the input anywhere else
(a skip from the input, ``if x.mean() > 0.6``) is refused instead of seeing
made-up values. The stand-in of the input has the example's shape: the split
holds for batches of that (C, H, W).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError, first_line
from ..modes import bn_mode
from ..utils import forked_rng
from .layer_split import ADVICE, LayerSplit, trains


@dataclass
class _Call:
    module: nn.Module
    args: tuple
    kwargs: dict
    output: object


def hook_split(model: nn.Module, example: torch.Tensor, reason: str) -> LayerSplit:
    """The hook split of ``model``; ``reason`` says why fx could not trace it (for the refusal)."""
    who = type(model).__name__
    chain = _chain(_record(model, example), example)
    if isinstance(chain, str):
        raise ConfigError(f"fx cannot trace {who} ({reason}) and forward hooks cannot split it ({chain}): {ADVICE}")
    names = {m: n for n, m in model.named_modules()}
    modules = [c.module for c in chain]
    layer_one = modules[0] if len(modules) == 1 else nn.Sequential(*modules)
    description = f"layer one: {' -> '.join(names[m] for m in modules)} (found by forward hooks)"
    stand_ins = [("its input", example)] + [(f"{names[c.module]}'s output", c.output) for c in chain[:-1]]
    rest = HookedRest(model, modules, [(label, tuple(t.shape[1:]), t.dtype) for label, t in stand_ins])
    return LayerSplit(layer_one, rest, list(layer_one.parameters()), description, layer_one)


def _units(model: nn.Module) -> list[nn.Module]:
    """The submodules whose calls are recorded: leaves, a parametrized module counting as one."""
    inside = {id(m) for owner in model.modules() if parametrize.is_parametrized(owner)
              for m in owner.parametrizations.modules()}  # called on the weights, not on tensors of the forward
    return [m for m in model.modules() if m is not model and id(m) not in inside
            and all(parametrize.is_parametrized(m) and c is m.parametrizations for c in m.children())]


def _record(model: nn.Module, example: torch.Tensor) -> list[_Call]:
    calls: list[_Call] = []
    handles = [m.register_forward_hook(lambda m, a, k, out: calls.append(_Call(m, a, k, out)), with_kwargs=True)
               for m in _units(model)]
    try:
        with torch.no_grad(), bn_mode(model, "eval"), forked_rng(example.device):
            model(example)
    except Exception as err:  # whatever the user's model raises, the one-line error names it
        raise ConfigError(f"{type(model).__name__} fails on a batch of shape {tuple(example.shape)} "
                          f"({first_line(err)})") from err
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _chain(calls: list[_Call], x: torch.Tensor) -> list[_Call] | str:
    """The calls of layer one's modules, in order, or why there are none."""
    if not calls or not _takes(calls[0], x):
        return "its input goes through an operation before any submodule"
    if any(_takes(c, x) or any(v is x for v in c.kwargs.values()) for c in calls[1:]):
        return "its input goes into more than one submodule"
    chain = [calls[0]]
    while not trains(chain[-1].module):
        following = calls[len(chain)] if len(chain) < len(calls) else None
        if following is None or not isinstance(chain[-1].output, torch.Tensor) or \
                not _takes(following, chain[-1].output):
            return f"the input goes into {type(calls[0].module).__name__}, and no module with trainable parameters follows"
        chain.append(following)
    if any(sum(c.module is link.module for c in calls) > 1 for link in chain):
        return "a module of layer one runs more than once"
    return chain


def _takes(call: _Call, tensor: torch.Tensor) -> bool:
    return len(call.args) == 1 and call.args[0] is tensor and not call.kwargs


class HookedRest:
    """rest(z): the model's forward with layer one's modules answering instead of running."""

    def __init__(self, model: nn.Module, chain: list[nn.Module], stand_ins: list[tuple[str, tuple, torch.dtype]]):
        self.model, self.chain, self.stand_ins = model, chain, stand_ins  # (label, shape after the batch, dtype)

    def __call__(self, z: torch.Tensor):
        # One element expanded to the shape: the stand-ins are never read, so they need no memory of their own.
        sealed = [_seal(torch.empty((), dtype=dtype, device=z.device).expand(z.shape[0], *shape), label)
                  for label, shape, dtype in self.stand_ins]
        try:
            with _answering(self.chain, sealed[1:] + [z]):
                return self.model(sealed[0])
        except _Read as read:
            raise ConfigError(f"{type(self.model).__name__} reads {read.label} after layer one ({read.op}), so more "
                              "than layer one's output feeds the rest") from None


class _Read(Exception):
    def __init__(self, label: str, op: str):
        super().__init__(f"{label}: {op}")
        self.label, self.op = label, op


# Reads that see no values (FlopCounterMode's module tracker reads requires_grad of every module input)
_METADATA = {getattr(torch.Tensor, name).__get__ for name in (
    "shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_leaf", "grad_fn", "is_cuda", "is_sparse",
    "is_quantized", "is_meta", "is_nested")} | {torch.Tensor.size, torch.Tensor.dim, torch.Tensor.__len__,
                                               torch.Tensor.is_floating_point, torch.Tensor.is_complex}


class _Sealed(torch.Tensor):
    """A stand-in the rest must not read: any operation on it but a metadata read raises _Read."""

    label = "a stand-in"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in _METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))
        label = next((a.label for a in args if isinstance(a, _Sealed)), cls.label)
        raise _Read(label, _op_name(func))


def _op_name(func) -> str:
    """x.mean -> "mean"; the getter of x.grad (the getset descriptor's __get__) -> "grad"."""
    name = getattr(func, "__name__", str(func))
    return getattr(getattr(func, "__self__", None), "__name__", name) if name == "__get__" else name


def _seal(tensor: torch.Tensor, label: str) -> _Sealed:
    sealed = tensor.as_subclass(_Sealed)
    sealed.label = label
    return sealed


@contextmanager
def _answering(modules: list[nn.Module], answers: list[torch.Tensor]) -> Iterator[None]:
    saved = [m.__dict__.get("forward") for m in modules]
    for module, answer in zip(modules, answers):
        module.forward = functools.partial(_answer, answer)  # an instance attribute: Module.__call__ calls it
    try:
        yield
    finally:
        for module, old in zip(modules, saved):
            if old is None:
                del module.forward
            else:
                module.forward = old


def _answer(answer: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return answer
