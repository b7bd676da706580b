"""Small shared helpers: fractions on the command line, devices, provenance."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

import torch

from ._version import __version__
from .errors import ConfigError
from .rules import check_positive_int, parse_fraction  # noqa: F401  (their home is rules.py)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` means CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for, but torch sees no CUDA device here")
    return device


def model_device(model: torch.nn.Module, device: str | torch.device | None = None) -> torch.device:
    """``device`` resolved (``resolve_device``), or where the model's first parameter or buffer lives (CPU for
    a model without either)."""
    if device is not None:
        return resolve_device(device)
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def forked_rng(device: torch.device):
    """A block whose random draws leave the global RNG (CPU, and ``device`` when CUDA) as it was."""
    return torch.random.fork_rng([device] if device.type == "cuda" else [])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def git_commit() -> str | None:
    """The commit of the robustode checkout, with '+dirty' when it has changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: torch.device, precision: str) -> dict:
    """How a result was obtained: versions, device, precision, date."""
    return {
        "robustode_version": __version__,
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "device": device_name(device),
        "device_type": device.type,
        "precision": precision,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
