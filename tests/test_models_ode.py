"""The ODE schemes against hand-written compositions of the same blocks."""

import pytest
import torch

from robustode.errors import ConfigError
from robustode.models import count_parameters, create
from robustode.models.lm_resnet import K_MAX, lm_resnet

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one torch thread on the shared machine


def _twins(plain_name, ode_name):
    """A plain ResNet and an ODE variant carrying the same block weights, both in eval mode."""
    torch.manual_seed(0)
    plain, ode = create(plain_name).eval(), create(ode_name).eval()
    missing, unexpected = ode.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected
    return plain, ode, missing


def test_lm_resnet_with_k_zero_is_the_plain_resnet():
    plain, lm, missing = _twins("resnet20", "lm_resnet20")
    assert sorted(missing) == ["stages.0.k", "stages.1.k", "stages.2.k"]
    # k only where x[n-1] exists: stage 1 has 2 (of 3 blocks), stages 2-3 lose the downsampling step too.
    assert [stage.k.numel() for stage in lm.stages] == [2, 1, 1]
    assert all(((-0.1 <= stage.k) & (stage.k <= 0)).all() for stage in lm.stages)
    with torch.no_grad():
        for stage in lm.stages:
            stage.k.zero_()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(lm(x), plain(x))


def test_lm_stages_use_clamped_k_and_restart_history():
    torch.manual_seed(0)
    model = create("lm_resnet20").eval()
    with torch.no_grad():
        for stage in model.stages:
            stage.k.fill_(5.0)  # the forward must use K_MAX
    x, k = torch.randn(2, 16, 8, 8), K_MAX
    b = model.stages[0].blocks  # three shape-keeping blocks
    x1 = x + b[0].residual(x)  # first step: x[-1] := x[0]
    x2 = (1 - k) * x1 + k * x + b[1].residual(x1)
    x3 = (1 - k) * x2 + k * x1 + b[2].residual(x2)
    torch.testing.assert_close(model.stages[0](x), x3)
    b = model.stages[1].blocks  # downsampling block first: a plain step, then a fresh history
    y0 = b[0](x)
    y1 = y0 + b[1].residual(y0)
    y2 = (1 - k) * y1 + k * y0 + b[2].residual(y1)
    torch.testing.assert_close(model.stages[1](x), y2)


def test_lm_after_optimizer_step_clamps_k():
    model = create("lm_resnet20")
    with torch.no_grad():
        model.stages[0].k.copy_(torch.tensor([5.0, -7.0]))
    model.after_optimizer_step()
    assert model.stages[0].k.tolist() == pytest.approx([K_MAX, -K_MAX])


def test_stochastic_depth_probabilities_and_modes():
    torch.manual_seed(0)
    model = create("lm_resnet56_sd")
    probs = [p for stage in model.stages for p in stage.drop_probs]
    assert probs == pytest.approx([0.5 * l / 27 for l in range(1, 28)])
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))
    with pytest.raises(ConfigError, match="drop_max"):
        lm_resnet(20, drop_max=1.0)


def test_stochastic_depth_drops_or_rescales_each_block():
    torch.manual_seed(0)
    stage = create("lm_resnet20").stages[0].train()  # train-mode BN uses batch statistics: repeatable
    stage.drop_probs = (0.5, 0.5, 0.5)
    x = torch.randn(4, 16, 8, 8)
    seed = next(s for s in range(100) if len(set(_keeps(s, 3))) == 2)  # some blocks kept, some dropped
    keep = _keeps(seed, 3)
    torch.manual_seed(seed)
    out = stage(x)
    b, k = stage.blocks, stage.k
    f = [lambda z, i=i: b[i].residual(z) * 2.0 if keep[i] else 0.0 for i in range(3)]
    x1 = x + f[0](x)
    x2 = (1 - k[0]) * x1 + k[0] * x + f[1](x1)
    x3 = (1 - k[1]) * x2 + k[1] * x1 + f[2](x2)
    torch.testing.assert_close(out, x3)


def _keeps(seed, n):
    torch.manual_seed(seed)
    return tuple(torch.rand((), device="cpu").item() >= 0.5 for _ in range(n))


def test_meanfield_at_initial_tau_is_the_plain_resnet():
    plain, mf, missing = _twins("resnet20", "meanfield_resnet20")
    assert sorted(missing) == ["stages.0.tau", "stages.1.tau", "stages.2.tau"]
    assert [stage.tau.tolist() for stage in mf.stages] == [[1.0, 2.0, 3.0], [1.0, 2.0], [1.0, 2.0]]
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(mf(x), plain(x))


def test_meanfield_sorts_blocks_by_tau():
    torch.manual_seed(0)
    model = create("meanfield_resnet20").eval()
    first, second = model.stages[0], model.stages[1]
    with torch.no_grad():
        first.tau.copy_(torch.tensor([2.5, 0.5, 1.75]))
        second.tau.copy_(torch.tensor([2.0, 0.5]))
    x = torch.randn(2, 16, 8, 8)
    b = first.blocks
    y = x + 0.5 * b[1].residual(x)
    y = y + 1.25 * b[2].residual(y)
    y = y + 0.75 * b[0].residual(y)
    torch.testing.assert_close(first(x), y)
    b = second.blocks
    z = b[0](x)  # the downsampling block stays first, plain step
    z = z + 0.5 * b[2].residual(z)
    z = z + 1.5 * b[1].residual(z)
    torch.testing.assert_close(second(x), z)


def test_meanfield_tau_gets_gradients_no_decay_and_clamping():
    torch.manual_seed(0)
    model = create("meanfield_resnet20").eval()
    model(torch.rand(2, 3, 32, 32)).logsumexp(1).sum().backward()
    taus = list(model.tau_parameters())
    assert len(taus) == 3 and all(t.grad is not None and t.grad.abs().sum() > 0 for t in taus)
    assert {id(p) for p in model.no_weight_decay_parameters()} == {id(t) for t in taus}
    with torch.no_grad():
        taus[0].copy_(torch.tensor([-1.0, 2.0, 9.0]))
        taus[1].copy_(torch.tensor([3.0, -0.5]))
    model.after_optimizer_step()
    assert taus[0].tolist() == [0.0, 2.0, 3.0] and taus[1].tolist() == [2.0, 0.0]


def test_heun_and_small_step_stages():
    torch.manual_seed(0)
    heun = create("rk2_resnet20").eval().stages[1]
    x = torch.randn(2, 16, 8, 8)
    b = heun.blocks
    y = b[0](x)
    k1 = b[1].residual(y)
    k2 = b[2].residual(y + k1)
    torch.testing.assert_close(heun(x), y + 0.5 * (k1 + k2))
    small = create("stepsize_resnet20").eval().stages[1]
    b = small.blocks
    z = b[0](x)
    for block in b[1:]:
        z = z + 0.1 * block.residual(z)
    torch.testing.assert_close(small(x), z)
    assert count_parameters("rk2_resnet56") == count_parameters("resnet56")


def test_macaron_and_plain_vit_are_parameter_matched():
    for macaron, plain in [("macaron_vit", "vit"), ("macaron_vit_tiny", "vit_tiny")]:
        m, p = count_parameters(macaron), count_parameters(plain)
        assert abs(m - p) / p < 0.02, (macaron, m, p)
    assert 3_500_000 <= count_parameters("macaron_vit") <= 3_900_000
    tiny = create("macaron_vit_tiny")
    assert tiny.layer_one(torch.rand(2, 3, 32, 32)).shape == (
        2,
        64,
        32,
    )  # 64 tokens, position embedding added
    assert any(p is tiny.stem.pos for p in tiny.layer_one_parameters())
