"""``fit``: the one training loop every defense shares."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .. import dist
from ..attacks import Attack
from ..checks import check_for_training
from ..data.extra import ExtraSet
from ..data.types import DataSet
from ..defenses.base import Defense
from ..errors import ConfigError, SolverError, first_line
from ..utils import resolve_device
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .feed import describe_feed, train_loader
from .lock import run_lock
from .result import Stop, TrainResult
from .run import RunInfo
from .loggers import open_loggers
from .runlog import RunLog, check_run_dir, epoch_line
from .trainer import Trainer


def fit(model: nn.Module, defense: Defense, data: DataSet, config: TrainConfig | None = None, *,
        out_dir: str | os.PathLike | None = None, resume: bool = False, quiet: bool = False,
        extra: ExtraSet | None = None, notes: Sequence[str] = (),
        eval_attack: Attack | None = None) -> TrainResult:
    """Train ``model`` on ``data.train`` with ``defense``; the loop every defense shares.

    The entrances (``robustode.train`` / ``robustode.fit``, ``robustode train``) build its arguments from
    names; this takes them built and checked.

    Args:
        model: an ``nn.Module`` (images in [0, 1] -> logits).
        defense: a ``Defense`` (``create_defense("pgd-10")``), or any object with ``train_step``.
        data: a ``DataSet``; the periodic evaluation takes the first ``eval_n`` test images, or, with
            ``holdout=N``, the last N training images, kept out of training.
        config: a ``TrainConfig`` (default: all defaults); unset fields take the defense's paper preset.
        out_dir: run directory for config.json, train.log, metrics.csv and checkpoints/last.pt (every
            ``checkpoint_every`` epochs), best.pt (``keep_best``), final.pt (``max_seconds`` ran out mid-epoch).
        resume: continue the run in ``out_dir`` from checkpoints/last.pt, exactly.
        quiet: no console output.
        extra: an ``ExtraSet`` (``robustode.data.extra.open_extra``), e.g. generated images, mixed into every
            minibatch at ``config.extra_fraction``; an epoch keeps the base set's minibatch count.
        notes: lines for the log: where an explicit setting replaced the recipe's (``config.recipe``).
        eval_attack: the periodic evaluations' attack, built at the entrance (default: from config.eval_attack).

    On Ctrl-C the last checkpoint (the last completed epoch) stays on disk; resume continues from it. Under
    torchrun every process trains on its shard of each global minibatch; only rank 0 writes (data_parallel.py).

        fit(models.create("resnet20"), create_defense("pgd-7"), load_dataset("cifar10"), TrainConfig(epochs=10))
    """
    config = config or TrainConfig()
    ctx = dist.setup(resolve_device(config.device))  # under torchrun: join its process group
    run_dir, saved, config = _open_run(out_dir, resume, config, ctx)
    settings = config.resolve(defense, world_size=ctx.world_size)
    data, held_out = hold_out(data, settings.holdout)
    settings, lowered = fitted_to_data(settings, config, len(data.train), len(held_out))
    model, note, pixels = _prepared(model, defense, data, settings)  # a bad model fails here, before any write
    with run_lock(run_dir), _determinism(settings.deterministic):
        if run_dir is not None:
            check_run_dir(run_dir, resume)  # again, now that this process owns the directory
        run = RunInfo.describe(settings, config, model, defense, data, extra)
        if saved is not None:
            _check_same_run(RunInfo.from_dict(saved["config"], str(run_dir)), run, run_dir, _assumed(defense))
        log = _open_log(run_dir, quiet, ctx.main, settings, run, [*lowered, pixels])
        loader = train_loader(data.train, extra, settings, torch.device(settings.device), ctx.rank, ctx.world_size)
        trainer = Trainer(model, defense, data, run, log, loader, run_dir, held_out, eval_attack)
        _start(trainer, saved, config, log, note)
        for line in _opening_lines(settings.recipe, notes, describe_feed(loader, settings, trainer.device)):
            log.info(line)
        _train_all(trainer, log)
    return trainer.result()


def _open_log(run_dir, quiet: bool, main: bool, settings, run: RunInfo, warnings: list) -> RunLog:
    """The run's log (with its experiment loggers on the process that writes) and its first warnings: sizes the
    data cannot honour, lowered to its own; a model that expects [0, 255] pixels (as check-model says)."""
    log = RunLog(run_dir, quiet or not main, open_loggers(settings.log, run_dir, run.to_dict()) if main else [])
    for line in filter(None, warnings):
        log.warn(line)
    return log


def _train_all(trainer: Trainer, log: RunLog) -> None:
    """Every epoch; the experiment logs closed even when the run stops or is killed; under torchrun every rank
    then holds rank 0's weights (after a stop on rank 0's checkpoint too)."""
    trainer.start_peak_memory()
    try:
        run_epochs(trainer, log)
    finally:
        log.close()
    dist.broadcast_module(trainer.model)
    if trainer.average is not None:
        dist.broadcast_module(trainer.average.model)


def _start(trainer: Trainer, saved: dict | None, config: TrainConfig, log: RunLog, note: str | None) -> None:
    """Resume from the checkpoint, or seed and write config.json; say what runs where."""
    run, s = trainer.run, trainer.settings
    if saved is not None:
        try:
            trainer.load_state_dict(saved)
        except RuntimeError as err:  # shapes the checks above could not see (a model without a registered name)
            raise ConfigError(f"cannot resume {trainer.run_dir}: its checkpoint does not fit this model "
                              f"({first_line(err, typed=False)}); resume with the run's own model") from None
        log.info(f"resuming {trainer.run_dir} after data epoch {trainer.epoch}")
        return
    trainer.seed()
    log.write_config(run.to_dict())
    log.info(f"training {run.model.name or run.model.class_name} with {run.defense.spec}: "
             f"{s.data_epochs} data epochs on {s.device} ({run.provenance.device}, {s.precision})"
             + (f"; {note}" if note else ""))
    if s.milestones_scaled_from is not None:
        log.info(f"the preset's lr milestones {list(s.milestones_scaled_from)} (of {s.preset_epochs} epochs) "
                 f"were scaled to the {s.epochs} epochs asked for: {[round(m, 2) for m in s.milestones]}")
    if s.keep_best and s.holdout == 0:
        log.warn("keep_best picks the checkpoint on test images (the first eval_n): its test accuracy is then "
                 "biased upwards; holdout=N (--holdout N) picks it on N training images kept out instead")
    if s.device == "cpu" and config.device in (None, "auto"):
        log.warn("no GPU found: training on the CPU, where the papers' models and presets take hours to days")


def _opening_lines(recipe: str | None, notes: Sequence[str], feed: str | None) -> list[str]:
    """The log's account of the recipe (where a setting given won over it) and of the data mix."""
    lines = [] if recipe is None else [f"recipe {recipe} supplies every setting not given explicitly",
                                       *(f"recipe {recipe}: {note}" for note in notes)]
    return lines + ([feed] if feed else [])


def fitted_to_data(settings, asked: TrainConfig, n_train: int, n_held_out: int) -> tuple:
    """(settings, what was lowered): a size larger than the data is refused when asked for, and lowered to
    the data's when it is a preset's or a default (the settings, hence config.json and the record, keep the
    value used; the lines returned say so in the log)."""
    lowered, changes = [], {}
    sizes = [("batch_size", n_train, "training images")]
    if settings.eval_every > 0:  # eval_n matters only to the held-out evaluations
        sizes.append(("eval_n", n_held_out, "held-out images"))
    for name, have, what in sizes:
        value = getattr(settings, name)
        if value <= have:
            continue
        if name in asked.explicit():
            raise ConfigError(f"{name}={value} exceeds the {have} {what}; ask for at most {have}")
        changes[name] = have
        lowered.append(f"{name} {value} (not asked for) exceeds the {have} {what}: using {have}")
    run = settings.data_epochs * settings.replays
    if run != settings.epochs:  # Free-m replays whole data epochs: the record says the epochs run
        lowered.append(f"epochs {settings.epochs} is no multiple of the defense's {settings.replays} replays per "
                       f"minibatch: {settings.data_epochs} data epochs run {run} nominal epochs")
    return (dataclasses.replace(settings, **changes) if changes else settings), lowered


def hold_out(data: DataSet, holdout: int) -> tuple[DataSet, object]:
    """(the data trained on, the held-out split of the periodic evaluations): the last ``holdout``
    training images kept out of training, or, for 0, the test split (its first eval_n images)."""
    if holdout == 0:
        return data, data.test
    train = data.train
    if holdout >= len(train):
        raise ConfigError(f"holdout={holdout} keeps out every one of the {len(train)} training images")
    kept = type(train)(train.images[:-holdout], train.labels[:-holdout])
    held = type(train)(train.images[-holdout:], train.labels[-holdout:])
    return dataclasses.replace(data, train=kept), held


def _prepared(model, defense, data: DataSet, settings) -> tuple[nn.Module, str | None, str | None]:
    """The model on its device and checked; the defense prepared for it (YOPO finds and verifies its layer
    one). Returns the model, what the defense says about it and check_model's pixel-range warning, if any."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
    model = model.to(settings.device)  # checked where it will train (a CUDA-only model fails on the CPU)
    example, pixels = check_for_training(model, data)
    if callable(getattr(defense, "use_auxiliary", None)):
        defense.use_auxiliary(model)
    prepare = getattr(defense, "prepare", None)  # a duck-typed defense may have only train_step
    return model, (prepare(model, example) if prepare is not None else None), pixels


def _open_run(out_dir, resume: bool, config: TrainConfig, ctx) -> tuple:
    """(run directory or None, the checkpoint resumed or None, the config with the resumed run's settings).

    Every rank reads the checkpoint it resumes from; only rank 0 gets a run directory to write.
    """
    run_dir = check_run_dir(out_dir, resume) if ctx.main or resume else None
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt") if resume else None
    if saved is not None:
        config = TrainConfig.from_dict(saved["config"]["requested"]).replace(**config.explicit())
    return (run_dir if ctx.main else None), saved, config


def run_epochs(trainer: Trainer, log: RunLog) -> None:
    """epoch -> train epoch (with the defense's end of epoch) -> evaluate -> checkpoint -> log, until done."""
    s = trainer.settings
    try:
        while trainer.epoch < s.data_epochs and trainer.stop is None:
            e = trainer.epoch + 1
            row, stop = trainer.train_epoch(e)
            if stop is not None and stop.inside_epoch:  # diverged, or the budget ran out mid-epoch
                trainer.stop_inside(row, stop)
                break
            if trainer.due(s.eval_every, e):
                failed = _held_out(trainer, row, e)
                if failed is not None:  # the epoch's weights broke their own solver: diverged, last.pt kept
                    trainer.stop_inside(row, failed)
                    break
            trainer.epoch = e
            trainer.history.append(row)
            # After a guard put earlier weights back, last.pt already holds them; any other epoch is saved.
            if (stop is None or not stop.restored_weights) and trainer.due(s.checkpoint_every, e):
                trainer.save("last.pt")
                trainer.keep_best(row)
            log.write_metrics(trainer.history)
            log.info(epoch_line(row, s))
            trainer.stop = stop or trainer.budget_spent(e)
    except KeyboardInterrupt:
        last = trainer.epoch - trainer.epoch % s.checkpoint_every
        where = f"checkpoints/last.pt holds data epoch {last}" if trainer.run_dir and last else "no checkpoint"
        log.info(f"interrupted in data epoch {trainer.epoch + 1}; {where}")
        raise
    if trainer.stop is not None:
        log.info(f"stopped: {trainer.stop.reason}")


def _held_out(trainer: Trainer, row: dict, e: int) -> Stop | None:
    """Add the held-out evaluation to the epoch's row; an ODE solve past its step budget: a diverged Stop."""
    try:
        row.update(trainer.evaluate_held_out())
    except SolverError as err:
        if dist.context().enabled:  # the other ranks wait in a collective: the error ends the job (torchrun)
            raise
        stop = Stop("diverged", f"{first_line(err)}; in the held-out evaluation after data epoch {e}")
        row["note"] = stop.reason
        return stop
    return None


def _assumed(defense) -> dict:
    """What a run saved before a defense setting existed ran with: the legacy default, else the default."""
    if not dataclasses.is_dataclass(defense):
        return {}
    values = {f.name: f.default for f in dataclasses.fields(defense) if f.default is not dataclasses.MISSING}
    return {**values, **getattr(defense, "legacy_defaults", {})}


def _check_same_run(saved: RunInfo, new: RunInfo, run_dir, assumed: dict) -> None:
    changed = saved.resume_conflicts(new, assumed)
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
