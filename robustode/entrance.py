"""Names become objects here, once each: the model, the defense, the threat model, the attacks, the data
and the training settings. The Python API (api.py) and the CLI call these; below them every function
takes objects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import evaluation
from .attacks.spec import Attack, build_all
from .data import DataSet, load_dataset
from .data.corruptions import CorruptionSet, load_corruptions
from .data.extra import ExtraSet, open_extra
from .defenses import create_defense
from .defenses.base import Defense
from .errors import ConfigError, DataError
from .evaluation.state import evaluation_state
from .interop.robustbench_keys import load_strict, read_checkpoint, to_robustode
from .interop.robustbench_zoo import layout_of, model_for
from .models import create as create_model
from .models import select_output
from .recipes import merge, recipes
from .rules import BUDGET
from .threat import DEFAULT_EPS, ThreatModel
from .training import TrainConfig
from .training.held_out import held_out_attack
from .training.surrogate import train_surrogate
from .utils import check_positive_int

DEFAULT_ATTACKS = ("pgd-20",)


def check_model_name(model: nn.Module | str, output) -> None:
    """A registered name is checked now, before any data is loaded (it is built once the class count is known);
    so is the output key of your own model."""
    if not isinstance(model, str):
        select_output(model, output)
    else:
        with torch.device("meta"):  # built without memory: a bad setting ("ode_net16_1(step_size=0)") fails now
            create_model(model)
        if output is not None:
            raise ConfigError("output= picks the logits of your own model; a registered model returns them")


def build_model(model: nn.Module | str, num_classes: int, seed: int, output=None) -> nn.Module:
    """Your module with its logits picked, or the registered model built from ``seed`` (its initial weights
    follow the run's seed; ``create`` tags it, so checkpoints can rebuild it)."""
    if not isinstance(model, str):
        return select_output(model, output)
    if output is not None:  # refused for a registered model (the entrances checked the name before the data)
        check_model_name(model, output)
    torch.manual_seed(seed)
    return create_model(model, num_classes=num_classes)


def build_defense(defense: str | Defense, eps=None, options: dict | None = None) -> Defense:
    """A Defense from a spec such as "yopo-5-3" or "pgd-10(alpha=2/255)", with ``eps`` and ``options`` set;
    a Defense given is checked by its own rules (a subclass may not have called them)."""
    if isinstance(defense, str):
        settings = dict(options or {})
        if eps is not None:  # a bad eps is named as such, not as a bad defense spec
            settings["eps"] = BUDGET(eps, "eps")
        return create_defense(defense, **settings)
    if eps is not None or options:
        raise ConfigError("eps and defense_options apply to a defense spec; set them on your Defense instead")
    if not callable(getattr(defense, "train_step", None)):
        raise ConfigError(f"defense must be a Defense or a spec like 'pgd-10', got {type(defense).__name__}")
    if isinstance(defense, Defense):
        defense.validate()
    return defense


def build_threat(eps=None, norm: str = "linf") -> ThreatModel:
    """The threat model of an evaluation: ``eps`` (default 8/255) in ``norm``."""
    return ThreatModel(norm=norm, eps=DEFAULT_EPS if eps is None else eps)


def build_attacks(attacks: Sequence[str | Attack] | str | Attack, threat: ThreatModel, *,
                  allow_none: bool = False) -> list[Attack]:
    """The evaluation's attacks, each built once; ``threat.eps`` applies where a spec sets no eps of its own.
    ``allow_none``: an empty list is a clean-only evaluation (``ro.evaluate``); training's needs one."""
    return build_all(attacks, allow_none=allow_none, eps=threat.eps)


def build_eval_attack(config: TrainConfig) -> Attack | None:
    """The periodic held-out evaluations' attack (``config.eval_attack``), when there are any."""
    return held_out_attack(config) if config.eval_every else None


def train_config(config: TrainConfig | None, settings: dict) -> TrainConfig:
    """The training settings: ``config`` (or the defaults) with ``settings`` (TrainConfig fields) set."""
    return (config or TrainConfig()).replace(**settings)


def load_data(data: str | DataSet, data_dir=None, train_subset=None, test_subset=None) -> DataSet:
    """A DataSet as given, or loaded by name (see ``robustode list datasets``); optionally cut."""
    if not isinstance(data, (str, DataSet)):
        raise ConfigError(f"data must be a data set name (see `robustode list datasets`) or a DataSet, got a "
                          f"{type(data).__name__}; wrap your own tensors as robustode.data.DataSet("
                          "name, Split(uint8 images, labels), ...)")
    if isinstance(data, str):
        return load_dataset(data, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset)
    if train_subset is None and test_subset is None:
        return data
    return dataclasses.replace(data, train=data.train.subset(train_subset, f"{data.name} training set"),
                               test=data.test.subset(test_subset, f"{data.name} test set"))


def check_n(n: int | None, dataset: DataSet) -> None:
    """``n`` test points exist."""
    if n is None:
        return
    check_positive_int(n, "n")
    if n > len(dataset.test):
        raise DataError(f"asked to evaluate n={n} test images, but the {dataset.name} test set has only "
                        f"{len(dataset.test)}")


def evaluate_loaded(model: nn.Module, dataset: DataSet, attacks: list[Attack], threat: ThreatModel,
                    key: Callable[[], str | None], *, n: int | None, batch_size: int, device: torch.device,
                    quiet: bool, masking_checks: bool, state=None) -> evaluation.EvalResult:
    """A loaded checkpoint's evaluation, after checking ``n``: robustode's evaluator with its surrogate. With
    ``state`` (a folder) the per-point progress is kept there, in a file named after ``key()`` (the weights'
    digest, computed only then) and the evaluation asked for: the same call after a kill resumes."""
    check_n(n, dataset)
    if state is not None:
        state = evaluation_state(state, key(), dataset.name, n, attacks, threat, batch_size, masking_checks)
    return evaluation.evaluate(model, dataset, attacks, threat, n=n, batch_size=batch_size, device=device,
                               quiet=quiet, masking_checks=masking_checks, state=state, surrogate=train_surrogate)


def build_robustbench(name: str, checkpoint, trust_pickle: bool = False) -> nn.Module:
    """The robustode model of RobustBench entry ``name`` (or of a robustode model with a RobustBench layout, such
    as an exported "dm_wrn28_10"), with the checkpoint's weights loaded strictly, in eval mode."""
    model_name = model_for(name)
    layout = layout_of(model_name)
    model = create_model(model_name, **({"normalize": False} if layout == "wrn" else {}))
    load_strict(model, to_robustode(layout, read_checkpoint(checkpoint, trust_pickle)),
                f"{checkpoint} as {name} ({model_name})")
    return model.eval()


def load_extra(extra_data, dataset: DataSet) -> ExtraSet | None:
    """The extra training set (generated images): .npz parts or a ``robustode data convert`` directory,
    opened once and checked against ``dataset`` before any training; an ExtraSet is taken as it is."""
    if extra_data is None or isinstance(extra_data, ExtraSet):
        return extra_data
    return open_extra(extra_data, dataset)


def apply_recipe(recipe: str | None, model, defense, config: TrainConfig, given: set[str], extra_data=None):
    """(model, defense, TrainConfig, notes): the recipe named (``robustode list recipes``) under what was
    given explicitly (``defense`` None: not given; ``given``: the TrainConfig fields set); each note says
    where a given value won. Without a recipe the defense defaults to pgd-10."""
    if recipe is None:
        if model is None:
            raise ConfigError("no model given: a registered name (robustode list models), your nn.Module, or a "
                              "recipe that names one (robustode list recipes)")
        return model, ("pgd-10" if defense is None else defense), config, ()
    chosen = recipes.get(recipe)
    if defense is not None and not isinstance(defense, str):
        raise ConfigError(f"recipe {recipe} sets the defense's settings: give the defense as a spec "
                          "('trades-10(beta=6)'), not as a Defense object")
    merged = merge(chosen, model, defense, {k: getattr(config, k) for k in given}, extra_data is not None)
    return merged.model, merged.defense, config.replace(**merged.train), merged.notes


def recipe_defense(recipe: str | None, spec: str, eps=None, options: dict | None = None) -> Defense:
    """build_defense, naming the recipe when its settings and the defense given do not go together."""
    try:
        return build_defense(spec, eps, options)
    except ConfigError as err:
        if recipe is None:
            raise
        raise ConfigError(f"recipe {recipe} with defense {spec}: {err}") from None


def load_corruption_data(data: str | CorruptionSet, clean: str | DataSet | None = None,
                         data_dir=None) -> tuple[CorruptionSet, DataSet]:
    """The corruption set ("cifar10c:PATH", checked file by file) and the clean data set of its clean accuracy
    (default: the one it corrupts, e.g. cifar10)."""
    corrupted = data if isinstance(data, CorruptionSet) else load_corruptions(data)
    return corrupted, load_data(clean or corrupted.clean, data_dir)

