"""The modifiers every defense takes: weight averaging, label smoothing and AWP, against hand computations."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import TinyNet, blobs, groups, one_thread  # noqa: F401
from torch import nn
from training_utils import Plain, Tiny, data, same_weights, tiny

import robustode.evaluation
import robustode.training.trainer
from robustode.defenses import create_defense
from robustode.defenses.awp import WeightPerturbation, ascent_gradients, descend, perturbed_parameters
from robustode.errors import ConfigError
from robustode.api import fit
from robustode.training import load_checkpoint
from robustode.training.averaging import WeightAverage


def decays(decay: float, k: int) -> list[float]:
    """The rate of each of the first k updates: DeepMind's warm-up min(decay, (1 + t) / (10 + t))."""
    return [min(decay, (1 + t) / (10 + t)) for t in range(k)]


def closed_form(values: list[torch.Tensor], decay: float) -> torch.Tensor:
    """The average after len(values) - 1 updates, from values[0] (the start) and the live values after each."""
    d = decays(decay, len(values) - 1)
    total = values[0] * math.prod(d)
    for j in range(1, len(values)):
        total = total + values[j] * (1 - d[j - 1]) * math.prod(d[j:])
    return total


def test_the_average_after_k_updates_equals_the_closed_form_for_weights_and_bn_statistics():
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = WeightAverage(live, decay=0.8)
    weights, means, tracked = [live[0].weight.detach().clone()], [live[1].running_mean.clone()], None
    for _ in range(12):
        with torch.no_grad():
            live[0].weight.add_(torch.randn_like(live[0].weight))
        live(torch.randn(4, 3))  # a train-mode forward moves the running statistics
        average.update()
        weights.append(live[0].weight.detach().clone())
        means.append(live[1].running_mean.clone())
        tracked = live[1].num_batches_tracked.clone()
    assert torch.allclose(average.model[0].weight, closed_form(weights, 0.8), atol=1e-6)
    assert torch.allclose(average.model[1].running_mean, closed_form(means, 0.8), atol=1e-6)
    assert torch.equal(average.model[1].num_batches_tracked, tracked)  # integer buffers are copied
    assert average.updates == 12 and decays(0.8, 12)[:3] == [0.1, 2 / 11, 3 / 12]


class Watched(Tiny):
    """Tiny keeping a copy of its conv weight after every optimizer step (the loop's model hook)."""

    def __init__(self):
        super().__init__()
        self.seen = [self.stem[1].weight.detach().clone()]

    def after_optimizer_step(self):
        self.seen.append(self.stem[1].weight.detach().clone())


def test_the_loop_updates_the_average_after_every_step_and_returns_saves_and_evaluates_it(tmp_path, monkeypatch):
    evaluated = []
    original = robustode.training.trainer.evaluate_sharded
    monkeypatch.setattr(robustode.training.trainer, "evaluate_sharded",
                        lambda model, *a, **k: evaluated.append(model) or original(model, *a, **k))
    torch.manual_seed(0)
    live = Watched()
    result = fit(live, "natural(ema_decay=0.9)", data(), epochs=2, batch_size=16, lr=0.05, eval_every=1,
                 eval_n=8, out_dir=tmp_path, quiet=True)
    assert len(live.seen) == 1 + 8  # 2 epochs of 4 minibatches
    assert result.model is not live and evaluated and all(m is result.model for m in evaluated)
    assert torch.allclose(result.model.stem[1].weight, closed_form(live.seen, 0.9), atol=1e-6)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in state["model"].items())
    assert all(torch.equal(v, live.state_dict()[k]) for k, v in state["ema"]["live"].items())
    assert state["ema"]["updates"] == 8 and result.run.defense.hyperparameters["ema_decay"] == 0.9


def test_a_stop_that_restores_earlier_weights_rewinds_the_average_to_their_epoch():
    one = fit(tiny(), Plain(ema_decay=0.5), data(), epochs=1, quiet=True)
    stopped = fit(tiny(), Plain(ema_decay=0.5, stop_at_epoch=2, restores=True), data(), epochs=3, quiet=True)
    assert stopped.stop.kind == "guard" and stopped.stop.restored_weights
    assert same_weights(stopped.model, one.model)


def test_a_stop_that_keeps_the_weights_keeps_their_average():
    one = fit(tiny(), Plain(ema_decay=0.5), data(), epochs=1, quiet=True)
    two = fit(tiny(), Plain(ema_decay=0.5), data(), epochs=2, quiet=True)  # constant lr: epochs 1-2 as below
    stopped = fit(tiny(), Plain(ema_decay=0.5, stop_at_epoch=2), data(), epochs=3, quiet=True)
    assert stopped.stop.kind == "guard" and not stopped.stop.restored_weights
    assert same_weights(stopped.model, two.model) and not same_weights(stopped.model, one.model)


@dataclass
class Odd(Plain):
    """Plain whose end_epoch returns something that is neither a reason nor an EpochStop."""

    def end_epoch(self, model, optimizers, epoch):
        return 1


def test_an_end_epoch_that_returns_neither_a_reason_nor_an_epoch_stop_fails_in_one_line():
    with pytest.raises(ConfigError, match="end_epoch must return None, a reason string or an EpochStop") as info:
        fit(tiny(), Odd(), data(), epochs=1, quiet=True)
    assert "\n" not in str(info.value)


def test_label_smoothing_changes_the_training_loss_but_not_the_attack():
    x, y = blobs(16)
    inputs, losses = {}, {}
    for smoothing in (0.0, 0.3):
        torch.manual_seed(0)
        model = TinyNet().train()
        seen = inputs[smoothing] = []
        model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        defense = create_defense("pgd-2", label_smoothing=smoothing)
        reference = copy.deepcopy(model)
        out = defense.train_step(model, x, y, [torch.optim.SGD(model.parameters(), lr=0.0)], lambda: None)
        logits = reference(seen[-1])  # same weights and batch: the training forward's logits
        nll = -logits.log_softmax(1).gather(1, y[:, None]).squeeze(1)
        uniform = -logits.log_softmax(1).mean(1)
        losses[smoothing] = (out.loss, ((1 - smoothing) * nll + smoothing * uniform).mean())
    assert all(torch.equal(a, b) for a, b in zip(inputs[0.0], inputs[0.3]))  # same attack, same x_adv
    for loss, by_hand in losses.values():
        assert torch.allclose(loss, by_hand, atol=1e-6)
    assert not torch.allclose(losses[0.0][0], losses[0.3][0])


@pytest.mark.parametrize("spec", ["free-2", "yopo-2-1"])
def test_label_smoothing_also_moves_the_perturbation_of_free_and_yopo(spec):
    # Their perturbation's gradient comes from the training loss's own backward, so it is the smoothed one's.
    x, y = blobs(16)
    seen = {}
    for smoothing in (0.0, 0.3):
        torch.manual_seed(0)
        model = TinyNet().train()
        inputs = seen[smoothing] = []
        model.stem.register_forward_pre_hook(lambda module, args: inputs.append(args[0].detach().clone()))
        defense = create_defense(spec, label_smoothing=smoothing)
        defense.train_step(model, x, y, [torch.optim.SGD(model.parameters(), lr=0.0)], lambda: None)
    plain, smoothed = ([u for u in seen[s] if u.shape == x.shape] for s in (0.0, 0.3))  # not YOPO's probes
    assert len(plain) == len(smoothed) >= 2
    assert torch.equal(plain[0], smoothed[0])  # the first pass starts from the same perturbation
    assert not torch.equal(plain[1], smoothed[1])  # the second from one the smoothed loss moved


def objective_of(model, x, y):
    return lambda: (F.cross_entropy(model(x), y), None)


def test_awp_moves_conv_and_linear_weights_by_gamma_times_their_norm_along_the_gradient():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(16)
    names = [n for n, p in model.named_parameters() if any(p is q for q in perturbed_parameters(model))]
    assert names == ["stem.1.weight", "body.4.weight"]  # not biases, not batch norm's affine parameters
    bn = model.body[0]
    stats = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    params = perturbed_parameters(model)
    before = [p.detach().clone() for p in params]
    reference = copy.deepcopy(model)
    grads = torch.autograd.grad(F.cross_entropy(reference(x), y), [reference.get_parameter(n) for n in names])
    perturbation = WeightPerturbation(params, ascent_gradients(model, params, objective_of(model, x, y)), 0.05)
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.num_batches_tracked, stats[1])
    assert all(p.grad is None for p in model.parameters())
    for p, w, g in zip(params, before, grads):
        v = (p - w).detach()
        assert torch.allclose(v.norm() / w.norm(), torch.tensor(0.05), rtol=1e-4)
        assert F.cosine_similarity(v.flatten(), g.flatten(), dim=0) > 1 - 1e-5
    perturbation.restore()
    assert all(torch.equal(p, w) for p, w in zip(params, before))  # exactly, not up to rounding


def test_an_awp_step_is_the_step_at_the_perturbed_weights_with_the_perturbation_removed():
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(16)
    lr, gamma = 0.1, 0.02
    # By hand: v from the gradient at w, a copy at w + v, one SGD step there, then minus v.
    at_w = copy.deepcopy(model)
    names = ["stem.1.weight", "body.4.weight"]
    grads = torch.autograd.grad(F.cross_entropy(at_w(x), y), [at_w.get_parameter(n) for n in names])
    shifted = copy.deepcopy(model)
    v = {n: gamma * model.get_parameter(n).norm() * g / g.norm() for n, g in zip(names, grads)}
    with torch.no_grad():
        for n in names:
            shifted.get_parameter(n).add_(v[n])
    loss = F.cross_entropy(shifted(x), y)
    names_all = [n for n, _ in shifted.named_parameters()]
    step = dict(zip(names_all, torch.autograd.grad(loss, list(shifted.parameters()))))
    expected = {n: p.detach() - lr * step[n] - v.get(n, 0) for n, p in shifted.named_parameters()}

    seen_at_step = []
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    descend(model, objective_of(model, x, y), [opt], lambda: seen_at_step.append(model.stem[1].weight.clone()),
            gamma)
    for n, p in model.named_parameters():
        assert torch.allclose(p, expected[n], atol=1e-6), n
    assert torch.equal(seen_at_step[0], model.stem[1].weight)  # on_step already sees the restored weights
    bn, ref = model.body[0], shifted.body[0]
    assert torch.allclose(bn.running_mean, ref.running_mean) and int(bn.num_batches_tracked) == 1


def awp_loss(gamma: float, precision: torch.dtype | None) -> float:
    """The training loss descend() returns on TinyNet, optionally inside a CPU autocast region."""
    torch.manual_seed(0)
    model = TinyNet().train()
    x, y = blobs(16)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with torch.autocast("cpu", dtype=precision or torch.bfloat16, enabled=precision is not None):
        loss, _ = descend(model, objective_of(model, x, y), [opt], lambda: None, gamma)
    return loss.item()


def test_awp_changes_the_loss_under_bf16_autocast_as_in_float32():
    # Autocast caches a bf16 copy of each weight per region: perturbing in place must not leave it stale.
    plain, perturbed = awp_loss(0.0, None), awp_loss(0.2, None)
    assert abs(perturbed - plain) > 0.05  # in float32 the loss at w + v is another loss
    plain_bf16, perturbed_bf16 = awp_loss(0.0, torch.bfloat16), awp_loss(0.2, torch.bfloat16)
    assert perturbed_bf16 == pytest.approx(perturbed, rel=2e-2) and plain_bf16 == pytest.approx(plain, rel=2e-2)
    assert abs(perturbed_bf16 - plain_bf16) > 0.05


@pytest.mark.parametrize("spec", ["natural", "free-2", "yopo-2-1", "fgsm-rs", "n-fgsm", "grad-align"])
def test_awp_is_refused_where_the_paper_does_not_define_it(spec):
    with pytest.raises(ConfigError, match="does not take AWP") as info:
        create_defense(spec, awp_gamma=0.01)
    assert "\n" not in str(info.value)


def test_awp_waits_for_its_warmup_epochs_and_the_modifiers_check_their_ranges():
    defense = create_defense("trades-2", awp_gamma=0.005, awp_warmup=2)
    assert defense.awp_now() == 0.0
    defense.begin_epoch(3)  # two data epochs done
    assert defense.awp_now() == 0.005
    for bad in ({"ema_decay": 1.0}, {"label_smoothing": -0.1}, {"awp_gamma": -1}, {"awp_warmup": 1.5}):
        with pytest.raises(ConfigError):
            create_defense("pgd-2", **bad)
    with pytest.raises(ConfigError, match="ema_decay"):
        fit(tiny(), Plain(ema_decay=2.0), data(), quiet=True)  # a subclass not calling super().__post_init__


def test_modifiers_are_hyperparameters_of_the_record_after_the_defense_own_fields():
    defense = create_defense("pgd-3(ema_decay=0.999, label_smoothing=0.1)")
    keys = list(defense.hyperparameters())
    assert keys[-5:] == ["label_smoothing", "awp_gamma", "awp_warmup", "ema_decay", "aux_weight"] and keys[0] == "eps"
    assert defense.hyperparameters()["ema_decay"] == 0.999 and defense.spec.startswith("pgd-3(ema_decay=0.999")
