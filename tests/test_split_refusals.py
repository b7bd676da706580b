"""What the layer-one split refuses, and why, in one line: a layer one the contract names wrongly, a
rest that reads the preprocessing or (behind control flow) the input, a forward that differs from
its layer_one and rest submodules, a backward the traced split would miss; and what it accepts: the
input's sizes read after layer one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zoo_case import images
from zoo_models import Gated, Named, Submodules

from robustode.errors import ConfigError
from robustode.split import split_model

pytestmark = pytest.mark.usefixtures("one_thread")


class StemInRest(nn.Module):
    """The layer-one contract with layer one in ``first``; its ``stem`` is a layer of the rest."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 4, 3, padding=1)
        self.stem = nn.Linear(4, 10)

    def layer_one(self, x):
        return self.first(x)

    def rest(self, z):
        return self.stem(F.adaptive_avg_pool2d(F.relu(z), 1).flatten(1))

    def layer_one_parameters(self):
        return self.first.parameters()

    def forward(self, x):
        return self.rest(self.layer_one(x))


def test_the_contract_says_which_module_is_layer_one_and_no_attribute_name_is_guessed():
    undeclared = split_model(StemInRest(), example=images(2))
    assert undeclared.module is None and undeclared.description == "layer one: the model's layer_one()"

    class Declared(StemInRest):
        def layer_one_module(self):
            return self.first

    model = Declared()
    declared = split_model(model, example=images(2))
    assert declared.module is model.first and declared.description == "layer one: first (the model's layer_one())"

    class Wrong(StemInRest):
        def layer_one_module(self):
            return "first"

    with pytest.raises(ConfigError, match=r"^Wrong.layer_one_module\(\) returned str: it must return the nn.Module"):
        split_model(Wrong(), example=images(2))


class ReadsSizes(Named):
    """Reads the input's sizes and dtype after conv1, as torchvision's ViT reads h and w."""

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.interpolate(h, size=(x.shape[2] // 4, x.size(3) // 4)).to(x.dtype)
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv2(h)), 1).flatten(1))


def test_the_rest_reads_the_input_s_sizes_as_constants_that_layer_one_holds():
    model = ReadsSizes().eval()
    split = split_model(model, example=images(2))
    assert split.description == "layer one: conv1"
    x = images(5, seed=4)  # another batch size: it comes from layer one's output
    assert torch.allclose(split(x), model(x), atol=1e-6)
    with pytest.raises(ConfigError, match=r"^ReadsSizes was split for torch.float32 inputs of shape \(N, 3, 32, 32\) "
                                          r"\(its rest reads them as constants\), got torch.float32 \(2, 3, 16, 16\)"):
        split.layer_one(torch.rand(2, 3, 16, 16))


def test_a_size_read_of_the_preprocessing_after_layer_one_is_refused_by_name():
    class ReadsPreprocessed(Named):
        def forward(self, x):
            h = x * 2 - 1
            return super().forward(h) * h.shape[2]

    with pytest.raises(ConfigError, match=r"^ReadsPreprocessed reads the shape of sub \(in front of layer one\) after "
                                          r"layer one, where only layer one's output is: read it from the input"):
        split_model(ReadsPreprocessed(), example=images(2))


def test_layer_one_and_rest_submodules_with_another_forward_are_told_what_the_forward_must_be():
    class Doubled(Submodules):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ConfigError) as err:
        split_model(Doubled(), example=images(2))
    message = str(err.value)
    assert message.startswith("the split of Doubled (layer one: layer_one (the model's submodule)) does not "
                              "reproduce Doubled's forward in eval mode (max |difference| ")
    assert message.endswith("): its forward must equal rest(layer_one(x)), since its layer_one and rest submodules "
                            "are taken for its split (rename them to have layer one found by tracing)")


class Bright(Gated):
    """fx cannot trace it, and it branches on its input's values after conv1."""

    def forward(self, x):
        out = super().forward(x)
        return 2 * out if x.mean() > 0.6 else out


class Flat(nn.Module):
    """No submodules: every layer is a function of the model's own parameters, behind control flow."""

    def __init__(self):
        super().__init__()
        self.w, self.v = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.2), nn.Parameter(torch.randn(10, 8) * 0.2)

    def forward(self, x):
        h = F.conv2d(x, self.w, padding=1)
        return (F.relu(h) if h.mean() > 0 else h).mean((2, 3)) @ self.v.t()


def test_the_hook_split_refuses_a_read_of_the_input_it_cannot_see_and_never_takes_the_whole_model():
    with pytest.raises(ConfigError, match=r"^the split of Bright \(layer one: conv1 \(found by forward hooks\)\) fails "
                                          r"in eval mode \(ConfigError: Bright reads its input after layer one \(mean\)"):
        split_model(Bright(), example=images(2))
    with pytest.raises(ConfigError, match=r"^fx cannot trace Flat \(.*\) and forward hooks cannot split it \(its input "
                                          r"goes through an operation before any submodule\)"):
        split_model(Flat(), example=images(2))


class Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, h):
        return F.relu(self.conv2(F.relu(h)))


class WithBody(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.body, self.fc = nn.Conv2d(3, 8, 3, padding=1), Body(), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.body(self.conv1(x)), 1).flatten(1))


def test_a_backward_hook_that_the_traced_split_would_drop_is_refused_by_the_gradient_check():
    model = WithBody()
    split_model(model, example=images(2))  # without the hook the split holds
    model.body.register_full_backward_hook(lambda module, grad_in, grad_out: tuple(0.5 * g for g in grad_in))
    with pytest.raises(ConfigError, match=r"^the split of WithBody \(layer one: conv1\) does not reproduce WithBody's "
                                          r"gradients in train mode \(the input's gradient: max \|difference\| "):
        split_model(model, example=images(2))
