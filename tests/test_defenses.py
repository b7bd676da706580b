"""Every registered defense: one step is sane, a few dozen steps learn; spec parsing and presets."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import Counter, TinyNet, blobs, groups, one_thread, sgd  # noqa: F401

from robustode.defenses import YOPO, DefenseSpecError, Free, create_defense, defenses, register_defense
from robustode.defenses.base import Defense
from robustode.defenses.trades import kl_batchmean, trades_attack
from robustode.errors import ConfigError, RobustodeError, UnknownNameError


def example(name: str) -> str:
    """A concrete spec for a registered form: pgd-K -> pgd-2, yopo-M-N -> yopo-2-2."""
    return re.sub(r"\b[KMN]\b", "2", name)


def setup(spec: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = TinyNet().train()
    defense = create_defense(spec, **overrides)
    optimizers = defense.optimizers(model, groups(model), sgd())
    return model, defense, optimizers


@pytest.mark.parametrize("name", defenses.names())
def test_one_step_is_finite_and_stays_in_the_ball(name):
    model, defense, optimizers = setup(example(name))
    x, y = blobs(16)
    seen = []
    model.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    steps = Counter()
    out = defense.train_step(model, x, y, optimizers, steps)
    assert torch.isfinite(out.loss) and out.loss.dim() == 0
    assert 0 <= int(out.correct) <= out.count and out.count % len(y) == 0
    assert steps.n == defense.replays
    assert model.training and all(m.training for m in model.modules())
    assert seen, "the model never saw an input"
    for inp in seen:
        assert inp.min() >= 0 and inp.max() <= 1
        assert (inp - x).abs().max() <= defense.max_perturbation + 1e-6


@pytest.mark.parametrize("name", defenses.names())
def test_a_few_epochs_lower_the_loss(name):
    model, defense, optimizers = setup(example(name), seed=1)
    x, y = blobs(48, seed=1)
    losses = []
    for epoch in range(max(1, 8 // defense.replays)):
        for i in range(0, 48, 16):
            losses.append(float(defense.train_step(model, x[i:i + 16], y[i:i + 16], optimizers, lambda: None).loss))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_registry_holds_the_nine_forms():
    assert defenses.names() == sorted(["natural", "pgd-K", "free-M", "yopo-M-N", "fgsm-rs", "trades-K", "mart-K",
                                       "n-fgsm", "grad-align"])


@pytest.mark.parametrize("spec, field, value", [
    ("pgd-10", "steps", 10), ("free-8", "m", 8), ("yopo-3-5", "n", 5), ("yopo-3-5", "m", 3),
    ("trades-7", "steps", 7),
])
def test_specs_set_their_numbers(spec, field, value):
    defense = create_defense(spec)
    assert getattr(defense, field) == value and defense.spec == spec


@pytest.mark.parametrize("spec", ["yopo-0-3", "pgd-x", "free", "pgd-0", "trades-0", "yopo-3"])
def test_malformed_specs_list_the_valid_forms(spec):
    with pytest.raises(RobustodeError) as info:
        create_defense(spec)
    message = str(info.value)
    assert spec in message and "natural, pgd-K, free-M, yopo-M-N, fgsm-rs, trades-K" in message
    assert "\n" not in message


def test_unmatched_spec_is_both_unknown_name_and_config_error():
    with pytest.raises(DefenseSpecError) as info:
        create_defense("pgd-x")
    assert isinstance(info.value, UnknownNameError) and isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="m .*positive integer, got 0"):
        create_defense("yopo-0-3")


def test_overrides_are_checked():
    assert create_defense("pgd-3", alpha="1/255").alpha == pytest.approx(1 / 255)
    with pytest.raises(ConfigError, match="already sets steps=3"):
        create_defense("pgd-3", steps=4)
    with pytest.raises(ConfigError, match="no setting stepz.*steps"):
        create_defense("pgd-3", stepz=4)
    with pytest.raises(ConfigError, match="bn_mode"):
        create_defense("pgd-3", bn_mode="frozen")
    with pytest.raises(ConfigError, match="eps"):
        create_defense("natural", eps=2.0)


def test_user_defense_registers_and_shows_in_the_valid_forms():
    @register_defense("mine-K", pattern=r"mine-(?P<k>\d+)")
    @dataclass
    class Mine(Defense):
        """My defense."""

        k: int = 1

    try:
        assert create_defense("mine-4").k == 4
        with pytest.raises(DefenseSpecError, match="grad-align, mine-K "):
            create_defense("nope")
    finally:
        defenses.remove("mine-K")


def test_presets_and_costs():
    assert create_defense("natural").preset.milestones == (75, 90, 100)
    pgd = create_defense("pgd-10")
    assert (pgd.preset.lr, pgd.preset.weight_decay, pgd.preset.batch_size, pgd.preset.epochs) == (0.1, 2e-4, 256, 105)
    assert pgd.passes_per_batch == 11 and create_defense("pgd-10", clean_weight=1.0).passes_per_batch == 12
    assert create_defense("yopo-5-3").preset.lr == pytest.approx(0.08)
    assert create_defense("yopo-3-5").preset.lr == pytest.approx(0.4 / 3)
    assert YOPO(m=5).preset.milestones == (30, 34, 36) and YOPO(m=5).preset.weight_decay == 5e-4
    free = create_defense("free-8")
    assert (free.replays, free.passes_per_batch, Free(m=4).replays) == (8, 8, 4)
    fgsm = create_defense("fgsm-rs")
    assert (fgsm.preset.schedule, fgsm.preset.lr, fgsm.preset.epochs, fgsm.alpha) == ("cyclic", 0.2, 15, 10 / 255)
    trades = create_defense("trades-10")
    assert (trades.eps, trades.step_size, trades.beta, trades.passes_per_batch) == (0.031, 0.007, 6.0, 13)
    assert create_defense("trades-10", kl_target_forward=False).passes_per_batch == 12
    assert create_defense("trades-10", awp_gamma=0.005).passes_per_batch == 10 + 2 * 3
    assert create_defense("pgd-10", awp_gamma=0.01).passes_per_batch == 12
    assert create_defense("mart-10").passes_per_batch == 12
    assert create_defense("mart-10", awp_gamma=0.01).passes_per_batch == 14
    assert (create_defense("n-fgsm").passes_per_batch, create_defense("grad-align").passes_per_batch) == (2, 4)
    for name in defenses.names():
        defense = create_defense(example(name))
        assert defense.preset.source and defense.hyperparameters()["eps"] == defense.eps


@pytest.mark.parametrize("mode, tracked", [("eval", 1), ("train", 4), ("train-frozen", 1)])
def test_pgd_attack_runs_in_the_chosen_bn_mode(mode, tracked):
    model, defense, optimizers = setup("pgd-3", bn_mode=mode)
    bn = model.body[0]
    defense.train_step(model, *blobs(16), optimizers, lambda: None)
    assert int(bn.num_batches_tracked) == tracked  # each train-mode forward moves the BN statistics once
    assert model.training


def test_kl_batchmean_is_summed_over_classes_and_averaged_over_the_batch():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    p, q = a.softmax(1), b.softmax(1)
    assert torch.allclose(kl_batchmean(a, b), (p * (p.log() - q.log())).sum() / 5, atol=1e-6)


def test_trades_attack_ascends_the_kl_and_stays_in_the_ball():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x, _ = blobs(16)
    x_adv = trades_attack(model, x, eps=0.031, step_size=0.007, steps=5)
    assert (x_adv - x).abs().max() <= 0.031 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert kl_batchmean(model(x), model(x_adv)) > 10 * kl_batchmean(model(x), model((x + 0.001).clamp(0, 1)))


def test_trades_with_beta_zero_is_clean_cross_entropy():
    model, defense, optimizers = setup("trades-2", beta=0.0)
    x, y = blobs(16)
    expected = F.cross_entropy(model(x), y)  # train mode, same batch statistics as the step's forward
    out = defense.train_step(model, x, y, optimizers, lambda: None)
    assert torch.allclose(out.loss, expected.detach(), atol=1e-6)


@pytest.mark.parametrize("name", defenses.names())
def test_every_defense_runs_under_bf16_autocast(name):
    model, defense, optimizers = setup(example(name))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = defense.train_step(model, *blobs(16), optimizers, lambda: None)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("spec", ["pgd-2", "fgsm-rs"])
def test_training_attacks_run_in_the_loops_autocast_dtype(spec, monkeypatch):
    module = importlib.import_module(type(create_defense(spec)).__module__)
    dtypes = []
    real = module.run_pgd
    monkeypatch.setattr(module, "run_pgd", lambda *a, **kw: dtypes.append(kw["autocast_dtype"]) or real(*a, **kw))
    model, defense, optimizers = setup(spec)
    defense.train_step(model, *blobs(16), optimizers, lambda: None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        defense.train_step(model, *blobs(16), optimizers, lambda: None)
    assert dtypes == [None, torch.bfloat16]  # pgd would otherwise switch autocast off
