"""One small registry pattern for models, defenses, attacks and data sets.

    models = Registry("model")

    @models.register("wrn34_10")
    def wrn34_10(num_classes=10): ...

    models.get("wrn34_10", num_classes=100)
    models.names("wrn*")

Besides plain names there are two kinds of parametrized entries:

- families, registered with a regular expression whose named groups become
  keyword arguments: ``register("pgd-K", pattern=r"pgd-(?P<steps>\\d+)")``
  makes ``get("pgd-10")`` call the factory with ``steps=10``;
- prefixes, registered with a trailing colon: ``register("imagefolder:")``
  makes ``get("imagefolder:/data/x")`` call the factory with ``"/data/x"``.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import DuplicateNameError, UnknownNameError


@dataclass(frozen=True)
class Entry:
    name: str  # display name: "wrn34_10", "pgd-K", "imagefolder:"
    factory: Callable[..., Any]
    pattern: re.Pattern | None = None

    @property
    def summary(self) -> str:
        doc = (self.factory.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, *, pattern: str | None = None):
        """Decorator registering a factory under ``name`` (default: its __name__)."""

        def decorator(factory):
            self.add(name or factory.__name__, factory, pattern=pattern)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., Any], *, pattern: str | None = None) -> None:
        if name in self._entries:
            raise DuplicateNameError(f"{self.kind} {name!r} is already registered")
        compiled = re.compile(pattern + r"\Z") if pattern else None
        self._entries[name] = Entry(name, factory, compiled)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def resolve(self, name: str) -> tuple[Callable[..., Any], dict[str, Any], tuple]:
        """Return (factory, keyword arguments parsed from the name, positional args)."""
        if not isinstance(name, str) or not name:
            raise UnknownNameError(f"{self.kind} name must be a non-empty string, got {name!r}")
        entry = self._entries.get(name)
        if entry is not None and entry.pattern is None and not name.endswith(":"):
            return entry.factory, {}, ()
        for entry in self._entries.values():
            if entry.pattern is not None:
                match = entry.pattern.match(name)
                if match:
                    kwargs = {k: _convert(v) for k, v in match.groupdict().items() if v is not None}
                    return entry.factory, kwargs, ()
        prefix, sep, rest = name.partition(":")
        if sep and rest and prefix + ":" in self._entries:
            return self._entries[prefix + ":"].factory, {}, (rest,)
        raise UnknownNameError(self._unknown_message(name))

    def get(self, name: str, **overrides: Any) -> Any:
        """Build the entry ``name``; keyword overrides win over values parsed from the name."""
        factory, kwargs, args = self.resolve(name)
        return factory(*args, **{**kwargs, **overrides})

    def lookup(self, name: str) -> Callable[..., Any]:
        return self.resolve(name)[0]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry]:
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        head = name.split(":")[0].split("-")[0]
        close += [n for n in known if n.split("-")[0] == head and n not in close]
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += f"; did you mean {', '.join(close)}?"
        shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
        return msg + f" (known: {shown})" if known else msg + f" (no {self.kind}s are registered)"


def _convert(value: str) -> Any:
    return int(value) if value.isdigit() else value
