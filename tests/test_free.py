"""Free-m: the persistent perturbation, m replays per batch, natural training's cost per nominal epoch."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from defense_fixtures import Counter, TinyNet, blobs, groups, one_thread, sgd  # noqa: F401

from robustode.defenses import Free, Natural, create_defense
from robustode.defenses.common import clip_delta

EPS = 8 / 255


def setup(m=2, seed=0):
    torch.manual_seed(seed)
    model = TinyNet().train()
    defense = create_defense(f"free-{m}")
    return model, defense, defense.optimizers(model, groups(model), sgd())


def test_first_replay_steps_delta_by_eps_times_the_sign_of_its_gradient():
    model, defense, optimizers = setup(m=1)
    x, y = blobs(8)
    before = copy.deepcopy(model)  # same weights and BN state: the replay's forward is the same function
    delta = torch.zeros_like(x, requires_grad=True)
    (grad,) = torch.autograd.grad(F.cross_entropy(before((x + delta).clamp(0, 1)), y), delta)
    defense.train_step(model, x, y, optimizers, lambda: None)
    assert torch.equal(defense.state_dict()["delta"], (EPS * grad.sign()).clamp(-EPS, EPS))


def test_clip_to_image_also_clips_the_carried_delta_to_the_images_box():
    # The authors clip the carried delta to the eps box only (and clamp the model input);
    # clip_to_image=True is locuslab's train_free.py, which also keeps x + delta in [0, 1].
    x = torch.full((4, 3, 8, 8), 0.999)
    x[:, 0] = 0.001
    y = torch.arange(4) % 3
    carried = {}
    for clip in (False, True):
        torch.manual_seed(0)
        model = TinyNet().train()
        defense = create_defense("free-1", clip_to_image=clip)
        defense.train_step(model, x, y, defense.optimizers(model, groups(model), sgd()), lambda: None)
        carried[clip] = defense.state_dict()["delta"]
    assert torch.equal(carried[True], clip_delta(carried[False], x, EPS))
    assert ((x + carried[False]) > 1).any() and ((x + carried[False]) < 0).any()
    assert ((x + carried[True]) <= 1).all() and ((x + carried[True]) >= 0).all()


def test_perturbation_persists_across_batches_and_m_replays_step_m_times():
    model, defense, optimizers = setup(m=3)
    (x1, y1), (x2, y2) = blobs(8, seed=1), blobs(8, seed=2)
    steps = Counter()
    defense.train_step(model, x1, y1, optimizers, steps)
    carried = defense.state_dict()["delta"].clone()
    assert steps.n == 3 and carried.abs().max() > 0 and carried.abs().max() <= EPS + 1e-6
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    defense.train_step(model, x2, y2, optimizers, steps)
    assert steps.n == 6 and len(seen) == 3
    assert torch.equal(seen[0], (x2 + carried).clamp(0, 1))  # batch 2 starts from batch 1's perturbation
    assert not torch.equal(seen[1], seen[0])  # and moves it between replays


def test_a_smaller_last_batch_uses_the_first_rows_of_the_buffer():
    model, defense, optimizers = setup(m=2)
    x, y = blobs(10)
    defense.train_step(model, x, y, optimizers, lambda: None)
    before = defense.state_dict()["delta"].clone()
    defense.train_step(model, x[:6], y[:6], optimizers, lambda: None)
    after = defense.state_dict()["delta"]
    assert after.shape == before.shape
    assert torch.equal(after[6:], before[6:]) and not torch.equal(after[:6], before[:6])


def test_state_dict_round_trip_keeps_the_buffer():
    model, defense, optimizers = setup(m=2)
    defense.train_step(model, *blobs(8), optimizers, lambda: None)
    fresh = Free(m=2)
    fresh.load_state_dict(copy.deepcopy(defense.state_dict()))
    assert torch.equal(fresh.state_dict()["delta"], defense.state_dict()["delta"])


def count_passes(defense, nominal_epochs: int, batches: int) -> tuple[int, int, int]:
    """Run the loop's arithmetic (data epochs = nominal / replays); count forwards, backwards, optimizer steps."""
    torch.manual_seed(0)
    model = TinyNet().train()
    optimizers = defense.optimizers(model, groups(model), sgd())
    forwards, backwards, steps = Counter(), Counter(), Counter()
    model.register_forward_hook(forwards)
    model.body[4].register_full_backward_hook(backwards)
    x, y = blobs(8 * batches)
    for _ in range(nominal_epochs // defense.replays):
        for i in range(batches):
            defense.train_step(model, x[8 * i:8 * i + 8], y[8 * i:8 * i + 8], optimizers, steps)
    return forwards.n, backwards.n, steps.n


def test_free_costs_what_natural_training_costs_per_nominal_epoch():
    natural = count_passes(Natural(), nominal_epochs=4, batches=3)
    assert natural == (12, 12, 12)
    assert count_passes(Free(m=4), nominal_epochs=4, batches=3) == natural
    assert count_passes(Free(m=2), nominal_epochs=4, batches=3) == natural
