"""Every defense trains every built-in model (tiny sizes) through the shared loop.

A new model is covered the moment it is registered: the matrix takes the
smallest registered model of each distinct architecture (model class and the
module types inside it), plus the configurations that the grouping merges
(PreActResNet-18 and the plain CIFAR ResNet share a class with WRN; the
stochastic-depth LM-ResNet shares one with LM-ResNet).

Every defense also takes every modifier (or refuses it in one line), and each
modifier run is compared with the same run without it: a modifier that does
nothing fails.
"""

from __future__ import annotations

import pytest
import torch
from training_utils import tiny

from robustode.data import make_synthetic
from robustode.defenses import create_defense
from robustode.errors import ConfigError
from robustode.models import create, describe
from robustode.api import fit

pytestmark = pytest.mark.usefixtures("one_thread")

DEFENSES = ("natural", "pgd-1", "free-2", "yopo-2-1", "fgsm-rs", "trades-1", "mart-1", "n-fgsm", "grad-align")
MODIFIERS = {"ema_decay": 0.5, "label_smoothing": 0.2, "awp_gamma": 0.01}
# The modifier runs use bf16 autocast, the precision CUDA trains in: a modifier can do nothing only
# there (AWP did, perturbing weights whose bf16 copies autocast had cached).
PRECISION = "bf16"
# A modifier must move the returned weights away from the run without it by at least this fraction of
# how far that run moved from the initial weights. A no-op differs by float rounding only (AWP's restore
# w + (p - (w + v)) is not bit-exact): ~1e-5 here, against >= 1e-2 for every modifier that works.
EFFECT = 1e-3


def smallest_of_each_architecture() -> list[str]:
    smallest: dict[tuple, tuple[int, str]] = {}
    for row in describe():
        if row["params"] is None:  # a family entry such as wrnD_K
            continue
        with torch.device("meta"):
            model = create(row["name"])
        key = (type(model).__qualname__, tuple(sorted({type(m).__qualname__ for m in model.modules()})))
        smallest[key] = min(smallest.get(key, (row["params"], row["name"])), (row["params"], row["name"]))
    return sorted({name for _, name in smallest.values()} | {"preact_resnet18", "resnet20", "lm_resnet56_sd"})


@pytest.fixture(scope="module")
def data():
    return make_synthetic(8, 4, seed=0)


@pytest.mark.parametrize("spec", DEFENSES)
@pytest.mark.parametrize("name", smallest_of_each_architecture())
def test_every_defense_trains_every_model(name, spec, data):
    defense = create_defense(spec)
    inputs = []
    step = defense.train_step

    def watched(model, x, y, optimizers, on_step):
        inputs.append((x.min().item(), x.max().item()))
        return step(model, x, y, optimizers, on_step)

    defense.train_step = watched
    torch.manual_seed(0)
    model = create(name, num_classes=data.num_classes)
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    result = fit(model, defense, data, epochs=defense.replays, batch_size=4, device="cpu", quiet=True)
    assert result.data_epochs == 1 and len(inputs) == 2  # two minibatches of four
    assert all(0.0 <= lo and hi <= 1.0 for lo, hi in inputs)
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    changed = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), initial[k])]
    assert changed, f"{spec} did not update any parameter of {name}"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def train_tiny(defense, data):
    """(the fit's result, the model trained, its initial weights): one data epoch of two minibatches, seeded.

    The small contract model (conv, batch norm, linear): in bf16 on the CPU ResNet-20 takes seconds a run.
    """
    model = tiny()
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    result = fit(model, defense, data, epochs=defense.replays, batch_size=4, device="cpu", precision=PRECISION,
                 quiet=True)
    return result, model, initial


def flat(weights: dict) -> torch.Tensor:
    return torch.cat([weights[k].detach().flatten().float() for k in sorted(weights)])


BASELINES: dict[str, tuple[torch.Tensor, float]] = {}  # spec -> (its run's returned weights, how far they moved)


def baseline(spec: str, data) -> tuple[torch.Tensor, float]:
    """The run of ``spec`` without modifiers: its returned weights, flat, and their distance from the start."""
    if spec not in BASELINES:
        result, _, initial = train_tiny(create_defense(spec), data)
        weights = flat(dict(result.model.named_parameters()))
        BASELINES[spec] = (weights, (weights - flat(initial)).norm().item())
    return BASELINES[spec]


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("spec", DEFENSES)
def test_every_defense_takes_every_modifier_or_refuses_it_in_one_line(spec, modifier, data):
    value = MODIFIERS[modifier]
    if modifier == "awp_gamma" and not create_defense(spec).supports_awp:
        with pytest.raises(ConfigError, match="does not take AWP"):
            create_defense(spec, **{modifier: value})
        return
    result, model, initial = train_tiny(create_defense(spec, **{modifier: value}), data)
    assert result.run.defense.hyperparameters[modifier] == value
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    returned = dict(result.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in returned.values())
    assert any(not torch.equal(returned[k], initial[k]) for k in initial)
    assert (result.model is model) == (modifier != "ema_decay")  # the average is a model of its own
    without, moved = baseline(spec, data)  # the same run without the modifier: the modifier must change it
    effect = (flat(returned) - without).norm().item() / moved
    assert effect > EFFECT, f"{modifier} changed nothing in {spec} (relative effect {effect:.1e})"
