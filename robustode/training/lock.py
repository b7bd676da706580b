"""One process owns a run directory: an exclusive lock on RUN/.lock, held for the whole run.

The lock is ``fcntl.flock`` on an open file, so the operating system releases it
when the process ends in any way (a SIGKILLed run never leaves a stale lock). The
file holds the owner's pid, which a refused second run names. Within one process
the lock is re-entrant: ``ro.train`` holds it around training, evaluation and the
record, and ``fit`` inside takes it again.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against each other
    fcntl = None

_held: dict[Path, list] = {}  # run directory -> [open lock file, depth] for the locks this process holds


@contextmanager
def run_lock(run_dir: str | os.PathLike | None):
    """Hold the run directory's lock for the body (creating the directory); a no-op for None."""
    if run_dir is None:
        yield
        return
    key = Path(run_dir).resolve()
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(Path(run_dir)), 1]
    try:
        yield
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            handle = _held.pop(key)[0]
            handle.close()  # closing releases the flock


def _acquire(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(f"run directory {run_dir} is in use by another robustode process (pid {owner}); "
                          "wait for it to finish or choose another --name / out_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
