"""The argparse types of robustode's options: each turns one flag's text into a value, or says in one line
why it cannot (a ConfigError's message becomes argparse's)."""

from __future__ import annotations

import argparse
import re

from ..errors import ConfigError
from ..rules import BELOW_ONE, BUDGET, COUNT, COUNT0, NONNEG, OPEN_UNIT, POSITIVE, Choice, Each
from ..specs import split_specs
from ..training.loggers import LOGGERS


def _checked(parse):
    """An argparse type from a function raising ConfigError (its message becomes argparse's)."""

    def convert(text: str):
        try:
            return parse(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__  # argparse names the type in "invalid <name> value"
    return convert


@_checked
def budget(text: str) -> float:
    return BUDGET(text, "the value")


@_checked
def positive_number(text: str) -> float:
    return POSITIVE(text, "the value")


@_checked
def below_one(text: str) -> float:
    return OPEN_UNIT(text, "the value")


@_checked
def positive_int(text: str) -> int:
    return COUNT(text, "the value")


@_checked
def count(text: str) -> int:
    return COUNT0(text, "the value")


def _no_empty_item(text: str, example: str) -> None:
    """A list with an empty item ("0,,1", "pgd-20,") is a typo, not a shorter list."""
    if re.search(r"^\s*,|,\s*,|,\s*$", text):
        raise ConfigError(f"an empty item in the list {text!r}; expected e.g. {example}")


@_checked
def seed_list(text: str) -> list[int]:
    _no_empty_item(text, "0,1,2")
    seeds = [COUNT0(part, "a seed") for part in text.split(",") if part.strip()]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"expected distinct seeds separated by commas, e.g. 0,1,2, got {text!r}")
    return seeds


@_checked
def run_folder(text: str) -> str:
    """A run directory's name: one visible folder under --out, never a path (``..``, ``a/b``) or a name the
    leaderboard's search would skip (``.hidden``)."""
    if not re.fullmatch(r"[A-Za-z0-9_=+][A-Za-z0-9._=+-]*", text):
        raise ConfigError(f"{text!r} is no run name: one folder name of letters, digits and . _ = + - that does "
                          "not start with . or - (no path separators; --out says where it goes)")
    return text


@_checked
def attack_list(text: str) -> list[str]:
    _no_empty_item(text, "pgd-20,autoattack")
    names = split_specs(text)  # commas inside a spec's parentheses are its own: "pgd-50(restarts=5, norm=l2)"
    if not names:
        raise ConfigError("expected a comma-separated list of attacks, e.g. pgd-20,autoattack")
    return names


@_checked
def logger_list(text: str) -> tuple[str, ...]:
    return Each(Choice(tuple(LOGGERS)))([part.strip() for part in text.split(",")], "--log")


@_checked
def fraction(text: str) -> float:
    return BELOW_ONE(text, "the fraction")


@_checked
def gigabytes(text: str) -> float:
    return NONNEG(text, "the budget")
