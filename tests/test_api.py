"""The Python API: ro.train / ro.evaluate on custom and registered models, on a tiny synthetic set."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustode as ro
from robustode.api import build_defense
from robustode.attacks import FunctionAttack, attacks
from robustode.errors import ConfigError, DataError, UnknownNameError
from robustode.models import LayerOneModel, normalization, registry
from robustode.records import defense_family

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"epochs": 1, "batch_size": 32, "n": 16, "device": "cpu", "quiet": True}


class Plain(nn.Module):
    """A user's model that knows nothing of robustode: its forward is its children in order."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                  nn.Linear(128, num_classes))

    def forward(self, x):
        return self.body(self.conv1(x))


class Residual(Plain):
    """Its forward is not its children in order, so naming conv1 cannot split it."""

    def forward(self, x):
        return self.body(self.conv1(x) + x.repeat(1, 3, 1, 1)[:, :8])


class Contract(LayerOneModel):
    """The same network following the layer-one contract."""

    def __init__(self, num_classes: int = 10, normalize: bool = True):
        super().__init__()
        self.stem = nn.Sequential(normalization(normalize), nn.Conv2d(3, 8, 3, padding=1))
        self.body = Plain(num_classes).body

    def rest(self, z):
        return self.body(z)


@pytest.fixture(scope="module")
def data():
    return ro.load_dataset("synthetic", train_subset=64, test_subset=32)


def changed(model: nn.Module, before: dict) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_custom_model_trains_with_pgd(data):
    model = Plain()
    before = snapshot(model)
    trained, record = ro.train(model, "pgd-2", data, **FAST)
    assert trained is model and changed(model, before)
    assert (record.model.name, record.defense.spec, record.defense.name) == ("Plain", "pgd-2", "pgd")
    assert record.training.passes_per_image == 3.0  # 2 attack steps + 1 update, one epoch
    assert record.evaluation.n == 16 and set(record.evaluation.robust) == {"pgd-20"}


@pytest.mark.parametrize("how", ["traced", "first", "contract"])
def test_yopo_takes_layer_one_from_the_model_the_first_submodule_or_the_contract(data, how):
    model = Contract() if how == "contract" else Plain()
    options = {"first": "conv1"} if how == "first" else None
    before = snapshot(model)
    _, record = ro.train(model, "yopo-2-1", data, defense_options=options, **FAST)
    assert changed(model, before)
    hyper = record.defense.hyperparameters
    assert hyper["first"] == (options or {}).get("first")
    assert hyper["layer_one"] == {"traced": "layer one: conv1", "first": "layer one: conv1 (first=)",
                                  "contract": "layer one: stem (the model's layer_one())"}[how]
    assert record.training.passes_per_image == 2.0  # m = 2 full passes per batch


def test_yopo_refuses_a_model_whose_input_feeds_more_than_layer_one(data):
    model = Residual()  # its input also skips conv1: there is no single layer one
    before = snapshot(model)
    with pytest.raises(ConfigError) as err:
        ro.train(model, "yopo-2-1", data, **FAST)
    message = str(err.value)
    assert message.startswith("Residual has no single layer one: its input reaches conv1 and also repeat")
    assert "define layer_one and rest on the model" in message and "first=" in message
    assert not changed(model, before)
    with pytest.raises(ConfigError, match="first='body' is not the first submodule of Plain .*conv1, body"):
        ro.train(Plain(), "yopo-2-1", data, defense_options={"first": "body"}, **FAST)


def test_yopo_refuses_a_first_submodule_that_does_not_reproduce_the_forward(data):
    model = Residual()
    before = snapshot(model)
    with pytest.raises(ConfigError) as err:
        ro.train(model, "yopo-2-1", data, defense_options={"first": "conv1"}, **FAST)
    message = str(err.value)
    assert "split of Residual (layer one: conv1 (first=)) does not reproduce Residual's forward" in message
    assert message.endswith("define layer_one and rest on the model (submodules, or methods with "
                            "layer_one_parameters(); see robustode.models.contract)")
    assert not changed(model, before)


@pytest.fixture
def tiny_contract():
    @ro.register_model("test_api_contract")
    def factory(num_classes: int = 10, normalize: bool = True):
        """A tiny contract model for the API tests."""
        return Contract(num_classes, normalize)

    yield "test_api_contract"
    registry.remove("test_api_contract")


def test_a_registered_model_trains_by_name_and_comes_back_from_its_checkpoint(data, tiny_contract, tmp_path):
    model, record = ro.train(tiny_contract, "yopo-2-1", data, out_dir=tmp_path / "run", **FAST)
    assert record.model.name == tiny_contract
    loaded = ro.load_model(tmp_path / "run" / "checkpoints" / "last.pt")
    assert isinstance(loaded, Contract)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    again = ro.evaluate(loaded, data, n=16, masking_checks=False, quiet=True)
    assert again.clean_acc == record.evaluation.clean_acc


def test_create_model_tags_what_rebuilds_it(tmp_path, data):
    model = ro.create_model("vit_tiny", normalize=False)
    assert (model.robustode_name, model.robustode_kwargs) == ("vit_tiny", {"normalize": False})
    ro.train(model, "natural", data, out_dir=tmp_path / "run", **FAST)
    loaded = ro.load_model(tmp_path / "run" / "checkpoints" / "last.pt")  # strict load: same architecture
    assert loaded.robustode_kwargs == {"normalize": False}
    assert loaded.state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("spec", ["natural", "pgd-2", "free-2", "yopo-2-1", "fgsm-rs", "trades-2"])
def test_eps_reaches_every_built_in_defense(spec):
    assert build_defense(spec, eps="4/255").eps == 4 / 255
    assert build_defense(spec).eps == (0.031 if spec.startswith("trades") else 8 / 255)


def test_a_defense_spec_may_carry_settings_as_fractions(data):
    defense = build_defense("pgd-2(alpha=1/255)", eps=0.01)
    assert (defense.alpha, defense.eps, defense.steps) == (1 / 255, 0.01, 2)
    assert defense.spec == "pgd-2(alpha=1/255)"
    _, record = ro.train(Plain(), "pgd-2(alpha=1/255)", data, **FAST)
    assert record.defense.spec == "pgd-2(alpha=1/255)" and record.defense.hyperparameters["alpha"] == 1 / 255


@pytest.mark.parametrize(("spec", "family"), [("yopo-5-3", "yopo"), ("pgd-10", "pgd"), ("free-8", "free"),
                                              ("fgsm-rs", "fgsm-rs"), ("trades-10", "trades"),
                                              ("natural", "natural"), ("pgd-7(alpha=2/255)", "pgd")])
def test_defense_family(spec, family):
    assert defense_family(spec) == family


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"attacks": ["pgd-20", "nope"]}, UnknownNameError, "unknown attack 'nope'"),
    ({"n": 33}, DataError, "n=33 .* only 32"),
    ({"eps": 2}, ConfigError, r"must lie in \(0, 1\]"),
    ({"defense": "yopo-0-3"}, ConfigError, "yopo-0-3"),
    ({"model": "no_such_model"}, UnknownNameError, "unknown model"),
    ({"epochs": 0}, ConfigError, "epochs must be a positive integer"),
])
def test_bad_settings_fail_before_any_training(data, tmp_path, kwargs, error, match):
    model = Plain()
    before = snapshot(model)
    args = {**FAST, "model": model, "defense": "natural", **kwargs}
    with pytest.raises(error, match=match):
        ro.train(args.pop("model"), args.pop("defense"), data, out_dir=tmp_path / "run", **args)
    assert not changed(model, before) and not (tmp_path / "run").exists()


def test_eps_with_a_defense_instance_is_refused():
    with pytest.raises(ConfigError, match="set them on your Defense"):
        build_defense(ro.create_defense("pgd-2"), eps=0.01)


@pytest.fixture
def noop_attack():
    @ro.register_attack("test-noop")
    def noop(eps=8 / 255):
        """Returns the input unchanged."""
        return FunctionAttack("test-noop", lambda model, x, y, eps: x.clone(), {"eps": eps})

    yield "test-noop"
    attacks.remove("test-noop")


def test_evaluate_runs_registered_attacks(data, noop_attack):
    model = Contract().eval()
    result = ro.evaluate(model, data, attacks=[noop_attack, "fgsm"], n=32, masking_checks=False, quiet=True)
    assert result.robust[noop_attack] == result.clean_acc  # an attack that changes nothing
    with torch.no_grad():
        x = data.test.images[:32].float() / 255
        expected = (model(x).argmax(1) == data.test.labels[:32]).float().mean().item()
    assert result.clean_acc == pytest.approx(expected, abs=1e-9)
    with pytest.raises(DataError, match="only 32"):
        ro.evaluate(model, data, n=33, quiet=True)


def test_the_package_exposes_the_api():
    for name in ro.__all__:
        assert hasattr(ro, name), name
    assert "yopo-M-N" in ro.list_defenses() and "pgd-K" in ro.list_attacks()
    assert "synthetic" in ro.list_datasets() and "vit_tiny" in ro.list_models("vit*")
    assert ro.TrainConfig().replace(epochs=3).epochs == 3


@pytest.mark.parametrize("spec, standard", [("autoattack-dev", False), ("autoattack-dev(square_queries=50)", False)])
def test_the_record_takes_autoattack_under_any_spec_and_labels_it_by_its_own_flag(data, spec, standard):
    _, record = ro.train(Plain(), "natural", data, attacks=("pgd-20", spec), masking_checks=False, **FAST)
    ev = record.evaluation
    assert ev.autoattack_acc == ev.robust[spec]
    assert ev.autoattack_standard is standard
    assert ev.autoattack_acc <= ev.clean_acc
