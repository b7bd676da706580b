"""Small shared helpers: fractions on the command line, devices, provenance."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from fractions import Fraction
from pathlib import Path

import torch

from .errors import ConfigError


def parse_fraction(value: str | float | int, name: str = "value") -> float:
    """Parse ``"8/255"``, ``"0.031"`` or a number into a float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{name} must be a number or a fraction like 8/255, got {value!r}") from None


def check_eps(eps: float, name: str = "eps") -> float:
    """Perturbation budgets live in pixel space, so they must lie in [0, 1]."""
    eps = parse_fraction(eps, name)
    if not 0.0 <= eps <= 1.0:
        raise ConfigError(f"{name} must lie in [0, 1] (pixel space, e.g. 8/255), got {eps:g}")
    return eps


def check_step(step: float, name: str = "step size") -> float:
    """A step size in pixel space: in (0, 1]. A zero step would train or attack with no perturbation at all."""
    step = parse_fraction(step, name)
    if not 0.0 < step <= 1.0:
        raise ConfigError(f"{name} must lie in (0, 1] (pixel space, e.g. 2/255), got {step:g}")
    return step


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


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
    from ._version import __version__

    return {
        "robustode_version": __version__,
        "git_commit": git_commit(),
        "torch_version": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "device": device_name(device),
        "device_type": device.type,
        "precision": precision,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
