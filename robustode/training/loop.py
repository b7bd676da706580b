"""``fit``: the one training loop every defense shares."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.types import DataSet
from ..errors import ConfigError
from ..utils import provenance, resolve_device
from . import distributed
from .checkpoint import load_checkpoint
from .config import TRAJECTORY_KEYS, TrainConfig
from .runlog import RunLog, check_run_dir
from .trainer import Trainer


@dataclass
class TrainResult:
    model: nn.Module  # the trained model (after a divergence: the last good checkpoint's weights)
    config: dict  # the run's resolved config: train, requested, model, defense, data, provenance
    history: list[dict] = field(default_factory=list)  # one row per data epoch (see runlog.METRICS)
    train_seconds: float = 0.0  # training loop only, synchronized; evaluation and checkpoints excluded
    images_per_second: float = 0.0  # training images per second of training time
    passes_per_image: float = 0.0  # forward+backward passes each training image received, in total
    data_epochs: int = 0  # data epochs completed
    stopped_reason: str | None = None  # why the run ended early (divergence, guard, time budget), if it did
    best: dict | None = None  # keep_best: {"epoch", "eval_robust", "eval_clean"} of checkpoints/best.pt
    run_dir: str | None = None

    def to_dict(self) -> dict:
        """Everything but the model, JSON-ready."""
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def fit(model: nn.Module | str, defense, data: DataSet, *, config: TrainConfig | None = None,
        out_dir: str | os.PathLike | None = None, resume: bool = False, quiet: bool = False,
        **overrides) -> TrainResult:
    """Train ``model`` on ``data.train`` with ``defense``; the loop every defense shares.

    Args:
        model: an ``nn.Module`` (images in [0, 1]) or a registered model name, built
            here after seeding with ``num_classes = data.num_classes``.
        defense: a ``Defense`` or a spec such as ``"pgd-10"``, ``"free-8"``, ``"yopo-5-3"``.
        data: a ``DataSet``; the first ``eval_n`` test images serve the periodic evaluation.
        config: a ``TrainConfig``; unset fields take the defense's paper preset.
        out_dir: run directory for config.json, train.log, metrics.csv and
            checkpoints/last.pt (every ``checkpoint_every`` epochs), best.pt (``keep_best``)
            and final.pt (a run stopped inside an epoch by ``max_seconds``).
        resume: continue the run in ``out_dir`` from checkpoints/last.pt, exactly.
        quiet: no console output.
        overrides: TrainConfig fields, e.g. ``epochs=5, lr=0.05``.

    On Ctrl-C the last checkpoint (the last completed epoch) stays on disk; resume continues from it.
    Under ``torchrun --nproc_per_node=N`` every process trains on its shard of each
    minibatch of ``batch_size`` (the global batch) and only rank 0 writes (see
    robustode.training.distributed).

        result = fit("resnet20", "pgd-7", load_dataset("cifar10"), epochs=10, out_dir="runs/r20")
    """
    defense = _as_defense(defense)
    config = (config or TrainConfig()).replace(**overrides)
    ctx = distributed.setup(resolve_device(config.device))  # under torchrun: join its process group
    run_dir = check_run_dir(out_dir, resume) if ctx.main or resume else None
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt") if resume else None
    if saved is not None:
        config = TrainConfig.from_dict(saved["config"]["requested"]).replace(**config.explicit())
    resolved = config.resolve(defense)
    resolved["device"] = str(distributed.local_device(torch.device(resolved["device"])))
    resolved["world_size"] = ctx.world_size
    run_dir = run_dir if ctx.main else None  # only rank 0 writes
    log = RunLog(run_dir, quiet or not ctx.main)
    with _determinism(resolved["deterministic"]):
        if isinstance(model, str):
            model = _create_model(model, data.num_classes, resolved["seed"])
        run_config = _run_config(resolved, config, model, defense, data)
        if saved is not None:
            _check_same_run(saved["config"], run_config, run_dir)
        trainer = Trainer(model, defense, data, run_config, log, run_dir)
        if saved is not None:
            trainer.load_state_dict(saved)
            log.info(f"resuming {run_dir} after data epoch {trainer.epoch}")
        else:
            trainer.seed()
            log.write_config(run_config)
            log.info(f"training {run_config['model']['name'] or run_config['model']['class']} with "
                     f"{defense.spec}: {resolved['data_epochs']} data epochs on {resolved['device']}")
        _train(trainer, log)
        distributed.broadcast_module(trainer.model)  # after a stop on rank 0's checkpoint, all return its weights
    return _result(trainer, run_dir)


def _train(trainer: Trainer, log: RunLog) -> None:
    try:
        while trainer.epoch < trainer.c["data_epochs"] and trainer.stopped is None:
            trainer.run_epoch()
    except KeyboardInterrupt:
        last = trainer.epoch - trainer.epoch % trainer.c["checkpoint_every"]
        saved = trainer.run_dir is not None and last > 0
        where = f"checkpoints/last.pt holds data epoch {last}" if saved else "no checkpoint"
        log.info(f"interrupted in data epoch {trainer.epoch + 1}; {where}")
        raise


def _result(trainer: Trainer, run_dir) -> TrainResult:
    images = sum(row["images"] for row in trainer.history)
    seconds = trainer.seconds
    return TrainResult(
        model=trainer.model, config=trainer.run_config, history=trainer.history, train_seconds=seconds,
        images_per_second=images / seconds if seconds > 0 else 0.0,
        passes_per_image=trainer.defense.passes_per_batch * images / len(trainer.data.train),
        data_epochs=trainer.epoch, stopped_reason=trainer.stopped, best=trainer.best,
        run_dir=None if run_dir is None else str(run_dir),
    )


def _as_defense(defense):
    if isinstance(defense, str):
        from ..defenses import create_defense

        return create_defense(defense)
    if not callable(getattr(defense, "train_step", None)):
        raise ConfigError(f"defense must be a Defense or a spec like 'pgd-10', got {type(defense).__name__}")
    return defense


def _create_model(name: str, num_classes: int, seed: int) -> nn.Module:
    from ..models import create

    torch.manual_seed(seed)  # the initial weights follow the run's seed
    return create(name, num_classes=num_classes)  # create() tags it, so checkpoints can rebuild it


def _run_config(resolved: dict, config: TrainConfig, model: nn.Module, defense, data: DataSet) -> dict:
    """Everything that describes the run, normalized to JSON types (so saved and new compare equal)."""
    run = {
        "train": resolved,
        "requested": config.to_dict(),
        "model": {"name": getattr(model, "robustode_name", None),
                  "kwargs": getattr(model, "robustode_kwargs", {}),
                  "class": type(model).__qualname__, "num_classes": data.num_classes},
        "defense": {"spec": defense.spec, "hyperparameters": defense.hyperparameters(),
                    "passes_per_batch": defense.passes_per_batch, "replays": defense.replays},
        "data": data.describe(),
        "provenance": provenance(torch.device(resolved["device"]), resolved["precision"]),
    }
    return json.loads(json.dumps(run, default=str))


def _check_same_run(saved: dict, new: dict, run_dir) -> None:
    changed = [f"{k} {saved['train'][k]!r} -> {new['train'][k]!r}" for k in TRAJECTORY_KEYS
               if saved["train"][k] != new["train"][k]]
    changed += [f"{k} {saved[k]} -> {new[k]}" for k in ("defense", "data") if saved[k] != new[k]]
    if saved["model"]["class"] != new["model"]["class"]:
        changed.append(f"model {saved['model']['class']} -> {new['model']['class']}")
    if changed:
        raise ConfigError(f"cannot resume {run_dir} with other settings ({'; '.join(changed)}); "
                          "resume with the run's own settings or start a new run")


@contextmanager
def _determinism(enabled: bool):
    """Deterministic kernels for the run's duration; the global flags are restored afterwards."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    else:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]
