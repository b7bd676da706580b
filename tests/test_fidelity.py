"""Where robustode now follows the authors' code: each case against a small written-out reference."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import RecordingSGD, TinyNet, blobs, one_thread  # noqa: F401
from training_utils import data, tiny

from robustode.defenses import FGSMRS, create_defense
from robustode.defenses.trades import trades_attack
from robustode.api import fit


@dataclass
class WatchedFGSMRS(FGSMRS):
    """FGSM-RS that notes the lr and momentum each optimizer step trains with."""

    def __post_init__(self):
        super().__post_init__()
        self.seen = []

    def train_step(self, model, x, y, optimizers, on_step):
        group = optimizers[0].param_groups[0]
        self.seen.append((group["lr"], group["momentum"]))
        return super().train_step(model, x, y, optimizers, on_step)


def cyclic_lr_reference(steps: int, max_lr: float) -> list[tuple[float, float]]:
    """train_fgsm.py's scheduler: CyclicLR(base_lr=0, max_lr, step_size_up = step_size_down = steps / 2),
    with torch's defaults cycle_momentum=True, base_momentum=0.8, max_momentum=0.9."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=max_lr, step_size_up=steps / 2,
                                                  step_size_down=steps / 2)
    out = []
    for _ in range(steps):
        out.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        opt.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("cycle", [True, False])
def test_fgsm_rs_cycles_momentum_per_step_as_the_authors_cyclic_lr(cycle):
    defense = WatchedFGSMRS(guard=False)
    overrides = {} if cycle else {"cycle_momentum": False}
    fit(tiny(), defense, data(), epochs=3, batch_size=16, quiet=True, **overrides)  # 12 steps
    reference = cyclic_lr_reference(12, 0.2)
    assert [lr for lr, _ in defense.seen] == pytest.approx([lr for lr, _ in reference], abs=1e-12)
    momenta = [m for _, m in defense.seen]
    assert momenta == (pytest.approx([m for _, m in reference], abs=1e-12) if cycle else [0.9] * 12)
    assert min(momenta) == pytest.approx(0.8 if cycle else 0.9)


def trades_reference_step(model, x, y, x_adv, beta: float, lr: float):
    """trades.py after its attack: model.train(); three forwards in its order; one SGD step."""
    logits = model(x)
    loss_natural = F.cross_entropy(logits, y)
    loss_robust = (1.0 / len(x)) * F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1),
                                            reduction="sum")
    loss = loss_natural + beta * loss_robust
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def test_trades_runs_the_references_three_train_mode_forwards_by_default():
    torch.manual_seed(0)
    model = TinyNet().train()
    reference = copy.deepcopy(model)
    x, y = blobs(16)
    torch.manual_seed(1)
    out = create_defense("trades-2").train_step(model, x, y, [torch.optim.SGD(model.parameters(), lr=0.1)],
                                                 lambda: None)
    torch.manual_seed(1)
    reference.eval()
    x_adv = trades_attack(reference, x, eps=0.031, step_size=0.007, steps=2)
    reference.train()
    loss = trades_reference_step(reference, x, y, x_adv, beta=6.0, lr=0.1)
    assert torch.allclose(out.loss, loss, atol=1e-6)
    bn, ref = model.body[0], reference.body[0]
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    assert torch.allclose(bn.running_mean, ref.running_mean) and torch.allclose(bn.running_var, ref.running_var)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_trades_without_the_kl_target_forward_has_the_same_gradients_and_one_bn_update_less():
    x, y = blobs(16)
    grads, tracked = {}, {}
    for again in (True, False):
        torch.manual_seed(0)
        model = TinyNet().train()
        opt = RecordingSGD(model.parameters(), lr=0.0)
        torch.manual_seed(1)
        create_defense("trades-2", kl_target_forward=again).train_step(model, x, y, [opt], lambda: None)
        grads[again] = [opt.seen[0][p] for p in model.parameters()]
        tracked[again] = int(model.body[0].num_batches_tracked)
    assert (tracked[True], tracked[False]) == (3, 2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[True], grads[False]))


def test_yopo_stats_forward_gives_bn_the_authors_m_plus_one_updates_and_leaves_the_step_unchanged():
    x, y = blobs(16)
    weights, tracked = {}, {}
    for extra in (False, True):
        torch.manual_seed(0)
        model = TinyNet().train()
        defense = create_defense("yopo-3-2", stats_forward=extra)
        optimizers = defense.optimizers(model, [{"params": list(model.parameters()), "weight_decay": 0.0}],
                                        lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9))
        torch.manual_seed(1)
        defense.train_step(model, x, y, optimizers, lambda: None)
        weights[extra] = [p.detach().clone() for p in model.parameters()]
        tracked[extra] = int(model.body[0].num_batches_tracked)
    assert (tracked[False], tracked[True]) == (3, 4)  # m = 3 passes, plus the authors' logging forward
    assert all(torch.equal(a, b) for a, b in zip(weights[False], weights[True]))
