"""The attack registry and the Attack object it builds from a spec string.

A spec string names a registry entry, optionally with keyword settings (the
registry's grammar, robustode.specs.parse_spec):

    "pgd-20"                         PGD, 20 steps, eps 8/255, step 2/255
    "pgd-50(restarts=5, norm=l2, eps=0.5)"
    "autoattack", "autoattack-dev", "fgsm", "square(n_queries=1000)"
    "torchattacks:CW(c=1, steps=50)"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ..errors import ConfigError
from ..registry import Registry
from ..specs import parse_spec, split_specs

attacks = Registry("attack")


class Outcome(NamedTuple):
    """What an attack found: the adversarial images, and for attacks made of parts their own verdict."""

    x_adv: torch.Tensor
    robust: torch.Tensor | None = None  # per point: correct clean and after every part (None: the evaluator judges)
    blackbox_only: torch.Tensor | None = None  # per point: broken only by a black-box part


class Attack:
    """An attack ready to run: ``attack(model, x, y) -> x_adv``.

    ``name`` is the spec it was built from and ``settings`` a JSON-friendly dict
    that results record. ``blackbox`` marks attacks that use model outputs only
    (the gradient-masking check compares them with the white-box ones).
    """

    blackbox: bool = False
    # The spec and the defaults (e.g. eps) ``build_all`` built it from, for an attack an evaluation built
    # from a string: a randomized model gets it rebuilt with EOT. None for an Attack given as an object.
    spec: str | None = None
    defaults: dict | None = None

    def __init__(self, name: str, settings: dict):
        self.name = name
        self.settings = settings

    def with_eot(self, draws: int) -> Attack:
        """This attack against a randomized model: its spec built again with ``eot=draws`` (where its
        factory takes ``eot``); an attack not built from a spec, or ``draws`` 1, is itself."""
        if draws == 1 or self.spec is None:
            return self
        return build(self.spec, **{**self.defaults, "eot": draws})

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, model, x, y) -> Outcome:
        """The adversarial images; attacks made of parts (AutoAttack) add their own verdict."""
        return Outcome(self(model, x, y))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.settings})"


class FunctionAttack(Attack):
    """An attack function ``fn(model, x, y, **settings)`` with its settings bound."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], settings: dict):
        super().__init__(name, settings)
        self.fn = fn

    def __call__(self, model, x, y):
        return self.fn(model, x, y, **self.settings)


def build(spec: str | Attack, **defaults: Any) -> Attack:
    """Build an Attack from a spec string; an Attack passes through unchanged.

    ``defaults`` (e.g. ``eps``) apply unless the spec sets them itself.
    """
    if isinstance(spec, Attack):
        return spec
    attack = attacks.create(spec, defaults)
    attack.name = attacks.canonical(spec, defaults)  # one spelling per meaning: "pgd-20()" is "pgd-20"
    return attack


def build_all(specs, *, allow_none: bool = False, **defaults: Any) -> list[Attack]:
    """The attacks of one evaluation, each built once (``build``); their names must differ. An attack built
    here from a string remembers its spec and defaults (``with_eot``); one given as an object is used as is."""
    built = []
    for spec in (specs,) if isinstance(specs, (str, Attack)) else specs:
        attack = build(spec, **defaults)
        if isinstance(spec, str):
            attack.spec, attack.defaults = spec.strip(), dict(defaults)
        built.append(attack)
    names = [a.name for a in built]
    if not built and not allow_none:
        raise ConfigError("the evaluation needs at least one attack, e.g. pgd-20")
    if len(set(names)) != len(names):
        raise ConfigError(f"attack names must be unique, got {names}")
    return built


__all__ = ["Attack", "FunctionAttack", "Outcome", "attacks", "build", "build_all", "parse_spec", "split_specs"]
