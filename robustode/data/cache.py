"""Decoded image folders kept as tensors, so only the first load pays for decoding."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

# Bump when the decoding or the stored layout changes, so old caches are not reused.
CACHE_VERSION = 1


def cache_file(cache_dir: Path, stem: str, key: object) -> Path:
    """Where the decoded arrays of a source whose identity is ``key`` are kept."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, key], sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{stem}-{digest}.pt"


def load_cached(path: Path) -> dict | None:
    """The stored tensors, or None when there is no usable cache file."""
    if not path.is_file():
        return None
    try:
        arrays = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(arrays, dict):
            raise TypeError(f"holds a {type(arrays).__name__}, not a dict")
        return arrays
    except Exception as err:  # noqa: BLE001  (torch.load fails on damaged files in many ways)
        # A truncated or stale file only costs a fresh decode; say so and carry on.
        warnings.warn(f"ignoring unreadable cache {path} ({err}); decoding again", stacklevel=2)
        return None

def save_cached(path: Path, arrays: dict) -> bool:
    """Store the tensors atomically; a read-only data directory only costs speed."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            torch.save(arrays, f)
        os.replace(tmp, path)  # readers never see a half-written cache
        return True
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"could not write the cache {path} ({err}); the next load decodes again", stacklevel=2)
        return False
