"""The attack registry, the Attack object it builds, and spec strings.

A spec string names a registry entry, optionally with keyword settings:

    "pgd-20"                         PGD, 20 steps, eps 8/255, step 2/255
    "pgd-50(restarts=5, norm=l2, eps=0.5)"
    "autoattack", "autoattack-dev", "fgsm", "square(n_queries=1000)"
    "torchattacks:CW(c=1, steps=50)"

Values are parsed as booleans (true/false), none, integers, fractions (8/255),
floats, or else kept as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from ..registry import Registry
from ..utils import parse_fraction

attacks = Registry("attack")

_SPEC = re.compile(r"\s*(?P<name>[^()\s]+)\s*(?:\((?P<args>[^()]*)\))?\s*\Z")
_KEY = re.compile(r"[A-Za-z_]\w*\Z")


class Attack:
    """An attack ready to run: ``attack(model, x, y) -> x_adv``.

    ``name`` is the spec it was built from and ``settings`` a JSON-friendly dict
    that results record. ``blackbox`` marks attacks that use model outputs only
    (the gradient-masking check compares them with the white-box ones).
    """

    blackbox: bool = False

    def __init__(self, name: str, settings: dict):
        self.name = name
        self.settings = settings

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def run(self, model, x, y) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x_adv and, for attacks made of parts, a per-point mask of the points
        that only a black-box part fooled (None for single attacks)."""
        return self(model, x, y), None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.settings})"


class FunctionAttack(Attack):
    """An attack function ``fn(model, x, y, **settings)`` with its settings bound."""

    def __init__(self, name: str, fn: Callable[..., torch.Tensor], settings: dict):
        super().__init__(name, settings)
        self.fn = fn

    def __call__(self, model, x, y):
        return self.fn(model, x, y, **self.settings)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name(key=value, ...)"`` into the name and a dict of settings."""
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    if match is None:
        raise ConfigError(f"malformed attack spec {spec!r}; expected e.g. 'pgd-20' or 'pgd-20(restarts=5)'")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (match["args"] or "").split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not _KEY.match(key):
            raise ConfigError(f"malformed setting {item!r} in attack spec {spec!r}; expected key=value")
        kwargs[key] = _value(value)
    return match["name"], kwargs


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list of specs, keeping commas inside parentheses:
    ``"pgd-20(restarts=5, norm=l2),autoattack"`` -> ``["pgd-20(restarts=5, norm=l2)", "autoattack"]``."""
    specs, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            specs.append(current)
            current = ""
        else:
            current += char
    return [spec.strip() for spec in [*specs, current] if spec.strip()]


def _value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return parse_fraction(text)
    except ConfigError:
        return text


def build(spec: str | Attack, **defaults: Any) -> Attack:
    """Build an Attack from a spec string; an Attack passes through unchanged.

    ``defaults`` (e.g. ``eps``) apply unless the spec sets them itself.
    """
    if isinstance(spec, Attack):
        return spec
    name, kwargs = parse_spec(spec)
    attack = attacks.get(name, **{**defaults, **kwargs})
    attack.name = spec.strip()
    return attack
