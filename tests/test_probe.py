"""The ODE probe: its sweeps contain the model's own setting and reproduce its evaluation there; bad settings."""

from __future__ import annotations

import pytest
import torch

from robustode import probing as probe_module
from robustode.attacks import build
from robustode.data import make_synthetic
from robustode.errors import ConfigError
from robustode.evaluation import evaluate
from robustode.lipschitz import MAX_ITERATIONS
from robustode.models import create
from robustode.probing import default_settings, probe, probe_table
from robustode.threat import ThreatModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_step_size_sweep_of_a_small_step_resnet_contains_its_h_and_reproduces_its_evaluation():
    torch.manual_seed(0)
    model = create("stepsize_resnet20").eval()
    data = make_synthetic(8, 16, seed=0)
    assert default_settings(model) == [{}, {"h": 0.025}, {"h": 0.05}, {"h": 0.2}, {"h": 0.4},  # {}: its own h
                                       {"scheme": "heun"}]
    result = probe(model, data, n=16, batch_size=16, settings=[{"h": 0.05}], lipschitz=False)
    own = [row for row in result.rows if row.own]
    assert len(own) == 1 and own[0].setting == "h=0.1"
    assert [row.setting for row in result.rows] == ["h=0.1", "h=0.05"] and result.rows[1].h == 0.05
    direct = evaluate(model, data, [build("pgd-20", eps=result.eps)], ThreatModel(), n=16, batch_size=16,
                      quiet=True, masking_checks=False, escalate=False)
    assert own[0].clean == direct.clean_acc and own[0].pgd20 == direct.robust["pgd-20"]
    assert all(stage.h == 0.1 for stage in model.stages)  # restored after the sweep
    assert "h=0.1 (own)" in probe_table(result)


def test_an_ode_models_sweep_counts_each_settings_evaluations(monkeypatch):
    monkeypatch.setattr(probe_module, "LIPSCHITZ_POINTS", 4)
    torch.manual_seed(0)
    model = create("ode_net4_1(step_size=0.25)").eval()
    result = probe(model, make_synthetic(8, 8, seed=0), n=8, batch_size=8, settings=[
        {"method": "euler", "step_size": 0.5}], lipschitz=True)
    assert [row.evals_per_forward for row in result.rows] == [16, 2]  # rk4 4 steps; euler 2 steps
    assert [row.t for row in result.lipschitz] == [0.0, 0.25, 0.5, 0.75]
    assert all(0 < row.mean <= row.max and row.iterations <= MAX_ITERATIONS and row.converged
               for row in result.lipschitz)


def test_the_rk2_resnet_read_as_euler_steps_is_the_plain_resnet_with_its_weights():
    torch.manual_seed(0)
    rk2, plain = create("rk2_resnet20").eval(), create("resnet20").eval()
    plain.load_state_dict(rk2.state_dict())
    x = torch.rand(4, 3, 32, 32)
    assert default_settings(rk2) == [{}, {"scheme": "euler"}]
    with probe_module.applied(rk2, {"scheme": "euler"}):
        assert torch.allclose(rk2(x), plain(x), atol=1e-5)
    assert not torch.allclose(rk2(x), plain(x), atol=1e-3)  # back to Heun steps
    result = probe(rk2, make_synthetic(8, 8, seed=0), n=8, batch_size=8, lipschitz=False)
    assert [row.setting for row in result.rows] == ["scheme=heun", "scheme=euler"]


def test_the_small_step_resnets_heun_scheme_is_second_order_on_a_linear_field(monkeypatch):
    stage = create("stepsize_resnet20").eval().stages[0]  # stage 1: 3 blocks, none downsampling
    c, h, x = -2.0, stage.h, torch.rand(2, 16, 32, 32)
    for block in stage.blocks:  # f(x) = c x: Euler multiplies by 1 + hc per block, Heun by 1 + hc + (hc)^2 / 2
        monkeypatch.setattr(block, "residual", lambda u: c * u)
    with probe_module.applied(stage, {"scheme": "heun"}):
        assert torch.allclose(stage(x), x * (1 + h * c + (h * c) ** 2 / 2) ** 3, rtol=1e-6)
    assert stage.scheme == "euler" and torch.allclose(stage(x), x * (1 + h * c) ** 3, rtol=1e-6)


def test_the_lm_resnet_as_forward_euler_is_its_blocks_with_k_zero():
    torch.manual_seed(0)
    model = create("lm_resnet20").eval()
    zeroed = create("lm_resnet20").eval()
    zeroed.load_state_dict(model.state_dict())
    with torch.no_grad():
        for stage in zeroed.stages:
            stage.k.zero_()
    x = torch.rand(4, 3, 32, 32)
    assert default_settings(model) == [{}, {"scheme": "euler"}]
    with probe_module.applied(model, {"scheme": "euler"}):
        assert torch.equal(model(x), zeroed(x))
    assert all(stage.scheme == "learned k" for stage in model.stages)
    assert not torch.allclose(model(x), zeroed(x), atol=1e-4)  # the learned k is back


@pytest.mark.parametrize("name,setting,message", [
    ("resnet20", {"h": 0.1}, "does not fit PreActResNet"), ("stepsize_resnet20", {"h": 0}, "h must be > 0"),
    ("ode_net4_1", {"method": "rk45"}, "method must be one of"), ("ode_net4_1", {"rtol": 0}, "rtol must be > 0"),
    ("ode_net4_1", {"h": 0.1}, "no setting h"), ("lm_resnet20", {"scheme": "rk2"}, "does not fit"),
    ("rk2_resnet20", {"scheme": "rk4"}, "takes scheme=heun|euler"), ("resnet20", {"scheme": "euler"}, "no test-time"),
])
def test_a_probe_setting_the_model_does_not_have_is_one_line_before_any_work(name, setting, message):
    with pytest.raises(ConfigError, match=message) as err:
        probe(create(name), None, settings=[setting])
    assert "\n" not in str(err.value)
