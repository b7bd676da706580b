"""A record's dict read into its typed parts, and back: every field's type, range and choices checked.

``build(cls, d, source)`` walks the field types of ``cls`` all the way down (a nested part ``X``,
``X | None``, ``list[X]`` and ``dict[str, X]``) and names a bad value by its path, e.g. "field
'evaluation.attack_settings.pgd-20.steps' must be an integer". ``plain(obj)`` gives the JSON types back.

A part whose class sets ``SPARSE = True`` (an attack's settings, a probe row: open sets of settings)
stores only the fields that differ from their defaults; every other part stores every field.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import math
import types
import typing

from ..errors import RecordError

# Field metadata read by the validator: a numeric range, or a set of allowed strings.
FRACTION = {"range": (0.0, 1.0)}
NONNEG = {"range": (0.0, math.inf)}
POSITIVE = {"range": (1, math.inf)}


@functools.cache
def _hints(cls) -> dict:
    """A part's field types, resolved once per class (typing.get_type_hints was most of a record's load time)."""
    return typing.get_type_hints(cls)


def build(cls, d, source: str, prefix: str = "", lenient: bool = False):
    """``cls`` from ``d`` (a dict, or a ``cls`` already), checked; RecordError naming ``source`` and the field's
    path otherwise. ``lenient``: a missing field with a default takes it (a record of an older schema)."""
    if dataclasses.is_dataclass(d) and not isinstance(d, type):
        d = plain(d)
    if not isinstance(d, dict):
        raise RecordError(f"{source}: field '{prefix.rstrip('.')}' must be an object, got {d!r}")
    stored = stored_fields(cls)
    unknown = sorted(set(d) - {f.name for f in stored})
    if unknown:
        raise RecordError(f"{source}: unknown field '{prefix}{unknown[0]}'")
    hints = _hints(cls)
    values = {}
    for f in stored:
        path = prefix + f.name
        if f.name not in d:
            if (lenient or getattr(cls, "SPARSE", False)) and _has_default(f):  # an older schema: it came later
                continue
            raise RecordError(f"{source}: missing field '{path}'")
        values[f.name] = check(d[f.name], hints[f.name], f.metadata, source, path, lenient)
    return cls(**values)


def check(value, hint, meta, source: str, path: str, lenient: bool = False):
    """``value`` typed as ``hint`` says (nested parts built), if it matches it and the field metadata; else raise."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        # An optional part stored as {} (records before it was typed) is None.
        if value is None or (dataclasses.is_dataclass(inner) and isinstance(value, dict) and not value):
            return None
        hint, args = inner, typing.get_args(inner)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, source, path + ".", lenient)
    if typing.get_origin(hint) is list or hint is list:
        if not isinstance(value, list):
            raise RecordError(f"{source}: field '{path}' must be a list, got {value!r}")
        if args:  # list[X]: the metadata applies to each item
            return [check(v, args[0], meta, source, f"{path}[{i}]", lenient) for i, v in enumerate(value)]
        return value
    if typing.get_origin(hint) is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise RecordError(f"{source}: field '{path}' must be an object with string keys, got {value!r}")
        if args:  # dict[str, X]: the metadata applies to each value
            return {k: check(v, args[1], meta, source, f"{path}.{k}", lenient) for k, v in value.items()}
        return value
    return _scalar(value, hint, meta, source, path)


def _scalar(value, hint, meta, source: str, path: str):
    if not _is_type(value, hint):
        raise RecordError(f"{source}: field '{path}' must be {_TYPE_WORDS[hint]}, got {value!r}")
    if "range" in meta and not meta["range"][0] <= value <= meta["range"][1]:
        lo, hi = meta["range"]
        raise RecordError(f"{source}: field '{path}' must lie in [{lo}, {hi}], got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise RecordError(f"{source}: field '{path}' must be one of {', '.join(meta['choices'])}, "
                          f"got {value!r}")
    if meta.get("iso_date"):
        try:
            _dt.datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f"{source}: field '{path}' must be an ISO date, got {value!r}") from None
    return float(value) if hint is float else value


def fits(cls, name: str, value) -> bool:
    """Whether ``value`` is a valid value of the field ``name`` of ``cls``."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    try:
        check(value, _hints(cls)[name], f.metadata, "", name)
    except RecordError:
        return False
    return True


def plain(obj):
    """JSON types: a part as a dict of its stored fields (a sparse part's defaults left out), all the way down."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        sparse = getattr(type(obj), "SPARSE", False)
        return {f.name: plain(getattr(obj, f.name)) for f in stored_fields(type(obj))
                if not (sparse and _has_default(f) and getattr(obj, f.name) == _default(f))}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def stored_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("stored", True)]


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               dict: "an object"}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _is_type(value, hint) -> bool:
    if isinstance(value, bool):  # bool is an int subclass: keep them apart
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, hint)
