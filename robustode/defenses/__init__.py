"""Defenses: how one minibatch is trained, built from a spec string.

    from robustode.defenses import create_defense, defenses
    defense = create_defense("yopo-5-3")        # or natural, pgd-10, free-8, fgsm-rs, trades-10
    defense.preset                              # the paper's optimizer and schedule
    defenses.names()                            # registered spec forms

A defense is a dataclass of the paper's hyperparameters with one
``train_step(model, x, y, optimizers, on_step)``; the shared loop in
robustode.training owns everything else. Register your own with
``@register_defense("name")`` (or ``pattern=`` for a family) on a Defense
subclass or a factory returning one.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from ..errors import ConfigError, UnknownNameError
from ..registry import Registry
from .base import Defense, Preset, StepOutput
from .fgsm_rs import FGSMRS
from .free import Free
from .natural import Natural
from .pgd import PGDTraining
from .split import LayerSplit, split_model
from .trades import TRADES
from .yopo import YOPO

defenses = Registry("defense")
register_defense = defenses.register

defenses.add("natural", Natural)
defenses.add("pgd-K", PGDTraining, pattern=r"pgd-(?P<steps>\d+)")
defenses.add("free-M", Free, pattern=r"free-(?P<m>\d+)")
defenses.add("yopo-M-N", YOPO, pattern=r"yopo-(?P<m>\d+)-(?P<n>\d+)")
defenses.add("fgsm-rs", FGSMRS)
defenses.add("trades-K", TRADES, pattern=r"trades-(?P<steps>\d+)")

BUILT_IN = ("natural", "pgd-K", "free-M", "yopo-M-N", "fgsm-rs", "trades-K")


class DefenseSpecError(UnknownNameError, ConfigError):
    """A defense spec that matches no registered form: an unknown name and a bad setting at once."""


def create_defense(spec: str, **overrides) -> Defense:
    """Build the defense ``spec`` (e.g. "pgd-10", "yopo-5-3"); keyword overrides set other fields.

    Raises DefenseSpecError (an UnknownNameError and a ConfigError) for a spec
    of no known form, and ConfigError for out-of-range values (``yopo-0-3``)
    or unknown fields; both messages list the valid forms.
    """
    try:
        factory, parsed, args = defenses.resolve(spec)
    except UnknownNameError:
        raise DefenseSpecError(f"unknown defense {spec!r}; valid forms: {_valid_forms()}") from None
    _check_overrides(spec, factory, parsed, overrides)
    try:
        defense = factory(*args, **{**parsed, **overrides})
    except ConfigError as err:
        raise ConfigError(f"bad defense spec {spec!r}: {err}; valid forms: {_valid_forms()}") from None
    defense.spec = spec
    return defense


def _check_overrides(spec: str, factory, parsed: dict, overrides: dict) -> None:
    for name, value in overrides.items():
        if name in parsed and value != parsed[name]:
            raise ConfigError(f"defense {spec!r} already sets {name}={parsed[name]}; got {name}={value!r} as well")
    if is_dataclass(factory):
        known = [f.name for f in fields(factory) if f.init]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(f"defense {spec!r} has no setting {', '.join(unknown)}; its settings: {', '.join(known)}")


def _valid_forms() -> str:
    extra = [n for n in defenses.names() if n not in BUILT_IN]  # user-registered entries
    forms = ", ".join(BUILT_IN + tuple(extra))
    return f"{forms} (K, M, N positive integers, e.g. pgd-10, free-8, yopo-5-3, trades-10)"


__all__ = [
    "FGSMRS",
    "TRADES",
    "YOPO",
    "Defense",
    "DefenseSpecError",
    "Free",
    "LayerSplit",
    "Natural",
    "PGDTraining",
    "Preset",
    "StepOutput",
    "create_defense",
    "defenses",
    "register_defense",
    "split_model",
]
