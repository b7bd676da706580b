"""Recipes: a published training setup in one word (``--recipe wang2023``, ``recipe="wang2023"``).

A recipe sets the model, the defense with its settings, the modifiers, the optimizer, the schedule and
the data mix. Whatever you set explicitly wins over the recipe's value, and the run's log says so, item
by item (``merge``). ``robustode list recipes`` lists them; register your own with ``@recipes.register()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .registry import Registry
from .specs import parse_spec, same_value, spec_text
from .threat import DEFAULT_EPS

recipes = Registry("recipe")


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str | None  # the model trained when none is given
    defense: str | None  # a defense spec with the method's own settings; None: the user names the method
    modifiers: dict = field(default_factory=dict)  # settings every defense takes (label_smoothing, ema_decay)
    train: dict = field(default_factory=dict)  # TrainConfig fields (optimizer, schedule, data mix, EMA style)


@recipes.register("wang2023")
def wang2023() -> Recipe:
    """Wang et al. 2023, generated data + TRADES: dm_wrn28_10, 0.7 extra per batch, EMA 0.995 (--extra-data).

    "Better diffusion models further improve adversarial training" (ICML 2023,
    https://arxiv.org/abs/2302.04638), as their code runs it (github.com/wzekai99/DM-Improves-AT, README's
    train-wa.py command for WRN-28-10 with 1M generated images; settings read from its source):

    - model: WRN-28-10 with SiLU (``dm_wrn28_10``; README ``--model wrn-28-10-swish``).
    - defense: TRADES, beta 5 (README ``--beta 5.0``), PGD-10 inside with step 2/255 at eps 8/255
      (core/utils/parser.py ``--attack-step 2/255``, ``--attack-iter 10``, ``--attack-eps 8/255``), the
      attack in train mode without moving the batch-norm statistics (gowal21uncovering/utils/trades.py,
      ``track_bn_stats(model, False)`` around the attack's forwards) -> ``bn_mode=train-frozen``.
    - label smoothing 0.1 (parser.py ``--ls 0.1``).
    - weight average: decay 0.995 (train-wa.py ``--tau 0.995``), their way: the weights themselves for
      the first 2.5% of the steps, then min(tau, (1 + t) / (10 + t)); parameters averaged, batch-norm
      statistics copied from the live model (gowal21uncovering/utils/watrain.py ``ema_update``,
      ``update_bn``) -> ``ema_style="wang2023"``.
    - SGD, momentum 0.9, Nesterov, weight decay 5e-4 (watrain.py ``init_optimizer``; parser.py
      ``--nesterov True``, ``--weight-decay 5e-4``), lr 0.2 at batch 512, 400 epochs (README).
    - schedule: OneCycleLR with pct_start 0.025 (core/utils/train.py, scheduler "cosinew") ->
      ``onecycle`` with ``cyclic_peak=0.025``.
    - data: 70% of every minibatch generated (parser.py ``--unsup-fraction 0.7``), an epoch being
      ceil(50,000 / batch) minibatches (core/data/semisup.py).

    Not reproduced: their OneCycleLR steps once per epoch and also cycles the momentum 0.95 -> 0.85 ->
    0.95; their sampler draws generated images with replacement (robustode: a permutation per pass); their
    TRADES starts the attack uniformly in the eps-ball and takes the KL target from a forward before it.
    """
    return Recipe(
        "wang2023", "dm_wrn28_10", f"trades-10(beta=5, step_size=2/255, eps={DEFAULT_EPS!r}, bn_mode=train-frozen)",
        modifiers={"label_smoothing": 0.1, "ema_decay": 0.995},
        train={"epochs": 400, "batch_size": 512, "lr": 0.2, "momentum": 0.9, "weight_decay": 5e-4,
               "nesterov": True, "schedule": "onecycle", "cyclic_peak": 0.025, "extra_fraction": 0.7,
               "ema_style": "wang2023"})


@recipes.register("fastat")
def fastat() -> Recipe:
    """The FastAT benchmark's common settings for fast methods: preact_resnet18, 100 epochs, OneCycle, LS 0.4, batch 128.

    The FastAT benchmark (arXiv 2604.22853; github.com/fzjcdt/FastAT_Benchmark, configs/cifar10/common.yaml
    and each method's yaml, main.py): batch 128, 100 epochs, SGD lr 0.1, momentum 0.9, weight decay 5e-4,
    OneCycleLR with torch's defaults (pct_start 0.3), label smoothing 0.4. Name the method with --defense
    (fgsm-rs, n-fgsm, grad-align, ...): the recipe fixes what every method shares, so fast defenses are
    compared as the benchmark compares them.

    Not reproduced: the benchmark trains ResNet-18 on CIFAR-10 (robustode has PreActResNet-18, which it
    uses for Tiny-ImageNet), keeps 1,000 training images for validation (``holdout=1000`` does the same),
    and averages the weights (tau 0.9995, fixed, whole state: ``ema_decay=0.9995, ema_style="fixed"``) for
    some methods only, so the recipe leaves averaging off.
    """
    return Recipe("fastat", "preact_resnet18", None, modifiers={"label_smoothing": 0.4},
                  train={"epochs": 100, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                         "schedule": "onecycle", "cyclic_peak": 0.3})


@dataclass(frozen=True)
class Merged:
    """A recipe with what was given explicitly: the names and settings a run uses, and who won where."""

    model: object  # a name or your nn.Module
    defense: str
    train: dict  # TrainConfig fields to set
    notes: tuple[str, ...]  # one line per setting where an explicit value replaced the recipe's


def merge(recipe: Recipe, model, defense: str | None, given: dict, has_extra: bool = False) -> Merged:
    """``recipe`` under the explicit ``model``, ``defense`` spec and TrainConfig fields ``given``;
    ``has_extra``: extra data was given."""
    notes = []
    if "extra_fraction" in recipe.train and not has_extra:
        notes.append("no extra data given (--extra-data / extra_data=): training on the base set alone, "
                     "without the generated images the recipe's results depend on")
    if model is None and recipe.model is None:
        raise ConfigError(f"recipe {recipe.name} names no model: give one (--model)")
    if model is not None and recipe.model is not None and model != recipe.model:
        notes.append(f"model: {_shown(model)} (given) over the recipe's {recipe.model}")
    spec, more = _defense(recipe, defense)
    notes += more
    train = {}
    for key, value in recipe.train.items():
        if key in given and given[key] != value:
            notes.append(f"{key}: {given[key]!r} (given) over the recipe's {value!r}")
        else:
            train[key] = value
    return Merged(recipe.model if model is None else model, spec, {**train, "recipe": recipe.name}, tuple(notes))


def _defense(recipe: Recipe, defense: str | None) -> tuple[str, list[str]]:
    """The defense spec: the recipe's, or the one given (with the recipe's settings when it is the same
    method), then the recipe's modifiers where the spec sets none of its own."""
    if defense is None and recipe.defense is None:
        raise ConfigError(f"recipe {recipe.name} sets what every method shares; name the method with --defense")
    notes = []
    name, settings = parse_spec(defense if defense is not None else recipe.defense, "defense")
    if recipe.defense is not None and defense is not None:
        own_name, own = parse_spec(recipe.defense, "defense")
        if own_name == name:
            for key in own.keys() & settings.keys():
                if not same_value(own[key], settings[key]):
                    notes.append(f"{key}: {settings[key]!r} (given) over the recipe's {own[key]!r}")
            settings = {**own, **settings}
        else:
            notes.append(f"defense: {defense} (given) over the recipe's {recipe.defense}")
    for key, value in recipe.modifiers.items():
        if key in settings and not same_value(value, settings[key]):
            notes.append(f"{key}: {settings[key]!r} (given) over the recipe's {value!r}")
        settings.setdefault(key, value)
    return spec_text(name, settings), notes


def _shown(model) -> str:
    return model if isinstance(model, str) else type(model).__name__
