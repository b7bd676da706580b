"""The spec grammar every door shares (Python, CLI, records): ``name(key=value, ...)``, its values, and the
one spelling of a spec that names, records and tables use (robustode.registry builds from specs)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .rules import fraction_text, parse_fraction

_SPEC = re.compile(r"\s*(?P<name>[^()\s]+)\s*(?:\((?P<args>[^()]*)\))?\s*\Z")
_KEY = re.compile(r"[A-Za-z_]\w*\Z")


def parse_spec(spec: str, kind: str = "spec") -> tuple[str, dict[str, Any]]:
    """Split ``"name(key=value, ...)"`` into the name and a dict of settings."""
    match = _SPEC.match(spec) if isinstance(spec, str) else None
    example = "'pgd-20' or 'pgd-20(restarts=5)'" if kind == "attack" else "'pgd-10' or 'pgd-10(alpha=2/255)'"
    if match is None:
        raise ConfigError(f"malformed {kind} spec {spec!r}; expected e.g. {example}")
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (match["args"] or "").split(","))):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not _KEY.match(key):
            raise ConfigError(f"malformed setting {item!r} in {kind} spec {spec!r}; expected key=value")
        if key in settings:
            raise ConfigError(f"{kind} spec {spec!r} sets {key} twice")
        settings[key] = spec_value(value)
    return match["name"], settings


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


def spec_value(text: str) -> Any:
    """A setting's value from its text: true/false, none, an integer, a fraction or float, else the text."""
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


def normalized_spec(spec: str, kind: str = "spec") -> str:
    """``spec`` in one spelling: no spaces, no empty parentheses, settings sorted by key, numbers in one form
    (a whole fraction of 255 as "2/255", else the shortest decimal): " pgd-1 ( alpha = 0.5 ) " -> "pgd-1(alpha=0.5)".
    No registry is consulted, so a record's spec normalizes the same whatever is registered today."""
    name, settings = parse_spec(spec, kind)
    return spec_text(name, settings)


def spelling(spec: str) -> str:
    """``normalized_spec``, or the text as it is where it follows another grammar (an imported record's
    name): what two records' specs are compared by."""
    try:
        return normalized_spec(spec)
    except ConfigError:
        return spec


def spec_text(name: str, settings: dict) -> str:
    """``name(key=value, ...)`` in the one spelling: settings sorted by key, values as ``normalized_spec`` writes them."""
    items = ", ".join(f"{k}={_value_text(settings[k])}" for k in sorted(settings))
    return f"{name}({items})" if items else name


def _value_text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return str(value).lower()
    return fraction_text(value) if isinstance(value, float) else str(value)


def declared_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The defaults a factory declares: a dataclass's field defaults, a function's keyword defaults."""
    if dataclasses.is_dataclass(factory):
        return {f.name: f.default for f in dataclasses.fields(factory) if f.default is not dataclasses.MISSING}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C factory: no defaults to read
        return {}
    return {p.name: p.default for p in params if p.default is not p.empty}


def same_value(default: Any, value: Any) -> bool:
    """A setting equal to its default (numbers compared as numbers: 0.5 == 1/2, 10 == 10.0)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return default is value
    if isinstance(default, (int, float)) and isinstance(value, (int, float)):
        return abs(default - value) <= 1e-12 * max(1.0, abs(default))
    return default == value
