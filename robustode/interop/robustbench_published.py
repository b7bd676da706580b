"""RobustBench's published figures for an entry (its model_info JSON), and how robustode's own compare.

A model_info file gives accuracies in percent, as strings ("67.31") or numbers: ``clean_acc``,
``autoattack_acc`` (L-inf, L2), ``corruptions_acc`` (corruptions), and for some entries ``external`` (a
stronger evaluation by others). robustode keeps them as fractions in the record, beside where they came from,
and compares each with its own measurement: the difference, and whether robustode's 95% interval contains
the published number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DataError

FIELDS = {"clean_acc": "clean", "autoattack_acc": "autoattack", "external": "external", "corruptions_acc": "corruptions"}
NEEDED = {"Linf": "autoattack_acc", "L2": "autoattack_acc", "corruptions": "corruptions_acc"}


def find(path: str | Path, name: str, threat: str) -> Path:
    """``path`` itself (a JSON file), or ``name``.json in a model_info folder (its own, or dataset/threat below)."""
    path = Path(path)
    if path.is_file():
        return path
    for candidate in (path / f"{name}.json", path / "cifar10" / threat / f"{name}.json",
                      path / "model_info" / "cifar10" / threat / f"{name}.json"):
        if candidate.is_file():
            return candidate
    raise DataError(f"no published figures for {name} at {path} (a model_info JSON, or a model_info folder with "
                    f"cifar10/{threat}/{name}.json)")


def read_published(path: str | Path, name: str, threat: str) -> dict:
    """{"source", "clean", "autoattack" or "corruptions", optional "external"}: fractions; DataError in one line
    naming the file and the field when one is missing or malformed."""
    file = find(path, name, threat)
    try:
        info = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{file} is not JSON ({err})") from None
    if not isinstance(info, dict):
        raise DataError(f"{file} holds a {type(info).__name__}, not a model_info object")
    for field in ("clean_acc", NEEDED[threat]):
        if info.get(field) is None:
            raise DataError(f"{file} has no {field!r}: not a RobustBench {threat} model_info file")
    out = {"source": str(file)}
    for field, key in FIELDS.items():
        if info.get(field) is not None:
            out[key] = _fraction(info[field], file, field)
    return out


def _fraction(value, file: Path, field: str) -> float:
    try:
        percent = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        percent = math.nan
    if not 0 <= percent <= 100:  # NaN fails too
        raise DataError(f"{file}: {field} is {value!r}; expected a percentage in [0, 100] such as \"67.31\"")
    return percent / 100


def comparison(published: dict, evaluation) -> list[dict]:
    """One row per published figure: what robustode measured against it, the difference and whether robustode's
    interval contains the published number. AutoAttack without a robustode AutoAttack, and external, compare
    with robustode's worst case (over all its attacks and escalation)."""
    aa = evaluation.autoattack_spec
    ours = {"clean": "clean", "autoattack": aa or "worst_case", "external": "worst_case", "corruptions": "corruptions"}
    rows = []
    for key, value in published.items():
        if key == "source":
            continue
        metric = ours[key]
        mine = evaluation.clean_acc if metric == "clean" else evaluation.worst_case_acc if metric == "worst_case" \
            else evaluation.robust.get(metric)
        low, high = evaluation.intervals.get(metric, (None, None))
        rows.append({"figure": key, "published": value, "robustode": mine, "as": metric,
                     "difference": None if mine is None else mine - value,
                     "inside": None if low is None else low <= value <= high})
    return rows
