"""A model from the command line: a registered name, or a factory in the user's own Python code.

    --model preact_resnet18
    --module path/to/models.py:make_model     # a file
    --module mypackage.models:make_model      # an importable module
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from torch import nn

from ..errors import ConfigError, first_line
from ..models import create


def build_model(name: str | None, module: str | None, num_classes: int | None) -> nn.Module:
    """The registered model ``name`` (with ``num_classes``, default 10), or what ``module``'s factory returns."""
    import torch

    torch.manual_seed(0)  # the same initial weights, so the same report, on every run
    if name is not None:
        return create(name, num_classes=num_classes or 10)
    return call_factory(module)


def call_factory(spec: str) -> nn.Module:
    """``FILE.py:NAME`` or ``package.module:NAME``: NAME() called without arguments (or NAME itself, a module)."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigError(f"--module expects FILE.py:FACTORY or package.module:FACTORY, got {spec!r}")
    found = getattr(_import(where), attr, None)
    if found is None:
        raise ConfigError(f"{where} has no {attr!r}")
    if isinstance(found, nn.Module):
        return found
    try:
        model = found()
    except Exception as err:  # the user's code: report its failure in one line
        raise ConfigError(f"calling {attr}() from {where} failed ({first_line(err)})") from err
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{attr}() from {where} returned {type(model).__name__}, not an nn.Module")
    return model


def _import(where: str):
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"no such file: {where}")
            name = f"robustode_user_{path.stem}"  # its own name: never shadows an installed module
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look classes up there
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as err:  # the user's code: report its failure in one line
        raise ConfigError(f"importing {where} failed ({first_line(err)})") from err
