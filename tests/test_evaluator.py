"""The shared evaluator: exact accuracies, the table's PGD-20, worst case, flags, state restored, bad input."""

import json
import logging
import random

import numpy as np
import pytest
import torch
from torch import nn

from robustode.attacks import Attack, pgd
from robustode.data.types import DataSet, Split
from robustode.errors import ConfigError, DataError, UnknownNameError
from robustode.api import evaluate
from robustode.evaluation import EvalResult
from robustode.evaluation.attack_loop import batch_seed

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny_data(n=96, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    split = Split(images, labels)
    return DataSet("tiny", train=split, test=split, classes=[str(c) for c in range(classes)], kind="synthetic")


def mlp(classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, classes))


class Constant(nn.Module):
    """Predicts class k whatever the input (its logits do not depend on x)."""

    def __init__(self, k, classes=10):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))
        with torch.no_grad():
            self.bias[k] = 1.0

    def forward(self, x):
        return self.bias + 0 * x.flatten(1)[:, :1]


class Rounding(nn.Module):
    """A linear model behind a rounding step: its input gradient is zero everywhere."""

    def __init__(self, classes=10):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(48, classes)

    def forward(self, x):
        return self.linear(torch.round(x * 16).flatten(1) / 16)


def test_constant_model_scores_exactly_the_class_frequency():
    data = tiny_data(n=100)
    for k in (0, 3, 7):
        result = evaluate(Constant(k), data, quiet=True, escalate=False)  # its zero gradient would escalate
        frequency = int((data.test.labels == k).sum()) / 100
        assert result.clean_acc == frequency
        assert result.robust["pgd-20"] == frequency == result.worst_case  # nothing moves a constant


def test_default_is_the_tables_pgd20_on_all_test_images():
    data = tiny_data(n=96)
    model = mlp()
    result = evaluate(model, data, quiet=True)
    assert isinstance(result, EvalResult) and result.n == 96 and list(result.robust) == ["pgd-20"]
    assert result.attack_settings["pgd-20"] == dict(eps=8 / 255, alpha=2 / 255, steps=20, norm="linf",
                                                    random_start=True, restarts=1, early_stop=False,
                                                    autocast_dtype=None)
    assert result.precision == "float32" and result.eps == 8 / 255 and result.seconds > 0
    assert result.device.startswith("CPU") and result.provenance["torch_version"] == torch.__version__
    assert json.loads(json.dumps(result.to_dict()))["robust"] == result.robust
    # The same numbers as one direct PGD-20 call from the batch's seed, in eval mode, float32; a point
    # counts as robust only if it is also correct clean.
    model.eval()
    x, y = data.test.images.float() / 255, data.test.labels
    torch.manual_seed(batch_seed(0, 0, 0))
    x_adv = pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=20)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        assert result.robust["pgd-20"] == int(((model(x_adv).argmax(1) == y) & clean).sum()) / 96
        assert result.clean_acc == int(clean.sum()) / 96


def test_first_n_unshuffled_and_every_data_form():
    data = tiny_data(n=96)
    model = mlp()
    full = evaluate(model, data, attacks=("fgsm",), quiet=True, masking_checks=False, batch_size=32)
    head = evaluate(model, data, attacks=("fgsm",), n=40, quiet=True, masking_checks=False, batch_size=32)
    assert head.n == 40 and torch.equal(head.per_point["clean"], full.per_point["clean"][:40])
    assert torch.equal(head.per_point["fgsm"], full.per_point["fgsm"][:40])
    x, y = data.test.images.float() / 255, data.test.labels
    for form in (data.test, (x, y)):
        again = evaluate(model, form, attacks=("fgsm",), quiet=True, masking_checks=False, batch_size=32)
        assert again.clean_acc == full.clean_acc and again.robust == full.robust


def test_worst_case_per_point_across_attacks():
    data = tiny_data(n=64)
    result = evaluate(mlp(), data, attacks=("pgd-5", "fgsm", "square(n_queries=30)"), quiet=True,
                      masking_checks=False, eps=0.1)
    p = result.per_point
    expected = p["clean"] & p["pgd-5"] & p["fgsm"] & p["square(n_queries=30)"]
    assert result.worst_case == int(expected.sum()) / 64
    assert result.worst_case <= min(result.clean_acc, *result.robust.values())
    assert result.flags["blackbox_beats_whitebox"] is not None


def test_rounding_model_fires_the_masking_flags(caplog, capsys):
    model, data = Rounding(), tiny_data(n=64)
    with torch.no_grad():  # label every point as the model does, so every point starts robust
        labels = model(data.test.images.float() / 255).argmax(1)
    data = (data.test.images.float() / 255, labels)
    with caplog.at_level(logging.WARNING, logger="robustode"):
        result = evaluate(model, data, attacks=("pgd-20", "square(n_queries=100)"), eps=0.1, escalate=False)
    assert result.flags["zero_grad_fraction"] == 1.0
    assert "zero_grad" in result.flags["fired"] and "blackbox_beats_whitebox" in result.flags["fired"]
    assert "zero input gradient" in caplog.text
    caplog.clear()
    capsys.readouterr()
    evaluate(model, data, attacks=("pgd-20",), eps=0.1, quiet=True, escalate=False)
    assert caplog.text == "" and capsys.readouterr() == ("", "")


def test_healthy_model_fires_no_flag():
    result = evaluate(mlp(), tiny_data(n=64), quiet=True)
    flags = result.flags
    assert flags["fired"] == [] and flags["zero_grad_fraction"] == 0.0
    assert flags["steps_monotone"] is True and flags["eps_monotone"] is True
    assert flags["blackbox_beats_whitebox"] is None  # no black-box attack ran
    skipped = evaluate(mlp(), tiny_data(n=64), quiet=True, masking_checks=False).flags
    assert skipped["zero_grad_fraction"] is None and skipped["steps_monotone"] is None


class Overreach(Attack):
    """A broken attack that leaves its eps-ball."""

    def __init__(self):
        super().__init__("overreach", {"eps": 8 / 255, "norm": "linf"})

    def __call__(self, model, x, y):
        return (x + 16 / 255).clamp(0, 1)


def test_an_attack_outside_its_threat_model_is_flagged():
    result = evaluate(mlp(), tiny_data(n=32), attacks=("pgd-2", Overreach()), quiet=True, masking_checks=False)
    assert result.flags["outside_threat_model"] == ["overreach"]
    assert "outside_threat_model" in result.flags["fired"]


def test_mode_and_rng_restored_and_grads_untouched():
    model = mlp()
    model.train()
    model[3].eval()
    model[1].weight.grad = torch.ones_like(model[1].weight)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(6)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    cheap_aa = "autoattack-dev(apgd_steps=2, apgdt_steps=2, fab_steps=2, square_queries=5)"
    evaluate(model, tiny_data(n=32), attacks=("pgd-3", cheap_aa), quiet=True)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    assert model.training and not model[3].training and model[1].training
    assert torch.equal(model[1].weight.grad, torch.ones_like(model[1].weight)) and model[4].weight.grad is None


def test_mode_restored_when_the_model_fails():
    class Failing(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, tiny_data(n=8), quiet=True)
    assert model.training


@pytest.mark.parametrize("kwargs, error", [
    (dict(eps=-0.01), ConfigError), (dict(eps=1.5), ConfigError), (dict(attacks=("pgd-0",)), ConfigError),
    (dict(attacks=("no-such-attack",)), UnknownNameError), (dict(n=97), DataError), (dict(n=0), DataError),
    (dict(batch_size=0), ConfigError), (dict(attacks=("fgsm", "fgsm")), ConfigError),
])
def test_bad_settings_raise(kwargs, error):
    with pytest.raises(error):
        evaluate(mlp(), tiny_data(n=96), quiet=True, **kwargs)


def test_bad_models_and_data_raise():
    data = tiny_data(n=16)
    with pytest.raises(ConfigError, match="shape"):
        evaluate(mlp(classes=3), data, quiet=True)  # 3 logits for a 10-class data set
    with pytest.raises(ConfigError, match="shape"):
        evaluate(nn.Sequential(mlp(), nn.Flatten(0)), data, quiet=True)  # (B * 10,) instead of (B, 10)
    x, y = data.test.images.float(), data.test.labels  # forgot to divide by 255
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        evaluate(mlp(), (x, y), quiet=True)
    with pytest.raises(DataError):
        evaluate(mlp(), [1, 2, 3], quiet=True)
