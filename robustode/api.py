"""The Python API: train a defense on a model, evaluate it, get a record.

    import robustode as ro
    model, record = ro.train("preact_resnet18", defense="yopo-5-3", data="cifar10", epochs=36)
    result = ro.evaluate(model, "cifar10", attacks=["pgd-20"], n=1000)
    run = ro.evaluate_checkpoint("runs/x/checkpoints/last.pt", attacks=["pgd-20"])  # run.record, run.points

Your own model works too: pass an ``nn.Module`` taking images in [0, 1] and
returning logits (a torchvision or timm model as it is). Every defense trains it
as it is, YOPO included: YOPO finds the model's layer one by tracing it and
checks the split before training (robustode.split). ``ro.check_model``
says what robustode sees in a model before any training:

    report = ro.check_model(torchvision.models.resnet18(num_classes=10), num_classes=10)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from . import evaluation, training
from .checks import check_model
from .corruptions_api import evaluate_model, is_corruptions
from .data import DataSet
from .defenses.base import Defense
from .dist import context
from .entrance import (DEFAULT_ATTACKS, apply_recipe, build_attacks, build_defense, build_eval_attack, build_model,
                       build_threat, check_model_name, check_n, evaluate_loaded, load_data, load_extra, recipe_defense,
                       train_config)
from .errors import ConfigError, DataError
from .evaluation import EvalResult, evaluate_sharded
from .evaluation.state import STATE_DIR, evaluation_state, weights_digest
from .evaluation.corruptions import CorruptionResult
from .files import check_output_dir
from .records import DatasetInfo, Evaluated, Record, load_record, run_record, save, save_in
from .threat import DEFAULT_EPS
from .training import TrainConfig, TrainResult, load_checkpoint
from .training.checkpoint import model_from_state
from .training.lock import run_lock
from .training.runlog import RunLog
from .training.sanity import run_warnings
from .training.surrogate import train_surrogate
from .utils import check_positive_int, resolve_device

log = logging.getLogger("robustode")



def train(model: nn.Module | str | None, defense: str | Defense | None = None, data: str | DataSet = "cifar10", *,
          eps: float | str | None = None, defense_options: dict | None = None,
          attacks: Sequence[str] | str = DEFAULT_ATTACKS, n: int | None = None, eval_batch_size: int = 256,
          masking_checks: bool = True, data_dir=None, train_subset: int | None = None,
          test_subset: int | None = None, out_dir=None, resume: bool = False, records_dir=None,
          label: str | None = None, command: str | None = None, quiet: bool = False,
          output: int | str | None = None, config: TrainConfig | None = None, extra_data=None,
          recipe: str | None = None, **settings) -> tuple[nn.Module, Record]:
    """Train ``model`` with ``defense`` on ``data``, evaluate it, and return (model, record).

    Args:
        model: a registered name ("lm_resnet20", ``ro.list_models()``) or your own ``nn.Module`` ([0, 1] -> logits).
        defense: a spec ("pgd-10", "yopo-5-3", "pgd-10(alpha=2/255, ema_decay=0.999)"; ``ro.list_defenses()``)
            or a Defense. With ``ema_decay`` the returned, evaluated and saved model is the weight average.
        data: a registered data set ("cifar10", "cifar10-jpeg", "imagefolder:PATH", ...) or a DataSet;
            train_subset, test_subset keep only the first images of each split.
        eps: budget of the defense and the final evaluation, e.g. "8/255" (default: the defense's; 8/255).
        defense_options: other fields of the defense, e.g. {"first": "conv1"} for YOPO.
        attacks, n: the final evaluation's attacks ("pgd-20"; add "autoattack") on the first n test images.
        masking_checks: run the gradient-masking checks (PGD-50, PGD-20 at 2 eps on <= 256 points).
        out_dir: run directory (config.json, train.log, metrics.csv, checkpoints/, record.json); an existing
            one is refused unless ``resume`` (continue it from its last checkpoint).
        records_dir: also save the record there (e.g. "leaderboard/records"); label, command: stored in it.
        output: index or key of the logits of a model returning a tuple / list / dict (``SelectOutput``).
        config, settings: training settings, a ``ro.TrainConfig`` and/or its fields: epochs, batch_size,
            lr, schedule, seed, device, compile, eval_every, max_seconds, extra_fraction, ...
        extra_data: extra images mixed into every minibatch (``extra_fraction``, 0.7): .npz parts or a converted dir.
        recipe: a published setup in one word ("wang2023", "fastat"; ``robustode list recipes``); what you give
            explicitly wins over it, and the run's log says where. Without a recipe the defense defaults to pgd-10.

    Bad settings and untrainable models (ro.check_model's failures) raise a RobustodeError first."""
    config = train_config(config, settings)
    model, defense, config, notes = apply_recipe(recipe, model, defense, config, set(config.explicit()), extra_data)
    check_model_name(model, output)
    defense = recipe_defense(recipe, defense, eps, defense_options)
    threat = build_threat(eps)
    attacks, eval_attack = build_attacks(attacks, threat), build_eval_attack(config)
    check_positive_int(eval_batch_size, "eval_batch_size")  # (a bad one would fail after the training)
    if records_dir is not None:
        check_output_dir(records_dir, what="records folder")
    dataset = load_data(data, data_dir, train_subset, test_subset)
    check_n(n, dataset)
    extra = load_extra(extra_data, dataset)
    model = build_model(model, dataset.num_classes, config.seed, output)
    trained = training.fit(model, defense, dataset, config, out_dir=out_dir, resume=resume, quiet=quiet,
                           extra=extra, notes=notes, eval_attack=eval_attack)
    with run_lock(trained.run_dir):  # the record is the run's; under torchrun each rank evaluates its shard
        evaluation = _final_evaluation(trained, dataset, attacks, threat, n, eval_batch_size, masking_checks, quiet)
        record = _save(_run_record(trained, evaluation, dataset, label, command, quiet), trained.run_dir, records_dir)
    return trained.model, record


def _run_record(trained, evaluation, dataset, label, command, quiet: bool) -> Evaluated:
    """The run's record, with what looks wrong (a run that learnt nothing) warned about and in its notes."""
    warnings = run_warnings(trained, evaluation, dataset.num_classes)
    log = RunLog(trained.run_dir and Path(trained.run_dir), quiet or not context().main)
    for warning in warnings:
        log.warn(warning)
    return run_record(trained, evaluation, label=label, command=command, notes="; ".join(warnings) or None)


def _final_evaluation(trained, dataset, attacks, threat, n, batch_size: int, masking_checks: bool, quiet: bool):
    """The trained model's evaluation; its state in the run directory, so a killed one resumes with --resume."""
    state = None if trained.run_dir is None else evaluation_state(
        Path(trained.run_dir) / STATE_DIR, weights_digest(trained.model), dataset.name, n, attacks, threat,
        batch_size, masking_checks)
    return evaluate_sharded(trained.model, dataset, attacks, threat, n=n, batch_size=batch_size,
                            device=trained.run.train.device, quiet=quiet, masking_checks=masking_checks,
                            surrogate=train_surrogate, state=state)


def fit(model: nn.Module | str | None, defense: str | Defense | None = None, data: str | DataSet = "cifar10", *,
        eps: float | str | None = None, defense_options: dict | None = None, data_dir=None,
        train_subset: int | None = None, test_subset: int | None = None, out_dir=None, resume: bool = False,
        quiet: bool = False, output: int | str | None = None, config: TrainConfig | None = None,
        extra_data=None, recipe: str | None = None, **settings) -> TrainResult:
    """``train`` without the final evaluation and record: names become objects, then the training loop.

        result = ro.fit("resnet20", "pgd-7", "cifar10", epochs=10, out_dir="runs/r20")
        result.model, result.history, result.train_seconds
    """
    config = train_config(config, settings)
    model, defense, config, notes = apply_recipe(recipe, model, defense, config, set(config.explicit()), extra_data)
    check_model_name(model, output)
    defense, eval_attack = recipe_defense(recipe, defense, eps, defense_options), build_eval_attack(config)
    dataset = load_data(data, data_dir, train_subset, test_subset)
    extra = load_extra(extra_data, dataset)
    model = build_model(model, dataset.num_classes, config.seed, output)
    return training.fit(model, defense, dataset, config, out_dir=out_dir, resume=resume, quiet=quiet,
                        extra=extra, notes=notes, eval_attack=eval_attack)


def evaluate(model: nn.Module, data="cifar10", attacks=DEFAULT_ATTACKS, n: int | None = None, batch_size: int = 256,
             device=None, eps=DEFAULT_EPS, quiet: bool = False, masking_checks: bool = True, seed: int = 0,
             data_dir=None, escalate: bool = True, surrogate=None, state=None, threat=None,
             clean=None) -> EvalResult | CorruptionResult:
    """Clean and robust accuracy of ``model`` on the first ``n`` test images, with intervals and flags.

    data: a registered data set name (found in ``data_dir``), a DataSet, a Split or an (x, y) pair.
    attacks: specs ("pgd-20", "pgd-50(restarts=5)", "autoattack", "torchattacks:CW(c=1)") or Attacks;
        ``eps`` applies to every attack whose spec does not set its own.
    surrogate: the transfer stage's surrogate (default: the same architecture trained naturally, briefly).
    threat: "corruptions" (or ThreatModel.corruptions()) for the common corruptions instead of attacks: ``data``
        is "cifar10c:PATH" or "cifar100c:PATH" (the released layout), ``clean`` the clean set (default: the one
        corrupted); returns a CorruptionResult (accuracy per corruption and severity, their mean, intervals).
    The rest: see robustode.evaluation.evaluate.

        result = ro.evaluate(model, "cifar10", attacks=["pgd-20", "autoattack"], n=1000)
        result.clean_acc, result.robust["pgd-20"], result.intervals["pgd-20"], result.worst_case
    """
    if is_corruptions(threat):
        return evaluate_model(model, data, clean, n=n, batch_size=batch_size, device=device, data_dir=data_dir,
                              quiet=quiet)
    threat = build_threat(eps, threat or "linf")
    built = build_attacks(attacks, threat, allow_none=True)  # a bad attack fails before any data is loaded
    check_positive_int(batch_size, "batch_size")
    device = None if device is None else resolve_device(device)
    dataset = load_data(data, data_dir) if isinstance(data, str) else data
    return evaluation.evaluate(model, dataset, built, threat, n=n, batch_size=batch_size, device=device,
                               quiet=quiet, masking_checks=masking_checks, seed=seed, escalate=escalate,
                               surrogate=train_surrogate if surrogate is None else surrogate, state=state)


def train_seeds(model: str | Callable[[], nn.Module], defense: str | Defense = "pgd-10",
                data: str | DataSet = "cifar10", seeds: Sequence[int] = (0, 1, 2), *, out_dir=None,
                **kwargs) -> list[tuple[nn.Module, Record]]:
    """``train`` once per seed; returns [(model, record)] in seed order.

    ``model`` is a registered name or a factory called once per seed (each seed must start from
    its own initial weights); ``out_dir`` gets one run directory per seed, ``s<SEED>``. The
    leaderboard groups such runs into one row: mean and standard deviation over the seeds.

        runs = ro.train_seeds("preact_resnet18", "fgsm-rs", "cifar10-jpeg", seeds=(0, 1, 2), epochs=15)
    """
    if isinstance(model, nn.Module):
        raise ConfigError("train_seeds needs a registered model name or a factory (one fresh model per seed), "
                          f"got a {type(model).__name__} instance")
    seeds = [check_positive_int(s + 1, "seed + 1") - 1 for s in seeds]  # integers >= 0
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct integers >= 0, got {seeds}")
    dataset = load_data(data, kwargs.pop("data_dir", None), kwargs.pop("train_subset", None),
                        kwargs.pop("test_subset", None))
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)  # a factory's initial weights follow the seed, as a registered model's do
        built = model if isinstance(model, str) else model()
        run_dir = None if out_dir is None else Path(out_dir) / f"s{seed}"
        runs.append(train(built, defense, dataset, out_dir=run_dir, seed=seed, **kwargs))
    return runs


def _save(run: Evaluated, run_dir: str | None, records_dir) -> Record:
    """record.json in the run directory, and a new file in ``records_dir``; rank 0 only under torchrun.
    Returns the record as written (it names its per-example file), or as built where nothing was."""
    written = []
    if run_dir is not None:
        written.append(save(run.record, Path(run_dir) / "record.json", overwrite=True, points=run.points))
    if records_dir is not None and context().main:
        written.append(save_in(run.record, records_dir, points=run.points))
    return load_record(written[-1]) if written else run.record


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | DataSet | None = None, *,
                        attacks: Sequence[str] | str = DEFAULT_ATTACKS, n: int | None = None,
                        eps: float | str = DEFAULT_EPS, batch_size: int = 256, device=None, data_dir=None,
                        masking_checks: bool = True, quiet: bool = False, label: str | None = None,
                        command: str | None = None, state: str | os.PathLike | None = None) -> Evaluated:
    """Evaluate a checkpoint of ``ro.train`` / ``robustode train``; return its record and per-point results.

    ``data`` defaults to the data set the run trained on; the record keeps the run's
    training facts (epochs, time, passes) from the checkpoint. With ``state`` (a folder)
    the evaluation keeps its per-point progress there, in a file named after the
    checkpoint's digest and the evaluation asked for: the same call after a kill resumes.

        run = ro.evaluate_checkpoint("runs/x/checkpoints/last.pt", attacks=["pgd-20", "autoattack"])
        run.record.evaluation.robust["pgd-20"], run.points["pgd-20"]   # the accuracy; right or not, per point
        robustode.records.save_in(run.record, "leaderboard/records", points=run.points)   # writes both
    """
    device = resolve_device(device)
    threat = build_threat(eps)
    built = build_attacks(attacks, threat)
    ckpt = load_checkpoint(checkpoint)
    trained = TrainResult.from_checkpoint(ckpt, model_from_state(ckpt, checkpoint, device))
    dataset = load_data(data or trained.run.data.name, data_dir)
    note = _other_data(trained.run.data, dataset)
    result = evaluate_loaded(trained.model, dataset, built, threat, lambda: ckpt.get("digest"), n=n,
                             batch_size=batch_size, device=device, quiet=quiet, masking_checks=masking_checks,
                             state=state)
    evaluated = DatasetInfo(**{**dataset.describe(), "n_train": trained.run.data.n_train})  # trained on
    return run_record(trained, result, dataset=evaluated, label=label, command=command, notes=note)


def _other_data(trained_on: DatasetInfo, dataset: DataSet) -> str | None:
    """Refuse another class count; warn (and return the note for the record) for another data set."""
    if dataset.num_classes != trained_on.num_classes:
        raise DataError(f"{dataset.name} has {dataset.num_classes} classes but the model was trained for "
                        f"{trained_on.num_classes}")
    if (dataset.name, dataset.kind) == (trained_on.name, trained_on.kind):
        return None
    note = (f"evaluated on {dataset.name} ({dataset.kind}), but trained on {trained_on.name} "
            f"({trained_on.kind}): the classes may not even mean the same")
    log.warning(note)
    return note


def load_model(checkpoint: str | Path, device="cpu") -> nn.Module:
    """The registered model saved in a checkpoint of ``ro.train`` / ``robustode train``."""
    return model_from_state(load_checkpoint(checkpoint), checkpoint, device)


__all__ = ["TrainConfig", "build_defense", "check_model", "evaluate", "evaluate_checkpoint", "fit", "load_data",
           "load_model", "train", "train_seeds"]
