"""Experiment logging beside metrics.csv, for those who follow runs in TensorBoard or Weights & Biases.

``TrainConfig(log=("tensorboard",))`` (``--log tensorboard``) writes TensorBoard event files to RUN/tensorboard;
``"wandb"`` keeps an offline Weights & Biases run in RUN/wandb (``wandb sync`` uploads it later). Each
data epoch logs every number of its metrics row: training loss and accuracy, lr, the held-out clean
and PGD-20 accuracy (the curves), seconds, images/s, optimizer steps. Both packages are optional
extras: ``pip install 'robustode[tensorboard]'`` or ``'robustode[wandb]'``.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ConfigError


def scalars(row: dict) -> dict[str, float]:
    """The row's numbers (None, text and non-finite values left out), named by what they measure."""
    return {("eval/" if key.startswith("eval_") else "train/") + key: float(value) for key, value in row.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch"
            and math.isfinite(value)}


class TensorBoard:
    def __init__(self, run_dir: Path, name: str, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency: robustode[tensorboard]
        except ImportError:
            raise ConfigError("--log tensorboard needs the tensorboard package: pip install "
                              "'robustode[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{config}\n```")

    def epoch(self, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(key, value, global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Wandb:
    def __init__(self, run_dir: Path, name: str, config: dict):
        try:
            import wandb  # optional dependency: robustode[wandb]
        except ImportError:
            raise ConfigError("--log wandb needs the wandb package: pip install 'robustode[wandb]'") from None
        self.run = wandb.init(mode="offline", dir=str(run_dir), name=name, config=config, resume="allow",
                              id=name)

    def epoch(self, row: dict) -> None:
        self.run.log(scalars(row), step=row["epoch"])

    def close(self) -> None:
        self.run.finish()


LOGGERS = {"tensorboard": TensorBoard, "wandb": Wandb}  # --log's kinds, each its class


def open_loggers(kinds, run_dir: Path | None, config: dict) -> list:
    """The loggers asked for (``TrainConfig.log``), writing into the run directory."""
    if kinds and run_dir is None:
        raise ConfigError(f"log={list(kinds)} writes into the run directory: give out_dir (--out)")
    return [LOGGERS[kind](run_dir, run_dir.name, config) for kind in kinds]
