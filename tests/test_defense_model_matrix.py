"""Every defense trains every built-in model (tiny sizes) through the shared loop.

A new model is covered the moment it is registered: the matrix takes the
smallest registered model of each distinct architecture (model class and the
module types inside it), plus the configurations that the grouping merges
(PreActResNet-18 and the plain CIFAR ResNet share a class with WRN; the
stochastic-depth LM-ResNet shares one with LM-ResNet).
"""

from __future__ import annotations

import pytest
import torch

from robustode.data import make_synthetic
from robustode.defenses import create_defense
from robustode.errors import ConfigError
from robustode.models import create, describe
from robustode.training import fit

pytestmark = pytest.mark.usefixtures("one_thread")

DEFENSES = ("natural", "pgd-1", "free-2", "yopo-2-1", "fgsm-rs", "trades-1", "mart-1", "n-fgsm", "grad-align")
MODIFIERS = {"ema_decay": 0.5, "label_smoothing": 0.2, "awp_gamma": 0.01}


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


@pytest.mark.parametrize("modifier", MODIFIERS)
@pytest.mark.parametrize("spec", DEFENSES)
def test_every_defense_takes_every_modifier_or_refuses_it_in_one_line(spec, modifier, data):
    value = MODIFIERS[modifier]
    if modifier == "awp_gamma" and not create_defense(spec).supports_awp:
        with pytest.raises(ConfigError, match="does not take AWP"):
            create_defense(spec, **{modifier: value})
        return
    defense = create_defense(spec, **{modifier: value})
    torch.manual_seed(0)
    model = create("resnet20", num_classes=data.num_classes)
    initial = {k: p.detach().clone() for k, p in model.named_parameters()}
    result = fit(model, defense, data, epochs=defense.replays, batch_size=4, device="cpu", quiet=True)
    assert result.run.defense.hyperparameters[modifier] == value
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in result.history)
    returned = dict(result.model.named_parameters())
    assert all(torch.isfinite(p).all() for p in returned.values())
    assert any(not torch.equal(returned[k], initial[k]) for k in initial)
    assert (result.model is model) == (modifier != "ema_decay")  # the average is a model of its own
