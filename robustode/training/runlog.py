"""What a run leaves behind: console progress, train.log, metrics.csv and config.json."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import ConfigError

METRICS = ("epoch", "nominal_epoch", "steps", "lr", "loss", "train_acc", "seconds", "images_per_s",
           "eval_clean", "eval_robust", "note")


def check_run_dir(out_dir: str | Path | None, resume: bool) -> Path | None:
    """The run directory; an existing run is refused unless resuming it (created by write_config)."""
    if out_dir is None:
        if resume:
            raise ConfigError("resume needs the run directory to continue (out_dir / --out)")
        return None
    run_dir = Path(out_dir)
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            hint = "; run the same command without --resume to start it afresh" if never_ran(run_dir) else ""
            raise ConfigError(f"nothing to resume in {run_dir}: it has no checkpoints/last.pt{hint}")
        return run_dir
    if run_dir.exists() and not never_ran(run_dir):
        raise ConfigError(f"run directory {run_dir} exists; pass resume=True / --resume to continue it "
                          "or choose another --out")
    return run_dir


def never_ran(run_dir: Path) -> bool:
    """A directory left by a run that stopped before its first checkpoint: nothing in it to lose."""
    if not run_dir.is_dir():
        return False
    checkpoints = run_dir / "checkpoints"
    leftovers = {p.name for p in run_dir.iterdir()} - {"config.json", "train.log", "metrics.csv", "checkpoints"}
    return not leftovers and not (checkpoints.exists() and any(checkpoints.iterdir()))


class RunLog:
    """Console lines, mirrored to train.log, and a transient progress bar on terminals; silent when quiet."""

    def __init__(self, run_dir: Path | None, quiet: bool):
        self.run_dir = run_dir
        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet)
        self.live = not quiet and self.console.is_terminal  # whether a progress bar is shown

    def info(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)
        if self.run_dir is not None:
            stamp = _dt.datetime.now().isoformat(timespec="seconds")
            with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
                f.write(f"[{stamp}] {message}\n")

    @contextmanager
    def progress(self, total: int, description: str):
        """Yields ``update(done, stats_text)`` for a bar that disappears when the epoch ends."""
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=self.console,
                       transient=True, disable=not self.live)
        with bar:
            task = bar.add_task(description, total=total, stats="")
            yield lambda done, stats: bar.update(task, completed=done, stats=stats)

    def write_config(self, config: dict) -> None:
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")

    def write_metrics(self, history: list[dict]) -> None:
        """Rewritten whole each epoch, so it always agrees with the last checkpoint's history."""
        if self.run_dir is None:
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=METRICS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.run_dir / "metrics.csv", text.getvalue())


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def epoch_line(row: dict, settings) -> str:
    """One line per data epoch for the console and train.log."""
    line = (f"epoch {row['epoch']}/{settings.data_epochs}  loss {row['loss']:.4f}  acc {row['train_acc']:.2%}  "
            f"lr {row['lr']:.4g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s")
    if row.get("eval_robust") is not None:
        line += f"  held-out clean {row['eval_clean']:.2%}  {settings.eval_attack} {row['eval_robust']:.2%}"
    return line
