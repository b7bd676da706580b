"""``robustode list``: one line per registered model, defense, attack, data set and recipe."""

from __future__ import annotations

KINDS = ("models", "defenses", "attacks", "datasets", "recipes")


def rows(kind: str, pattern: str = "*") -> list[tuple[str, str]]:
    """(name, one-line description) for each entry of ``kind`` whose name matches ``pattern``."""
    return [(e.name, e.summary) for e in _registry(kind).entries(pattern)]


def _registry(kind: str):
    if kind == "models":
        from ..models import registry

        return registry
    if kind == "defenses":
        from ..defenses import defenses

        return defenses
    if kind == "attacks":
        from ..attacks import attacks

        return attacks
    if kind == "recipes":
        from ..recipes import recipes

        return recipes
    from ..data import datasets

    return datasets


def print_listing(what: str | None, pattern: str = "*") -> None:
    # Plain lines, never wrapped into a table: easy to read, grep and paste.
    for kind in [what] if what else KINDS:
        found = rows(kind, pattern)
        if not found:
            print(f"no {kind} match {pattern!r}")
            continue
        print(f"{kind}:")
        width = max(len(name) for name, _ in found)
        for name, summary in found:
            print(f"  {name:<{width}}  {summary}".rstrip())
