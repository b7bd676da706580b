"""Every registered model, the registry functions, parameter counts and bad input."""

import re

import pytest
import torch

from robustode import models
from robustode.errors import CheckpointError, ConfigError, UnknownNameError
from robustode.models import LayerOneModel, count_parameters, create, load_reference_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread on the shared machine


CONCRETE = [entry.name for entry in models.registry.entries() if entry.pattern is None]
BIG = {"dm_wrn70_16"}  # 267M parameters, 11 s on this CPU: run with -m slow (tests/test_dm_wrn.py covers its family)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in CONCRETE])
def test_every_model_forward_backward_and_layer_one_split(name):
    torch.manual_seed(0)
    model = create(name).eval()  # eval: stochastic-depth models would drop blocks in train mode
    assert isinstance(model, LayerOneModel)
    x = torch.rand(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert torch.equal(model.rest(model.layer_one(x)), logits)
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    assert {id(p) for p in model.layer_one_parameters()} == {id(p) for p in model.stem.parameters()}


@pytest.mark.parametrize("name", CONCRETE)
def test_docstring_names_the_true_parameter_count_and_an_example(name):
    doc = models.registry.lookup(name).__doc__
    stated = re.search(r"Parameters: ([\d,]+) for 10 classes", doc)
    assert stated, f"{name}: docstring states no parameter count"
    assert int(stated[1].replace(",", "")) == count_parameters(name)
    assert f'create("{name}")' in doc and "Update rule" in doc


def test_exact_parameter_counts():
    assert count_parameters("wrn34_10") == 46_160_474
    # fast-AT PreActResNet-18 with its final BN-ReLU; 11,171,146 + 2 * 512 BN affine.
    assert count_parameters("preact_resnet18") == 11_171_146 + 1024
    assert count_parameters("wrn34_10", num_classes=100) == 46_160_474 + 90 * 641


def test_num_classes_and_family_names():
    assert create("vit_tiny", num_classes=3)(torch.rand(1, 3, 32, 32)).shape == (1, 3)
    assert create("wrn10_2").stages[2].blocks[0].conv1.out_channels == 128
    assert "wrn34_10" in models.list("wrn*") and "resnet20" not in models.list("wrn*")


def test_describe_lists_every_model_with_counts():
    rows = {row["name"]: row for row in models.describe()}
    assert set(rows) == set(models.list())
    assert rows["wrn34_10"]["params"] == 46_160_474 and rows["wrnD_K"]["params"] is None
    assert rows["lm_resnet56"]["summary"].startswith("LM-ResNet-56")


def test_normalization_is_the_first_op_and_can_be_switched_off():
    torch.manual_seed(0)
    normed, plain = create("resnet20").eval(), create("resnet20", normalize=False).eval()
    plain.load_state_dict({k: v for k, v in normed.state_dict().items() if not k.startswith("stem.norm.")})
    x = torch.rand(2, 3, 32, 32)
    mean, std = normed.stem.norm.mean, normed.stem.norm.std
    torch.testing.assert_close(normed(x), plain((x - mean) / std))
    assert isinstance(plain.stem.norm, torch.nn.Identity)


def test_register_model_adds_a_user_model():
    @models.register_model("test_user_tiny")
    def test_user_tiny(num_classes=10, normalize=True):
        """A user's model."""
        return create("resnet20", num_classes=num_classes, normalize=normalize)

    try:
        assert create("test_user_tiny", num_classes=4).head.fc.out_features == 4
    finally:
        models.registry.remove("test_user_tiny")


def test_bad_names_options_and_inputs_raise_clear_errors():
    with pytest.raises(UnknownNameError, match="did you mean.*wrn34_10"):
        create("wrn34_1O")
    with pytest.raises(ConfigError, match="widht"):
        create("resnet20", widht=3)
    with pytest.raises(ConfigError, match="num_classes"):
        create("resnet20", num_classes=0)
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        create("wrn11_2")
    model = create("resnet20")
    with pytest.raises(ConfigError, match=r"expects images of shape \(N, 3, 32, 32\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="got \\(2, 3, 28, 28\\)"):
        create("vit_tiny")(torch.rand(2, 3, 28, 28))
    with pytest.raises(ConfigError, match="odd"):
        models.rk_resnet.rk2_resnet(110)


def test_a_setting_given_twice_with_two_values_is_refused_as_for_a_defense():
    with pytest.raises(ConfigError, match="already sets method=rk4; got method='euler' as well"):
        create("ode_net16_1(method=rk4)", method="euler")
    with pytest.raises(ConfigError, match="already sets num_classes=100; got num_classes=10 as well"):
        create("resnet20(num_classes=100)", num_classes=10)
    assert create("ode_net4_1(method=rk4)", method="rk4").blocks[0].solver.method == "rk4"  # the same value twice
    assert create("resnet20(num_classes=100)")(torch.rand(1, 3, 32, 32)).shape == (1, 100)  # not the default 10


def _reference_name(key):
    """Our key -> the TRADES / YOPO WideResNet key (written independently of the loader's rules)."""
    key = key.replace("stem.conv.", "conv1.").replace(".shortcut.", ".convShortcut.")
    key = re.sub(r"^stages\.(\d)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.layer.", key)
    return key.replace("head.bn.", "bn1.").replace("head.fc.", "fc.")


def test_wrn_reference_state_dict_import_drops_sub_block1():
    torch.manual_seed(0)
    source = create("wrn16_1", normalize=False)
    reference = {_reference_name(k): v for k, v in source.state_dict().items()}
    assert "block2.layer.0.convShortcut.weight" in reference and "bn1.running_mean" in reference
    extra = {
        "sub_block1.layer.0.conv1.weight": torch.zeros(16, 16, 3, 3),
        "sub_block1.layer.0.bn1.weight": torch.ones(16),
    }
    target = create("wrn16_1", normalize=False)
    load_reference_state_dict(target, {**reference, **extra})
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    load_reference_state_dict(target, {f"module.{k}": v for k, v in reference.items()})  # DataParallel copies
    with pytest.raises(CheckpointError, match="unexpected keys \\['foo.weight'\\]"):
        load_reference_state_dict(target, {**reference, "foo.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="missing"):
        load_reference_state_dict(target, {k: v for k, v in reference.items() if k != "fc.bias"})
    with pytest.raises(CheckpointError, match="normalize=False"):
        load_reference_state_dict(create("wrn16_1"), reference)
