"""The Python API: train a defense on a model, evaluate it, get a record.

    import robustode as ro
    model, record = ro.train("preact_resnet18", defense="yopo-5-3", data="cifar10", epochs=36)
    result = ro.evaluate(model, "cifar10", attacks=["pgd-20"], n=1000)

Your own model works too: pass an ``nn.Module`` taking images in [0, 1]. For
YOPO it must follow the layer-one contract (``layer_one(x)``, ``rest(z)``,
``layer_one_parameters()``), or name its first submodule:
``ro.train(model, "yopo-5-3", data, defense_options={"first": "conv1"})``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .data import DataSet, load_dataset
from .defenses import create_defense
from .defenses.base import Defense
from .evaluator import EvalResult
from .evaluator import evaluate as _evaluate
from .records import Record, make_record, save, save_in
from .training import TrainConfig, fit

DEFAULT_ATTACKS = ("pgd-20",)


def load_data(data: str | DataSet, data_dir=None, train_subset=None, test_subset=None) -> DataSet:
    """A DataSet as given, or loaded by name (see ``robustode list datasets``)."""
    if isinstance(data, DataSet):
        if train_subset or test_subset:
            return DataSet(data.name, data.train.subset(train_subset, "training split"),
                           data.test.subset(test_subset, "test split"), data.classes, data.kind,
                           data.source, data.meta)
        return data
    return load_dataset(data, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset)


def train(model: nn.Module | str, defense: str | Defense = "pgd-10", data: str | DataSet = "cifar10", *,
          attacks: Sequence[str] = DEFAULT_ATTACKS, n: int | None = None, eval_batch_size: int = 256,
          data_dir=None, train_subset: int | None = None, test_subset: int | None = None,
          defense_options: dict | None = None, out_dir=None, resume: bool = False,
          records_dir=None, label: str | None = None, command: str | None = None, quiet: bool = False,
          **settings) -> tuple[nn.Module, Record]:
    """Train ``model`` with ``defense`` on ``data``, evaluate it, and return (model, record).

    Args:
        model: a registered name ("preact_resnet18") or your own ``nn.Module``.
        defense: a spec ("natural", "pgd-10", "free-8", "yopo-5-3", "fgsm-rs",
            "trades-10") or a Defense instance.
        data: a registered data set name ("cifar10", "cifar10-jpeg",
            "imagefolder:PATH", "synthetic") or a DataSet.
        attacks: the final evaluation's attacks (PGD-20 by default; add "autoattack").
        n: the final evaluation uses the first n test images (default: all of them).
        defense_options: overrides of the defense's fields, e.g. {"first": "conv1"}.
        out_dir: run directory (config, log, metrics, checkpoints, record.json).
        resume: continue the run in ``out_dir``.
        records_dir: also save the record there (e.g. "leaderboard/records").
        settings: training settings (``robustode.training.TrainConfig``): epochs,
            batch_size, lr, schedule, seed, device, compile, eval_every, ...
    """
    dataset = load_data(data, data_dir, train_subset, test_subset)
    if isinstance(defense, str):
        defense = create_defense(defense, **(defense_options or {}))
    result = fit(model, defense, dataset, out_dir=out_dir, resume=resume, quiet=quiet, **settings)
    evaluation = _evaluate(result.model, dataset, attacks=tuple(attacks), n=n,
                           batch_size=eval_batch_size, device=result.config["train"]["device"], quiet=quiet)
    record = make_run_record(result.config, result, evaluation, result.model, label=label, command=command)
    if result.run_dir is not None:
        save(record, Path(result.run_dir) / "record.json", overwrite=True)
    if records_dir is not None:
        save_in(record, records_dir)
    return result.model, record


def evaluate(model: nn.Module, data: str | DataSet = "cifar10", *, attacks: Sequence[str] = DEFAULT_ATTACKS,
             n: int | None = None, batch_size: int = 256, device=None, eps: float = 8 / 255,
             data_dir=None, quiet: bool = False) -> EvalResult:
    """Clean and robust accuracy of ``model`` on the first ``n`` test images (see robustode.evaluator)."""
    dataset = load_data(data, data_dir)
    return _evaluate(model, dataset, attacks=tuple(attacks), n=n, batch_size=batch_size, device=device,
                     eps=eps, quiet=quiet)


def make_run_record(run: dict, trained, evaluation: EvalResult, model: nn.Module, label: str | None = None,
                    command: str | None = None) -> Record:
    """A leaderboard record from a run's config, its training result and its evaluation.

    ``trained`` is a TrainResult, or for a checkpoint evaluated later a dict with
    the same fields (train_seconds, images_per_second, passes_per_image, data_epochs,
    stopped_reason).
    """
    t = trained if isinstance(trained, dict) else trained.to_dict()
    train, model_info, defense = run["train"], run["model"], run["defense"]
    spec = defense["spec"]
    robust = dict(evaluation.robust)
    aa = next((k for k in robust if k.startswith("autoattack")), None)
    return make_record(
        model={"name": model_info.get("name") or model_info["class"], "params": count_parameters(model)},
        defense={"spec": spec, "name": spec.split("-")[0], "hyperparameters": defense["hyperparameters"]},
        dataset=run["data"],
        training={"epochs": min(train["epochs"], t["data_epochs"] * int(defense.get("replays", 1))), "batch_size": train["batch_size"],
                  "seed": train["seed"], "seconds": t["train_seconds"],
                  "images_per_second": t["images_per_second"], "passes_per_image": t["passes_per_image"],
                  "optimizer": {k: train[k] for k in ("lr", "momentum", "weight_decay", "schedule", "milestones",
                                                      "gamma")},
                  "stopped_early": t["stopped_reason"]},
        evaluation={"n": evaluation.n, "norm": "linf", "eps": evaluation.eps, "clean_acc": evaluation.clean_acc,
                    "pgd20_acc": robust.get("pgd-20"), "autoattack_acc": robust.get(aa) if aa else None,
                    "autoattack_standard": aa == "autoattack", "robust": robust,
                    "attack_settings": evaluation.attack_settings, "seconds": evaluation.seconds,
                    "flags": evaluation.flags},
        provenance=run["provenance"],
        label=label,
        command=command,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["TrainConfig", "evaluate", "load_data", "make_run_record", "train"]
