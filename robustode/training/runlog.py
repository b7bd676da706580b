"""What a run leaves behind: console progress, train.log, metrics.csv and config.json."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError
from ..files import write_atomic
from ..models.solver import evaluations_text
from ..progress import Progress
from .lock import LOCK_NAME

METRICS = ("epoch", "nominal_epoch", "steps", "lr", "loss", "train_acc", "seconds", "images_per_s",
           "eval_clean", "eval_robust", "note")
ODE_METRICS = ("evals_forward_per_batch", "evals_backward_per_batch")  # columns of a run of an ODE model only


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
    leftovers = {p.name for p in run_dir.iterdir()} - {"config.json", "train.log", "metrics.csv", "checkpoints",
                                                        LOCK_NAME}
    return not leftovers and not (checkpoints.exists() and any(checkpoints.iterdir()))


class RunLog:
    """Console lines, mirrored to train.log, and progress within an epoch; silent when quiet.

    Progress is a transient bar on a terminal and a plain line with an ETA elsewhere
    (CI, nohup, slurm), so a log file shows that a long epoch moves.
    """

    def __init__(self, run_dir: Path | None, quiet: bool, loggers: list | None = None):
        self.run_dir = run_dir
        self.quiet = quiet
        self.console = Console(stderr=True, quiet=quiet)
        self.loggers = loggers or []  # TensorBoard / W&B (training/loggers.py): each epoch's row

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    @property
    def watching(self) -> bool:
        """Whether anyone sees progress within an epoch (it costs a host sync per update)."""
        return not self.quiet

    def info(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)
        if self.run_dir is not None:
            stamp = _dt.datetime.now().isoformat(timespec="seconds")
            with open(self.run_dir / "train.log", "a", encoding="utf-8") as f:
                f.write(f"[{stamp}] {message}\n")

    def warn(self, message: str) -> None:
        self.info(f"warning: {message}")

    def progress(self, total: int, description: str) -> Progress:
        """A Progress the trainer updates every minibatch (stats when a line is due, or every log_every)."""
        return Progress(total, description, console=self.console, quiet=self.quiet, unit="minibatches")

    def write_config(self, config: dict) -> None:
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_dir / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")

    def write_metrics(self, history: list[dict]) -> None:
        """Rewritten whole each epoch, so it always agrees with the last checkpoint's history."""
        for logger in self.loggers:
            if history:
                logger.epoch(history[-1])
        if self.run_dir is None:
            return
        text = io.StringIO()
        ode = tuple(k for k in ODE_METRICS if history and k in history[0])
        writer = csv.DictWriter(text, fieldnames=METRICS + ode, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.run_dir / "metrics.csv", text.getvalue())


def epoch_line(row: dict, settings) -> str:
    """One line per data epoch for the console and train.log."""
    line = (f"epoch {row['epoch']}/{settings.data_epochs}  loss {row['loss']:.4f}  acc {row['train_acc']:.2%}  "
            f"lr {row['lr']:.4g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s")
    if "evals_forward_per_batch" in row:  # an ODE model: f-evaluations per minibatch, forward + adjoint backward
        line += f"  {evaluations_text(row['evals_forward_per_batch'], row['evals_backward_per_batch'])}"
    if row.get("eval_robust") is not None:
        line += f"  held-out clean {row['eval_clean']:.2%}  {settings.eval_attack} {row['eval_robust']:.2%}"
    return line
