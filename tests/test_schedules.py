"""Learning-rate schedules, their replay counting, and the training config's resolution."""

import math

import pytest
import torch

from robustode.defenses import create_defense
from robustode.defenses.base import Defense, Preset
from robustode.errors import ConfigError
from robustode.training import TrainConfig
from robustode.training.schedules import MomentumCycle, cosine, cyclic, lr_factor, make_scheduler, multistep


def lrs(resolved, batches_per_epoch: int, steps: int, base_lr: float = 0.1) -> list[float]:
    """The lr each of the first ``steps`` optimizer steps trains with."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr, momentum=0.9)
    scheduler = make_scheduler(opt, lr_factor(resolved), batches_per_epoch)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def resolved(schedule="multistep", epochs=10, replays=1, milestones=(), gamma=0.1, peak=0.5):
    toy = type("Replaying", (_Toy,), {"replays": replays})()
    return TrainConfig(schedule=schedule, epochs=epochs, milestones=tuple(milestones), gamma=gamma,
                       cyclic_peak=peak, device="cpu").resolve(toy)


def test_multistep_multiplies_by_gamma_at_each_milestone():
    assert multistep(74.999, milestones=(75, 90, 100), gamma=0.1) == 1.0
    assert multistep(75, milestones=(75, 90, 100), gamma=0.1) == 0.1
    assert multistep(90, milestones=(75, 90, 100), gamma=0.1) == 0.1 ** 2
    assert multistep(104, milestones=(75, 90, 100), gamma=0.1) == 0.1 ** 3


def test_multistep_changes_lr_at_the_first_step_of_the_milestone_epoch():
    out = lrs(resolved(epochs=4, milestones=(2, 3)), batches_per_epoch=5, steps=20)
    assert out[9] == 0.1 and out[10] == pytest.approx(0.01, rel=1e-12)
    assert out[14] == pytest.approx(0.01, rel=1e-12) and out[15] == pytest.approx(0.001, rel=1e-12)


def test_cyclic_triangle_ends_at_zero_and_peaks_where_asked():
    assert cyclic(0.0, total=15) == 0.0
    assert cyclic(7.5, total=15) == 1.0
    assert cyclic(3.75, total=15) == 0.5
    assert cyclic(15.0, total=15) == 0.0
    assert cyclic(6.0, total=15, peak=0.4) == 1.0
    assert cyclic(16.0, total=15) == 0.0


def test_cyclic_matches_torch_cycliclr_as_wong_et_al_ran_it():
    # train_fgsm.py: CyclicLR(base_lr=0, max_lr=0.2, step_size_up=step_size_down=steps / 2), per batch.
    batches, epochs, max_lr = 6, 3, 0.2
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr, momentum=0.9)
    half = epochs * batches / 2
    ref = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=max_lr, step_size_up=half,
                                            step_size_down=half, cycle_momentum=False)
    expected = []
    for _ in range(epochs * batches):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    ours = lrs(resolved("cyclic", epochs=epochs), batches, epochs * batches, base_lr=max_lr)
    assert ours == pytest.approx(expected, abs=1e-12)


def test_cosine_runs_from_one_to_zero():
    assert cosine(0.0, total=10) == 1.0
    assert cosine(5.0, total=10) == pytest.approx(0.5, abs=1e-15)
    assert cosine(10.0, total=10) == 0.0
    assert cosine(12.0, total=10) == 0.0


@pytest.mark.parametrize("schedule", ["multistep", "cyclic", "cosine"])
def test_free_counts_replays_so_its_lr_follows_nominal_epochs(schedule):
    batches, epochs, m = 4, 8, 2
    natural = lrs(resolved(schedule, epochs=epochs, milestones=(3, 6)), batches, epochs * batches)
    free = lrs(resolved(schedule, epochs=epochs, replays=m, milestones=(3, 6)), batches, epochs * batches)
    assert free == natural  # step k of either run trains at nominal epoch k / batches


def test_free_with_m_not_dividing_epochs_rounds_the_run_up_to_whole_data_epochs():
    r = resolved("cosine", epochs=5, replays=2)
    assert r.data_epochs == math.ceil(5 / 2) == 3
    assert lr_factor(r)(6.0) == 0.0 and lr_factor(r)(5.0) > 0.0


class _Toy(Defense):
    preset = Preset(lr=0.2, weight_decay=1e-4, batch_size=32, epochs=5, schedule="cyclic")
    replays = 2


def test_config_resolves_unset_fields_from_the_preset_and_keeps_overrides():
    c = TrainConfig(lr=0.05).resolve(_Toy())
    assert (c.lr, c.weight_decay, c.batch_size, c.schedule) == (0.05, 1e-4, 32, "cyclic")
    assert (c.epochs, c.replays, c.data_epochs) == (5, 2, 3)
    assert (c.device, c.precision, c.channels_last) == ("cpu", "float32", False)


@pytest.mark.parametrize("bad", [{"schedule": "linear"}, {"keep_best": True}, {"epochs": 0},
                                 {"precision": "fp16"}, {"cyclic_peak": 1.0}, {"max_seconds": 0},
                                 {"milestones": (0,)}, {"nesterov": True, "momentum": 0.0}])
def test_bad_settings_raise_config_error(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad).resolve(_Toy())


def test_unknown_override_names_the_setting():
    with pytest.raises(ConfigError, match="epocs"):
        TrainConfig().replace(epocs=3)


@pytest.mark.parametrize("schedule", ["cyclic", "cosine", "constant", "multistep"])
def test_the_preset_momentum_cycle_belongs_to_the_cyclic_schedule(schedule):
    for spec in ("fgsm-rs", "n-fgsm"):
        c = TrainConfig(schedule=schedule, device="cpu").resolve(create_defense(spec))
        assert c.cycle_momentum == (schedule == "cyclic"), spec


def test_an_explicit_momentum_cycle_with_another_schedule_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="cycle_momentum needs the cyclic schedule") as info:
        TrainConfig(schedule="cosine", cycle_momentum=True, device="cpu").resolve(create_defense("fgsm-rs"))
    assert "\n" not in str(info.value)
    assert not TrainConfig(schedule="cosine", cycle_momentum=False, device="cpu").resolve(
        create_defense("fgsm-rs")).cycle_momentum


@pytest.mark.parametrize("momentum", [0.5, 0.0])
def test_a_momentum_below_the_preset_minimum_clamps_the_cycle_to_it(momentum):
    c = TrainConfig(momentum=momentum, device="cpu").resolve(create_defense("fgsm-rs"))
    assert c.cycle_momentum and c.momentum_min == momentum
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=momentum)
    cycle = MomentumCycle(opt, lr_factor(c), 4, c.momentum, c.momentum_min)
    seen = []
    for _ in range(4 * c.epochs):
        seen.append(opt.param_groups[0]["momentum"])
        cycle.step()
    assert seen == [momentum] * len(seen)  # the run trains with the momentum asked for, throughout
    with pytest.raises(ConfigError, match="momentum_min"):  # an explicit contradiction is still refused
        TrainConfig(momentum=momentum, momentum_min=0.8, device="cpu").resolve(create_defense("fgsm-rs"))
