"""``robustode list``: one line per registered model, defense, attack and data set."""

from __future__ import annotations

from rich.table import Table


def _rows(what: str, pattern: str) -> list[tuple[str, ...]]:
    if what == "models":
        from ..models import describe

        return [(d["name"], "-" if d["params"] is None else f"{d['params']:,}", d["summary"]) for d in describe(pattern)]
    registry = _registry(what)
    return [(e.name, e.summary) for e in registry.entries(pattern)]


def _registry(what: str):
    if what == "defenses":
        from ..defenses import defenses

        return defenses
    if what == "attacks":
        from ..attacks import attacks

        return attacks
    from ..data import datasets

    return datasets


def print_listing(console, what: str | None, pattern: str = "*") -> None:
    for kind in [what] if what else ["models", "defenses", "attacks", "datasets"]:
        table = Table(title=kind, title_justify="left")
        table.add_column("name", no_wrap=True)
        if kind == "models":
            table.add_column("params (10 classes)", justify="right")
        table.add_column("what it is")
        rows = _rows(kind, pattern)
        for row in rows:
            table.add_row(*row)
        console.print(table if rows else f"no {kind} match {pattern!r}")
