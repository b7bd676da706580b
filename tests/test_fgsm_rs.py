"""FGSM-RS: the catastrophic-overfitting guard fires on a constructed collapse and restores the weights."""

from __future__ import annotations

import copy
import logging

import torch
from defense_fixtures import Counter, one_thread  # noqa: F401
from torch import nn

from robustode.defenses import FGSMRS, create_defense


class Brightness(nn.Module):
    """Classifies by mean brightness with a wide margin: robust at eps 8/255 until its weight is flipped."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[-20.0], [20.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x.mean(dim=(1, 2, 3)).unsqueeze(1) - 0.5)


def bright_batch(n=16):
    y = torch.arange(n) % 2
    x = (0.2 + 0.6 * y.float()).view(-1, 1, 1, 1) + 0.02 * torch.randn(n, 3, 4, 4)
    return x.clamp(0, 1), y


def trained(defense):
    torch.manual_seed(0)
    model = Brightness().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = bright_batch()
    defense.train_step(model, x, y, [opt], Counter())
    return model, opt, x, y


def test_guard_fires_on_a_collapse_and_restores_weights_and_optimizer(caplog):
    defense = create_defense("fgsm-rs")
    model, opt, _, _ = trained(defense)
    assert defense.end_epoch(model, [opt], epoch=1) is None and defense.guard_accuracy(model) == 1.0
    good_model, good_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())

    with torch.no_grad():
        model.fc.weight.neg_()  # the collapse: every guard example is now misclassified
    defense.train_step(model, *bright_batch(), [opt], Counter())  # moves the momentum buffers too
    with caplog.at_level(logging.WARNING, logger="robustode"):
        stop = defense.end_epoch(model, [opt], epoch=2)

    assert stop.restored_weights
    assert stop.reason == ("catastrophic overfitting at epoch 2: PGD-5 accuracy on the guard batch fell from "
                           "100.0% to 0.0%; restored epoch 1 weights")
    assert stop.reason in caplog.text
    for key, value in good_model.items():
        assert torch.equal(model.state_dict()[key], value)
    restored = opt.state_dict()["state"]
    for index, state in good_opt["state"].items():
        assert torch.equal(restored[index]["momentum_buffer"], state["momentum_buffer"])


def test_guard_is_quiet_while_robust_accuracy_holds():
    defense = FGSMRS()
    model, opt, _, _ = trained(defense)
    assert defense.end_epoch(model, [opt], epoch=1) is None
    assert defense.end_epoch(model, [opt], epoch=2) is None
    assert defense.state_dict()["previous"]["epoch"] == 2


def test_guard_keeps_its_own_copy_of_the_first_batch():
    defense = FGSMRS()
    model, opt, x, y = trained(defense)
    kept_x, kept_y = defense.state_dict()["guard_batch"]
    assert torch.equal(kept_x, x) and torch.equal(kept_y, y)
    x.add_(1.0)
    defense.train_step(model, *bright_batch(), [opt], Counter())
    assert not torch.equal(defense.state_dict()["guard_batch"][0], x)
    assert torch.equal(defense.state_dict()["guard_batch"][0], kept_x)


def test_guard_off_keeps_nothing_and_never_stops():
    defense = FGSMRS(guard=False)
    model, opt, _, _ = trained(defense)
    with torch.no_grad():
        model.fc.weight.neg_()
    assert defense.end_epoch(model, [opt], epoch=1) is None and defense.state_dict()["guard_batch"] is None
