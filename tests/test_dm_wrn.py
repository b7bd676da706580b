"""The Swish WideResNets (dm_wrn*): RobustBench's counts, key layout, SAME padding, normalization, layer one."""

import pytest
import torch
import torch.nn.functional as F

from robustode.errors import ConfigError
from robustode.models import count_parameters, create
from robustode.models.contract import CIFAR10_MEAN, CIFAR10_STD
from robustode.split import split_model
from robustode.split.affine import layer_one_is_affine

pytestmark = pytest.mark.usefixtures("one_thread")


def test_parameter_counts_are_robustbenchs():
    # Counted by building RobustBench's DMWideResNet(num_classes=10, depth=D, width=K, activation_fn=nn.SiLU)
    # (RobustBench/robustbench @ 78fcc9e, robustbench/model_zoo/architectures/dm_wide_resnet.py) on the meta
    # device. WRN-28-10's count is also the plain WRN-28-10's (same convs and BNs).
    assert count_parameters("dm_wrn28_10") == 36_479_194 == count_parameters("wrn28_10")
    assert count_parameters("dm_wrn70_16") == 266_796_506
    assert count_parameters("dm_wrn10_1") == 77_850
    assert count_parameters("dm_wrn16_2") == 691_674


def robustbench_keys(depth: int, width: int) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of RobustBench's DMWideResNet, written out from its naming rule."""
    n, planes = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
    keys = {"init_conv.weight": (16, 3, 3, 3)}

    def bn(prefix, c):
        keys.update({f"{prefix}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        keys[f"{prefix}.num_batches_tracked"] = ()

    for g in range(3):
        for b in range(n):
            cin, cout, pre = planes[g + 1] if b else planes[g], planes[g + 1], f"layer.{g}.block.{b}"
            bn(f"{pre}.batchnorm_0", cin)
            keys[f"{pre}.conv_0.weight"] = (cout, cin, 3, 3)
            bn(f"{pre}.batchnorm_1", cout)
            keys[f"{pre}.conv_1.weight"] = (cout, cout, 3, 3)
            if cin != cout:
                keys[f"{pre}.shortcut.weight"] = (cout, cin, 1, 1)
    bn("batchnorm", planes[3])
    keys.update({"logits.weight": (10, planes[3]), "logits.bias": (10,)})
    return keys


def test_state_dict_is_robustbenchs_layout_and_loads_strictly():
    expected = robustbench_keys(16, 2)
    model = create("dm_wrn16_2")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected  # no mean/std: not persistent
    torch.manual_seed(1)
    theirs = {k: torch.randn(s) if s else torch.tensor(0) for k, s in expected.items()}
    theirs = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in theirs.items()}
    model.load_state_dict(theirs, strict=True)
    assert torch.equal(model.layer[1].block[0].shortcut.weight, theirs["layer.1.block.0.shortcut.weight"])


def test_stride_two_convs_pad_right_and_bottom_only():
    torch.manual_seed(0)
    block = create("dm_wrn10_2").eval().layer[1].block[0]
    x = torch.randn(2, 32, 8, 8)
    a = block.preactivate(x)
    out = block.conv_1(block.relu_1(block.batchnorm_1(F.conv2d(F.pad(a, (0, 1, 0, 1)), block.conv_0.weight, stride=2))))
    torch.testing.assert_close(block(x), block.shortcut(a) + out)
    symmetric = F.conv2d(a, block.conv_0.weight, stride=2, padding=1)
    assert not torch.allclose(F.conv2d(F.pad(a, (0, 1, 0, 1)), block.conv_0.weight, stride=2), symmetric)


def test_normalization_inside_with_cifar10_constants():
    torch.manual_seed(0)
    normed, plain = create("dm_wrn10_1").eval(), create("dm_wrn10_1", normalize=False).eval()
    plain.load_state_dict(normed.state_dict())
    x = torch.rand(3, 3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(normed(x), plain((x - mean) / std))
    assert isinstance(normed.relu, torch.nn.SiLU) and isinstance(normed.layer[0].block[0].relu_0, torch.nn.SiLU)


def test_yopo_finds_an_affine_layer_one_and_the_nonlinear_split():
    torch.manual_seed(0)
    model = create("dm_wrn10_2").eval()
    x = torch.rand(2, 3, 32, 32)
    split = split_model(model, example=x)
    assert {id(p) for p in split.layer_one_params} == {id(model.init_conv.weight)}
    assert layer_one_is_affine(model, split, x)
    torch.testing.assert_close(split.rest(split.layer_one(x)), model(x), rtol=0, atol=0)
    nonlinear = split_model(model, nonlinear=True, example=x)
    torch.testing.assert_close(nonlinear.rest(nonlinear.layer_one(x)), model(x))
    assert {id(p) for p in nonlinear.layer_one_params} == {id(p) for p in
                                                 [model.init_conv.weight, *model.layer[0].block[0].batchnorm_0.parameters()]}
    with pytest.raises(ConfigError, match="width 1"):
        split_model(create("dm_wrn10_1"), nonlinear=True, example=x)


def test_bad_depth_and_width_are_one_line_errors():
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        create("dm_wrn27_10")
    with pytest.raises(ConfigError, match="width must be >= 1"):
        create("dm_wrn28_0")
