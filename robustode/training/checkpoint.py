"""Checkpoints: written atomically, read with ``weights_only=True``, verified by a digest.

A checkpoint is a dict of tensors, dicts, lists, numbers and strings only, so
``torch.load(weights_only=True)`` reads it without running any pickled code. It
carries a SHA-256 digest of its whole payload (every tensor's bytes, dtype and
shape, and every other value), checked on every load: torch's zip reader checks
no CRC, so flipped bits in the tensor data would otherwise load as other weights.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, first_line
from ..files import content_digest
from ..models import create
from .run import RunInfo

FORMAT = "robustode-checkpoint"
VERSION = 2  # 2: with a payload digest; version 1 (no digest) still loads, unverified
READS = (1, 2)
REQUIRED = ("model", "optimizers", "schedulers", "epoch", "steps", "rng", "config")
# What torch.load raises on a damaged file: damage in the pickle's structure reaches the unpickler as a memo
# key or index that is not there, an argument of the wrong type, a bad length, a failed assertion of torch.
UNREADABLE = (RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError,
              MemoryError, AssertionError, zipfile.BadZipFile)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        payload = {"format": FORMAT, "version": VERSION, **state}
        payload["digest"] = payload_digest(payload)
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk, a vanished folder: the user's to fix, and the last checkpoint stays
        tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is left as it was" if path.exists() else "no checkpoint was written"
        raise CheckpointError(f"cannot write checkpoint {path} ({err.strerror or err}); {kept}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a robustode checkpoint; a missing, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: "
                              "it is not the zip archive torch.save writes")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _unpickler_detail(e)
        raise CheckpointError(f"checkpoint {path} cannot be read with weights_only=True ({detail}): "
                              "it is corrupt or not a robustode checkpoint") from None
    except UNREADABLE as e:
        detail = first_line(e, typed=True)
        raise CheckpointError(f"checkpoint {path} is corrupt and cannot be read ({detail})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a robustode checkpoint (a {type(state).__name__} "
                              f"without format={FORMAT!r})")
    if state.get("version") not in READS:
        raise CheckpointError(f"checkpoint {path} has format version {state.get('version')!r}; "
                              f"this robustode reads versions {', '.join(map(str, READS))}")
    if state["version"] >= 2 and state.get("digest") != payload_digest(state):
        raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match the digest written "
                              "with them (changed on disk after saving)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def payload_digest(state: dict) -> str:
    """SHA-256 over a checkpoint's contents in a fixed order; the "digest" entry itself is left out."""
    return content_digest({k: v for k, v in state.items() if k != "digest"})


def load_model_from_checkpoint(path: str | Path, device="cpu") -> nn.Module:
    """Rebuild a registered model from a checkpoint (its name and arguments are stored in it)."""
    return model_from_state(load_checkpoint(path), path, device)


def model_from_state(state: dict, source: str | Path, device="cpu") -> nn.Module:
    """The registered model of a loaded checkpoint, with its weights, on ``device``."""
    setup = RunInfo.from_dict(state["config"], str(source)).model
    if not setup.name:
        raise CheckpointError(
            f"checkpoint {source} holds a custom model ({setup.class_name}) that robustode "
            "cannot rebuild by name; build it yourself, then "
            "model.load_state_dict(load_checkpoint(path)['model'])")
    model = create(setup.name, num_classes=setup.num_classes, **setup.kwargs)
    model.load_state_dict(state["model"])
    return model.to(device)


def rng_state(device: torch.device) -> dict:
    """Every random generator a run draws from, as plain lists and tensors."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached": float(cached)},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = np.array(n["keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["cached"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _unpickler_detail(error: Exception) -> str:
    # torch's message is a paragraph of advice; the one useful line follows "WeightsUnpickler error:".
    _, _, detail = str(error).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else first_line(error, typed=False)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some file systems (and Windows) cannot open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state, keeping this machine's kernel choice (CUDA's fused=True fails on CPU)."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, keep in zip(opt.param_groups, kernels):
        group.update(keep)


def to_device(tree, device: torch.device):
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree
