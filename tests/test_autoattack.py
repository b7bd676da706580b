"""AutoAttack: the standard version's settings are the reference ones; a cheap run checks the rest."""

import random

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from robustode.attacks import AutoAttack, build
from robustode.errors import ConfigError
from robustode.api import evaluate

TINY = "autoattack-dev(apgd_steps=5, apgdt_steps=5, fab_steps=5, square_queries=20)"


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_model(classes=5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(27, 16), nn.ReLU(), nn.Linear(16, classes)).eval()


def tiny_batch(model, n=24):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 3, 3, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 5  # four points the model gets wrong
    return x, y


def test_standard_components_are_the_reference_ones():
    aa = build("autoattack")
    assert isinstance(aa, AutoAttack) and aa.settings["standard"] is True and "note" not in aa.settings
    parts = {name: (attack, blackbox) for name, attack, blackbox in aa.components(tiny_model(10), 10)}
    assert list(parts) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    apgd, apgdt, fab, square = (parts[k][0] for k in parts)
    assert isinstance(apgd, torchattacks.APGD) and (apgd.loss, apgd.steps, apgd.n_restarts) == ("ce", 100, 1)
    assert isinstance(apgdt, torchattacks.APGDT) and (apgdt.steps, apgdt.n_restarts) == (100, 1)
    assert apgdt.n_target_classes == 9
    assert isinstance(fab, torchattacks.FAB) and fab.multi_targeted and (fab.steps, fab.n_restarts) == (100, 1)
    assert fab.n_target_classes == 9
    assert isinstance(square, torchattacks.Square) and (square.n_queries, square.n_restarts) == (5000, 1)
    # The reference standard version's Square: p_init 0.8 and resc_schedule=False (torchattacks' default: True).
    assert (square.p_init, square.rescale_schedule) == (0.8, False)
    for attack, blackbox in parts.values():
        assert (attack.eps, attack.norm, attack.seed) == (8 / 255, "Linf", 0)
        assert blackbox == isinstance(attack, torchattacks.Square)


def test_cheap_and_custom_versions_are_labelled_non_standard():
    dev = build("autoattack-dev")
    assert dev.name == "autoattack-dev" and dev.settings["standard"] is False and "non-standard" in dev.settings["note"]
    assert build("autoattack(apgd_steps=10)").settings["standard"] is False
    assert build("autoattack(eps=4/255)").settings["standard"] is True  # the reference at another radius
    assert "never report it as AA" in build("torchattacks:AutoAttack").settings["note"]


def test_worst_case_over_parts_only_on_points_still_robust():
    model = tiny_model()
    x, y = tiny_batch(model)
    aa = build(TINY, eps=0.15)
    x_adv, robust, blackbox_fooled = aa.run(model, x, y)
    assert torch.equal(x_adv[:4], x[:4])  # misclassified already: never attacked
    assert (x_adv - x).abs().max() <= 0.15 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    # Its first part alone, from the same seed, can only fool a subset of what all four fool.
    apgd = torchattacks.APGD(model, eps=0.15, steps=5, n_restarts=1, loss="ce", seed=0)
    with torch.no_grad():
        apgd_fooled = model(apgd(x, y)).argmax(1) != y
    assert (fooled | ~apgd_fooled).all() and fooled[4:].any()
    assert not (blackbox_fooled & ~fooled).any()
    assert torch.equal(robust, ~fooled)  # its own verdict: clean-correct and survived every part


def test_fixed_seed_caller_rng_restored_state_untouched():
    model = tiny_model().train()
    model[1].weight.grad = torch.full_like(model[1].weight, 3.0)
    x, y = tiny_batch(model.eval())
    model.train()
    torch.manual_seed(99)
    np.random.seed(1)
    random.seed(2)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    aa = build(TINY, eps=0.15)
    first = aa(model, x, y)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
    torch.manual_seed(7)  # a different caller state: the same answer, since the seed is fixed
    assert torch.equal(aa(model, x, y), first)
    assert model.training and model[1].weight.grad.eq(3.0).all() and model[3].weight.grad is None


def test_evaluate_records_autoattack_and_its_label():
    model = tiny_model()
    x, y = tiny_batch(model)
    result = evaluate(model, (x, y), attacks=("pgd-5", TINY), eps=0.15, quiet=True, masking_checks=False)
    assert result.attack_settings[TINY]["standard"] is False
    assert result.robust[TINY] <= result.clean_acc
    assert result.flags["blackbox_beats_whitebox"] is not None


def test_too_few_classes_and_bad_settings_raise():
    model = tiny_model(classes=3)
    x = torch.rand(4, 3, 3, 3)
    with pytest.raises(ConfigError, match="4 classes"):
        build(TINY)(model, x, torch.zeros(4, dtype=torch.long))
    for spec in ("autoattack(eps=2)", "autoattack(norm=l1)", "autoattack(fab_targets=0)", "autoattack(foo=1)"):
        with pytest.raises(ConfigError):
            build(spec)
