"""Field constraints, stated once next to the field they constrain, and one check that enforces them.

A dataclass field declares its rule in its metadata:

    steps: int = rule(10, COUNT, label="steps (K of pgd-K)")
    alpha: float = rule(2 / 255, STEP)

and ``check_fields(obj)`` converts (spec strings such as "2/255" arrive from the command line) and
checks every such field of ``obj`` in place. Defenses, attack settings, the threat model and the
training settings all use it; their hot paths (a train_step, an attack's step) trust what it let through.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Any

from .errors import ConfigError


def parse_fraction(value: str | float | int, name: str = "value") -> float:
    """Parse ``"8/255"``, ``"0.031"`` or a number into a float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{name} must be a number or a fraction like 8/255, got {value!r}") from None


def fraction_text(value: float) -> str:
    """A number as robustode writes it back: "8/255" for a multiple of 1/255 (a budget's usual spelling), "3"
    for a whole number, else the shortest decimal that reads back exactly. ``parse_fraction`` reads each."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    if abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    return repr(value)


@dataclass(frozen=True)
class Number:
    """A number in a range; ``integer`` ones accept digit strings; ``optional`` ones accept None."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # the bound itself is excluded
    high_open: bool = False
    integer: bool = False
    optional: bool = False
    from_text: bool = True  # also parse "2/255" and "10" (spec strings); False: Python numbers only
    says: str = ""  # the range as the error message words it: "{name} must " + says

    def __call__(self, value: Any, name: str):
        if value is None and self.optional:
            return None
        value = self._parse(value, name)
        below = value < self.low or (self.low_open and value == self.low)
        above = value > self.high or (self.high_open and value == self.high)
        if below or above or (math.isnan(value) if isinstance(value, float) else False):
            raise ConfigError(f"{name} must {self.says}, got {_show(value)}")
        return value

    def optional_(self) -> Number:
        """The same rule, also accepting None (a setting whose default is derived from others)."""
        return replace(self, optional=True)

    def typed_(self) -> Number:
        """The same rule for settings given as Python values only (no text to parse)."""
        return replace(self, from_text=False)

    def _parse(self, value, name: str):
        if not self.from_text and (isinstance(value, (str, bool)) or not isinstance(value, (int, float))):
            raise ConfigError(f"{name} must {self.says}, got {value!r}")
        if not self.integer:
            return parse_fraction(value, name)
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must {self.says}, got {value!r}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values."""

    options: tuple

    def __call__(self, value: Any, name: str):
        if value not in self.options:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, self.options))}, got {value!r}")
        return value


@dataclass(frozen=True)
class Each:
    """A tuple of values each passing ``check`` (a single value counts as a tuple of one)."""

    check: Choice | Number

    def __call__(self, value: Any, name: str) -> tuple:
        values = (value,) if isinstance(value, str) else value
        if not isinstance(values, (tuple, list)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return tuple(self.check(v, name) for v in values)


def _show(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


# The rules robustode's settings share.
# An attack's eps: an attack within eps 0 attacks nothing, and its "robust" accuracy is the clean one.
BUDGET = Number(0.0, 1.0, low_open=True, says="lie in (0, 1] (pixel space, e.g. 8/255; eps 0 attacks nothing)")
TRAINING_BUDGET = Number(0.0, 1.0, says="lie in [0, 1] (pixel space, e.g. 8/255)")  # a defense's eps
STEP = Number(0.0, 1.0, low_open=True, says="lie in (0, 1] (pixel space, e.g. 2/255)")  # a step size
COUNT = Number(1, integer=True, says="be a positive integer")
COUNT0 = Number(0, integer=True, says="be an integer >= 0")
STRICT_COUNT = Number(1, integer=True, from_text=False, says="be a positive integer")
NONNEG = Number(0.0, says="be >= 0")
POSITIVE = Number(0.0, low_open=True, says="be > 0")
FINITE_NONNEG = Number(0.0, math.inf, high_open=True, says="be a number >= 0 (and finite)")
BELOW_ONE = Number(0.0, 1.0, high_open=True, says="lie in [0, 1)")  # decays, smoothing factors
OPEN_UNIT = Number(0.0, 1.0, low_open=True, high_open=True, says="lie strictly between 0 and 1")


def rule(default, check, *, label: str | None = None, **kwargs):
    """A dataclass field with ``default`` whose values ``check`` enforces (``label`` names it in errors)."""
    return field(default=default, metadata={"check": check, "label": label}, **kwargs)


def check_fields(obj) -> None:
    """Convert and check, in place, every field of the dataclass ``obj`` that declares a rule."""
    for f in fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            value = check(getattr(obj, f.name), f.metadata.get("label") or f.name)
            object.__setattr__(obj, f.name, value)  # frozen dataclasses too


def check_positive_int(value, name: str) -> int:
    """``value`` if it is an int >= 1 (a count given in Python: no text parsed)."""
    return STRICT_COUNT(value, name)
