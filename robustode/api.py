"""The Python API: train a defense on a model, evaluate it, get a record.

    import robustode as ro
    model, record = ro.train("preact_resnet18", defense="yopo-5-3", data="cifar10", epochs=36)
    result = ro.evaluate(model, "cifar10", attacks=["pgd-20"], n=1000)

Your own model works too: pass an ``nn.Module`` taking images in [0, 1] and
returning logits. Every defense trains it as it is except YOPO, which needs
layer one apart from the rest: either define ``layer_one(x)``, ``rest(z)`` and
``layer_one_parameters()`` on the model (the layer-one contract), or name its
first submodule, ``defense_options={"first": "conv1"}``; robustode then
splits the model itself after checking that the parts reproduce its forward.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .attacks.spec import build as build_attack
from .attacks.spec import parse_spec
from .data import DataSet, load_dataset
from .defenses import create_defense
from .defenses.base import Defense
from .errors import ConfigError, DataError
from .evaluator import EvalResult
from .evaluator import evaluate as _evaluate
from .models import registry as model_registry
from .records import Record, make_record, save, save_in
from .training import TrainConfig, distributed, fit, load_model_from_checkpoint
from .utils import check_eps, check_positive_int

DEFAULT_ATTACKS = ("pgd-20",)
EVAL_EPS = 8 / 255  # the field's standard L-inf budget


def train(model: nn.Module | str, defense: str | Defense = "pgd-10", data: str | DataSet = "cifar10", *,
          eps: float | str | None = None, defense_options: dict | None = None,
          attacks: Sequence[str] = DEFAULT_ATTACKS, n: int | None = None, eval_batch_size: int = 256,
          masking_checks: bool = True, data_dir=None, train_subset: int | None = None,
          test_subset: int | None = None, out_dir=None, resume: bool = False, records_dir=None,
          label: str | None = None, command: str | None = None, quiet: bool = False,
          **settings) -> tuple[nn.Module, Record]:
    """Train ``model`` with ``defense`` on ``data``, evaluate it, and return (model, record).

    Args:
        model: a registered name ("lm_resnet20", see ``ro.list_models()``) or your own
            ``nn.Module`` (images in [0, 1] -> logits).
        defense: a spec ("natural", "pgd-10", "free-8", "yopo-5-3", "fgsm-rs",
            "trades-10"), optionally with settings ("pgd-10(alpha=2/255)"), or a Defense.
        data: a registered data set ("cifar10", "cifar10-jpeg", "imagefolder:PATH",
            "synthetic") or a DataSet.
        eps: perturbation budget of the defense and of the final evaluation, e.g. "8/255"
            (default: the defense's own for training, 8/255 for the evaluation).
        defense_options: other fields of the defense, e.g. {"first": "conv1"} for YOPO.
        attacks: the final evaluation's attacks ("pgd-20"; add "autoattack").
        n: the final evaluation uses the first n test images (default: all of them).
        masking_checks: run the evaluator's gradient-masking checks (PGD-50 and PGD-20 at
            2 eps on up to 256 points: several times the cost of PGD-20 when n is small).
        train_subset, test_subset: keep only the first images of each split.
        out_dir: run directory (config.json, train.log, metrics.csv, checkpoints/,
            record.json); an existing one is refused unless ``resume``.
        resume: continue the run in ``out_dir`` from its last checkpoint.
        records_dir: also save the record there (e.g. "leaderboard/records").
        label, command: stored in the record.
        settings: training settings (``ro.TrainConfig`` fields): epochs, batch_size,
            lr, schedule, seed, device, compile, eval_every, max_seconds, ...

    Bad settings raise a RobustodeError before any training starts.
    """
    if isinstance(model, str):
        model_registry.resolve(model)  # an unknown name fails now, not after loading the data
    defense = build_defense(defense, eps, defense_options)
    eval_eps = EVAL_EPS if eps is None else check_eps(eps)
    attacks = check_attacks(attacks, eval_eps)
    dataset = load_data(data, data_dir, train_subset, test_subset)
    check_n(n, dataset)
    result = fit(model, defense, dataset, out_dir=out_dir, resume=resume, quiet=quiet, **settings)
    # Under torchrun each rank evaluates its shard of the test points; only rank 0 saves
    # (run_dir is None elsewhere).
    evaluation = distributed.evaluate(result.model, dataset, attacks=attacks, n=n, batch_size=eval_batch_size,
                                      device=result.config["train"]["device"], eps=eval_eps, quiet=quiet,
                                      masking_checks=masking_checks)
    record = make_run_record(result.config, result, evaluation, result.model, label=label, command=command)
    if result.run_dir is not None:
        save(record, Path(result.run_dir) / "record.json", overwrite=True)
    if records_dir is not None and distributed.context().main:
        save_in(record, records_dir)
    return result.model, record


def evaluate(model: nn.Module, data: str | DataSet = "cifar10", *, attacks: Sequence[str] = DEFAULT_ATTACKS,
             n: int | None = None, eps: float | str = EVAL_EPS, batch_size: int = 256, device=None,
             data_dir=None, masking_checks: bool = True, quiet: bool = False) -> EvalResult:
    """Clean and robust accuracy of ``model`` on the first ``n`` test images of ``data``.

    ``attacks`` are spec strings ("pgd-20", "pgd-50(restarts=5)", "autoattack",
    see ``ro.list_attacks()``); ``eps`` applies to those that do not set their own.
    The result has ``clean_acc``, ``robust[attack]``, ``worst_case`` and the
    gradient-masking ``flags`` (see robustode.evaluator.evaluate).

        result = ro.evaluate(ro.load_model("runs/x/checkpoints/last.pt"), "cifar10", n=1000)
    """
    dataset = load_data(data, data_dir)
    return _evaluate(model, dataset, attacks=tuple(attacks), n=n, batch_size=batch_size, device=device,
                     eps=check_eps(eps), quiet=quiet, masking_checks=masking_checks)


def load_model(checkpoint: str | Path, device="cpu") -> nn.Module:
    """The registered model saved in a checkpoint of ``ro.train`` / ``robustode train``."""
    return load_model_from_checkpoint(checkpoint, device=device)


def build_defense(defense: str | Defense, eps=None, options: dict | None = None) -> Defense:
    """A Defense from a spec such as "yopo-5-3" or "pgd-10(alpha=2/255)", with ``eps`` and ``options`` set."""
    if not isinstance(defense, str):
        if eps is not None or options:
            raise ConfigError("eps and defense_options apply to a defense spec; "
                              "set them on your Defense instead")
        return defense
    try:
        name, settings = parse_spec(defense)
    except ConfigError:  # its message speaks of attacks
        raise ConfigError(f"malformed defense spec {defense!r}; expected e.g. 'pgd-10' or "
                          "'pgd-10(alpha=2/255)'") from None
    settings.update(options or {})
    if eps is not None:
        settings["eps"] = check_eps(eps)
    built = create_defense(name, **settings)
    built.spec = defense.strip() if "(" in defense else name
    return built


def check_attacks(attacks: Sequence[str] | str, eps: float) -> tuple[str, ...]:
    """The attack specs, each checked by building it (an unknown name fails before training)."""
    specs = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    if not specs:
        raise ConfigError("the evaluation needs at least one attack, e.g. pgd-20")
    for spec in specs:
        build_attack(spec, eps=eps)
    return specs


def check_n(n: int | None, dataset: DataSet) -> None:
    if n is None:
        return
    check_positive_int(n, "n")
    if n > len(dataset.test):
        raise DataError(f"asked to evaluate n={n} test images, but the {dataset.name} test set has only "
                        f"{len(dataset.test)}")


def load_data(data: str | DataSet, data_dir=None, train_subset=None, test_subset=None) -> DataSet:
    """A DataSet as given, or loaded by name (see ``robustode list datasets``); optionally cut."""
    if not isinstance(data, DataSet):
        return load_dataset(data, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset)
    if train_subset is None and test_subset is None:
        return data
    return DataSet(data.name, data.train.subset(train_subset, f"{data.name} training set"),
                   data.test.subset(test_subset, f"{data.name} test set"), data.classes, data.kind,
                   data.source, data.meta)


def make_run_record(run: dict, trained, evaluation: EvalResult, model: nn.Module, label: str | None = None,
                    command: str | None = None) -> Record:
    """A leaderboard record from a run's config, its training result and its evaluation.

    ``trained`` is a TrainResult, or for a checkpoint evaluated later a dict with
    the same fields (train_seconds, images_per_second, passes_per_image, data_epochs,
    stopped_reason).
    """
    t = trained if isinstance(trained, dict) else trained.to_dict()
    train, model_info, defense = run["train"], run["model"], run["defense"]
    robust = dict(evaluation.robust)
    settings = evaluation.attack_settings
    # AutoAttack under any spec ("autoattack", "autoattack-dev", with settings): its own flag says standard.
    aa = next((k for k in robust if settings.get(k, {}).get("attack") == "autoattack"), None)
    # Nominal epochs done: Free-m replays each data epoch m times.
    epochs = min(train["epochs"], t["data_epochs"] * int(defense.get("replays", 1)))
    optimizer = {k: train[k] for k in ("lr", "momentum", "weight_decay", "schedule", "milestones", "gamma")}
    return make_record(
        model={"name": model_info.get("name") or model_info["class"], "params": count_parameters(model)},
        defense={"spec": defense["spec"], "name": defense_family(defense["spec"]),
                 "hyperparameters": defense["hyperparameters"]},
        dataset=run["data"],
        training={"epochs": epochs, "batch_size": train["batch_size"], "seed": train["seed"],
                  "seconds": t["train_seconds"], "images_per_second": t["images_per_second"],
                  "passes_per_image": t["passes_per_image"], "optimizer": optimizer,
                  "stopped_early": t["stopped_reason"]},
        evaluation={"n": evaluation.n, "norm": "linf", "eps": evaluation.eps,
                    "clean_acc": evaluation.clean_acc,
                    "pgd20_acc": robust.get("pgd-20"), "autoattack_acc": robust.get(aa) if aa else None,
                    "autoattack_standard": bool(aa and settings[aa].get("standard")), "robust": robust,
                    "attack_settings": evaluation.attack_settings, "seconds": evaluation.seconds,
                    "flags": evaluation.flags},
        provenance=run["provenance"],
        label=label,
        command=command,
    )


def defense_family(spec: str) -> str:
    """The spec without its numbers and settings: "yopo-5-3" -> "yopo", "fgsm-rs" -> "fgsm-rs"."""
    return re.sub(r"-\d+", "", spec.split("(")[0].strip())


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["TrainConfig", "build_defense", "evaluate", "load_data", "load_model", "make_run_record", "train"]
