"""YOPO on models written the ordinary way: the split robustode finds reproduces the model, YOPO
trains it, and YOPO's step on it equals its step on the same network in the layer-one contract."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from zoo_case import images
from zoo_models import ZOO, Contract, Gated, Named, TwoStems

from robustode.data import make_synthetic
from robustode.defenses import YOPO
from robustode.errors import ConfigError
from robustode.split import split_model
from robustode.api import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def build(name: str):
    torch.manual_seed(0)
    return ZOO[name].make()


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(16, 8, seed=0)


def seeded(fn, x, seed=1, start=None):
    """fn(x) from a fixed seed and, given ``start`` (a state dict), from that model state: spectral norm
    moves its buffers on every train-mode forward."""
    if start is not None:
        fn_model, state = start
        fn_model.load_state_dict(state)
    torch.manual_seed(seed)
    return fn(x)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_the_split_found_reproduces_the_model_and_the_hand_written_split(name):
    case, model = ZOO[name], build(name)
    x = images(4)
    split = split_model(model, example=x[:2])
    assert split.description == case.found
    trained = {id(p) for p in split.layer_one_params if p.requires_grad}  # frozen parameters are constants
    assert trained == {id(p) for p in case.params(model) if p.requires_grad}
    assert split.module is not None and {id(p) for p in split.module.parameters()} <= {id(p) for p in model.parameters()}
    by_hand = Contract(model, case)
    for training in (False, True):
        model.train(training)
        start = (model, copy.deepcopy(model.state_dict()))
        direct = seeded(model, x, start=start)
        assert torch.allclose(seeded(split, x, start=start), direct, atol=1e-6)
        assert torch.allclose(seeded(by_hand, x, start=start), direct, atol=1e-6)  # the hand-written twin is the same
        one = seeded(split.layer_one, x, start=start)
        assert torch.allclose(one, seeded(lambda x: case.layer_one(model, x), x, start=start), atol=1e-6)


def two_lrs():
    """The main optimizer at lr 0.1, layer one's at 0.3: a wrong layer one changes the step."""
    lrs = iter((0.1, 0.3))
    return lambda groups: torch.optim.SGD(groups, lr=next(lrs), momentum=0.9)


def yopo_step(net, x, y) -> None:
    defense = YOPO(m=2, n=2)
    defense.closed_form = False  # one path for both nets: the closed form's own equality is test_yopo_closed_form's
    defense.prepare(net, x[:2])
    optimizers = defense.optimizers(net, [{"params": list(net.parameters())}], two_lrs())
    net.train()
    torch.manual_seed(2)  # the same eta and the same dropout draws for both networks
    defense.train_step(net, x, y, optimizers, lambda: None)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_yopo_step_on_the_found_split_equals_its_step_on_the_contract(name):
    model = build(name)
    twin = Contract(copy.deepcopy(model), ZOO[name])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = images(4, seed=3), torch.tensor([0, 3, 5, 9])
    yopo_step(model, x, y)
    yopo_step(twin, x, y)
    after, other = model.state_dict(), twin.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after)
    for key, value in after.items():
        assert torch.allclose(value.float(), other[key].float(), rtol=0, atol=1e-6), key


@pytest.mark.parametrize("name", sorted(ZOO))
def test_yopo_trains_one_epoch_and_says_which_layer_one(name, tiny):
    model = build(name)
    before = [p.detach().clone() for p in model.parameters()]
    result = fit(model, "yopo-2-1", tiny, epochs=1, batch_size=8, device="cpu", quiet=True)
    assert result.run.defense.hyperparameters["layer_one"] == ZOO[name].found
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert torch.isfinite(torch.tensor(result.history[-1]["loss"]))


def test_the_run_log_names_layer_one(tiny, tmp_path):
    fit(build("functional"), "yopo-2-1", tiny, epochs=1, batch_size=8, device="cpu", quiet=True,
        out_dir=tmp_path / "run")
    log = (tmp_path / "run" / "train.log").read_text()
    assert "with yopo-2-1: 1 data epochs on cpu (" in log and "; layer one: conv2d(weight) (+ preprocessing: sub, div)" in log


def test_two_stems_are_refused_before_training_and_other_defenses_still_train(tiny):
    model = TwoStems()
    with pytest.raises(ConfigError) as err:
        fit(model, "yopo-2-1", tiny, epochs=1, batch_size=8, device="cpu", quiet=True)
    message = str(err.value)
    assert message.startswith("TwoStems has no single layer one: its input reaches stem_a and also stem_b: define "
                              "layer_one and rest on the model") and "\n" not in message
    before = model.fc.weight.detach().clone()
    fit(model, "natural", tiny, epochs=1, batch_size=8, device="cpu", quiet=True)
    assert not torch.equal(before, model.fc.weight)


class NormalizedGated(Gated):
    """fx cannot trace it, and its input goes through arithmetic before any module."""

    def forward(self, x):
        return super().forward(2 * x - 1)


class GatedSkip(Gated):
    """fx cannot trace it, and its input is read again after conv1."""

    def forward(self, x):
        return super().forward(x) + x.mean((1, 2, 3))[:, None]


def test_the_hook_split_refuses_what_it_cannot_see_through():
    x = images(2)
    with pytest.raises(ConfigError, match=r"^fx cannot trace NormalizedGated \(.*control flow.*\) and forward hooks "
                                          r"cannot split it \(its input goes through an operation before any "
                                          r"submodule\): define layer_one and rest"):
        split_model(NormalizedGated(), example=x)
    with pytest.raises(ConfigError, match=r"^the split of GatedSkip \(layer one: conv1 \(found by forward hooks\)\) "
                                          r"fails in eval mode \(ConfigError: GatedSkip reads its input after layer "
                                          r"one \(mean\), so more than layer one's output feeds the rest\)"):
        split_model(GatedSkip(), example=x)


def test_a_traced_split_follows_the_model_to_another_dtype():
    model = build("functional").eval()
    split = split_model(model, example=images(2))
    model.double()  # buffers become new tensors; the split must read the new ones
    x = images(2).double()
    assert split(x).dtype == torch.float64 and torch.allclose(split(x), model(x), atol=1e-12)


def test_a_python_read_of_the_training_flag_switches_the_traced_rest_with_the_model():
    model = build("training_flag")
    split = split_model(model, example=images(2))
    x = images(4)
    model.train()
    in_train = seeded(split, x)
    assert torch.equal(in_train, seeded(model, x))
    model.eval()
    assert torch.equal(seeded(split, x), model(x)) and not torch.allclose(seeded(split, x), in_train)


def test_yopo_uses_the_prepared_split_through_torch_compile_s_wrapper():
    model = Named()
    defense = YOPO(m=1, n=1)
    defense.prepare(model, images(2))
    assert defense.split(torch.compile(model)) is defense.split(model)


def test_every_operation_in_front_of_layer_one_is_named():
    class ReluFirst(Named):
        def forward(self, x):
            return super().forward(F.relu(x - 0.5))

    split = split_model(ReluFirst(), example=images(2))
    assert split.description == "layer one: conv1 (+ preprocessing: sub, relu)"

