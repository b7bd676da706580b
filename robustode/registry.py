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

Defenses and attacks are built from spec strings, ``name(key=value, ...)``, by
one grammar for every door (Python, CLI, records): ``create("pgd-10(alpha=2/255)")``.
Values are parsed as booleans (true/false), none, integers, fractions (8/255),
floats, or else kept as strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import ConfigError, DuplicateNameError, UnknownNameError, UnknownSpecError
from .specs import declared_defaults, parse_spec, same_value, spec_text


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
    """Named factories of one kind. ``hint()`` (optional) ends every spec error message, e.g. the valid forms."""

    def __init__(self, kind: str, hint: Callable[[], str] | None = None):
        self.kind = kind
        self.hint = hint
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
            got = repr(name) if isinstance(name, str) else f"a {type(name).__name__}"  # never a tensor's repr
            raise UnknownNameError(f"{self.kind} name must be a non-empty string, got {got}")
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

    def create(self, spec: str, defaults: dict | None = None, **overrides: Any) -> Any:
        """Build from a spec ``"name(key=value, ...)"``.

        Settings come from the name's numbers (``pgd-10``: steps=10), then the parentheses
        (which win over the name), then ``overrides`` (an error where they disagree with the spec).
        ``defaults`` fill only what none of them sets (and what the factory takes).
        Errors are ConfigErrors that quote the spec; an unknown name raises
        UnknownSpecError (an UnknownNameError and a ConfigError).
        """
        name, settings = parse_spec(spec, self.kind)
        try:
            factory, parsed, args = self.resolve(name)
        except UnknownNameError:
            raise UnknownSpecError(self._with_hint(self._unknown_message(name, list_known=self.hint is None))) \
                from None
        given = self._merge(spec, parsed, settings, overrides)
        accepted = _accepted(factory)
        if accepted is not None:
            unknown = sorted(set(given) - accepted)
            if unknown:
                raise ConfigError(self._with_hint(f"{self.kind} {spec!r} has no setting {', '.join(unknown)}; "
                                                  f"its settings: {', '.join(sorted(accepted))}"))
        extra = {k: v for k, v in (defaults or {}).items() if k not in given and (accepted is None or k in accepted)}
        try:
            return factory(*args, **extra, **given)
        except ConfigError as err:
            raise ConfigError(self._with_hint(f"bad {self.kind} spec {spec!r}: {err}")) from None

    def canonical(self, spec: str, defaults: dict | None = None) -> str:
        """The one spelling of ``spec`` (``normalized_spec``) less the settings that repeat a default of its
        name (``defaults`` included, as in ``create``): "pgd-1()", " pgd-1 ( alpha = 2/255 ) " and "pgd-1" are
        one spec when 2/255 is pgd-1's step. Run names, records and tables use it: one name, one row."""
        name, settings = parse_spec(spec, self.kind)
        factory, parsed, _ = self.resolve(name)  # nothing is built: an entrance builds each object once
        values = {**declared_defaults(factory), **(defaults or {}), **parsed}
        return spec_text(name, {k: v for k, v in settings.items() if not (k in values and same_value(values[k], v))})

    def _merge(self, spec: str, parsed: dict, settings: dict, overrides: dict) -> dict:
        """The spec's parentheses refine its name (``pgd-7(steps=9)``: 9 steps); an override that
        disagrees with the spec is an error, never silently one or the other."""
        merged = {**parsed, **settings}
        for key, value in overrides.items():
            if key in merged and merged[key] != value:
                raise ConfigError(f"{self.kind} {spec!r} already sets {key}={merged[key]}; "
                                  f"got {key}={value!r} as well")
            merged[key] = value
        return merged

    def _with_hint(self, message: str) -> str:
        return f"{message}; {self.hint()}" if self.hint else message

    def lookup(self, name: str) -> Callable[..., Any]:
        return self.resolve(name)[0]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a glob pattern, sorted."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def in_order(self) -> list[str]:
        """Every registered name in the order of registration (built-in entries first)."""
        return list(self._entries)

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

    def _unknown_message(self, name: str, list_known: bool = True) -> str:
        known = self.names()
        family = self._entries.get(name)
        if family is not None and family.pattern is not None:  # "wrnD_K" itself: the family's display name
            examples = [n for n in known if n != name and family.pattern.match(n)][:3]
            return (f"{self.kind} {name!r} names a family, not one {self.kind}: put numbers for its capitals"
                    + (f" (e.g. {', '.join(examples)})" if examples else ""))
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        head = name.split(":")[0].split("-")[0]
        close += [n for n in known if n.split("-")[0] == head and n not in close]
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += f"; did you mean {', '.join(close)}?"
        if not list_known:
            return msg
        shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
        return msg + f" (known: {shown})" if known else msg + f" (no {self.kind}s are registered)"


def _convert(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _accepted(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword settings a factory takes; None when it takes any (``**kwargs``) and checks them itself."""
    if dataclasses.is_dataclass(factory):
        return {f.name for f in dataclasses.fields(factory) if f.init}
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
