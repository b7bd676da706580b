"""Split a model that torch.fx cannot trace (control flow on values), with forward hooks.

One eval-mode forward of an example batch, with a hook on every leaf module,
records which modules run, in order, and on which tensors. When the input tensor
itself goes into exactly one module, and from there through modules without trainable
parameters (if any) straight into a module with trainable parameters, those modules are
layer one. The rest is the model's own forward with layer one's modules
answering instead of running: the last answers z, the others and the input are
NaN, so any use of them outside layer one turns the output to NaN and the
verification that follows (robustode.defenses.split.verify) refuses the split.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import forked_rng
from .common import bn_mode
from .split import ADVICE, LayerSplit, first_line, trains


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
    layer_one = chain[0] if len(chain) == 1 else nn.Sequential(*chain)
    description = f"layer one: {' -> '.join(names[m] for m in chain)} (found by forward hooks)"
    rest = HookedRest(model, chain, tuple(example.shape[1:]), example.dtype)
    return LayerSplit(layer_one, rest, list(layer_one.parameters()), description, layer_one)


def _record(model: nn.Module, example: torch.Tensor) -> list[_Call]:
    calls: list[_Call] = []
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(lambda m, a, k, out: calls.append(_Call(m, a, k, out)), with_kwargs=True)
               for m in leaves]
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


def _chain(calls: list[_Call], x: torch.Tensor) -> list[nn.Module] | str:
    """Layer one's modules, in order, or why there are none."""
    if not calls or not _takes(calls[0], x):
        return "its input goes through an operation before any submodule"
    if any(_takes(c, x) or any(v is x for v in c.kwargs.values()) for c in calls[1:]):
        return "its input goes into more than one submodule"
    chain = [calls[0]]
    while not trains(chain[-1].module):
        following = calls[len(chain)] if len(chain) < len(calls) else None
        if following is None or not _takes(following, chain[-1].output):
            return f"the input goes into {type(calls[0].module).__name__}, and no module with trainable parameters follows"
        chain.append(following)
    modules = [c.module for c in chain]
    if any(sum(c.module is m for c in calls) > 1 for m in modules):
        return "a module of layer one runs more than once"
    return modules


def _takes(call: _Call, tensor: torch.Tensor) -> bool:
    return len(call.args) == 1 and call.args[0] is tensor and not call.kwargs


class HookedRest:
    """rest(z): the model's forward with layer one's modules answering instead of running."""

    def __init__(self, model: nn.Module, chain: list[nn.Module], shape: tuple, dtype: torch.dtype):
        self.model, self.chain, self.shape, self.dtype = model, chain, shape, dtype

    def __call__(self, z: torch.Tensor):
        filler = torch.full((z.shape[0], *self.shape), float("nan"), dtype=self.dtype, device=z.device)
        with _answering(self.chain, [filler] * (len(self.chain) - 1) + [z]):
            return self.model(filler)


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
