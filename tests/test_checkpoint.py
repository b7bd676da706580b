"""Checkpoints: atomic writes, clear errors for bad files, and bit-exact resume."""

import pytest
import torch
from defense_fixtures import one_thread  # noqa: F401 (autouse: one CPU thread)
from training_utils import Interrupting, Plain, Tiny, data, same_weights, tiny

from robustode.defenses import create_defense
from robustode.errors import CheckpointError, ConfigError
from robustode.models import registry as model_registry
from robustode.api import fit
from robustode.training import load_checkpoint, load_model_from_checkpoint, save_checkpoint


def defense(spec):
    return Plain() if spec == "plain" else create_defense(spec)


@pytest.mark.parametrize("spec", ["plain", "natural", "pgd-2", "free-2", "yopo-2-1", "fgsm-rs",
                                  "trades-2", "mart-2", "n-fgsm", "grad-align", "natural(label_smoothing=0.1)",
                                  "pgd-2(ema_decay=0.9, awp_gamma=0.01)", "fgsm-rs(ema_decay=0.8)",
                                  "trades-2(awp_gamma=0.005, awp_warmup=1)"])
def test_ctrl_c_then_resume_gives_the_weights_of_a_straight_run(tmp_path, spec):
    ds = data()
    settings = {"epochs": 4 if spec == "free-2" else 2, "batch_size": 16, "lr": 0.05, "quiet": True}
    straight = fit(tiny(), defense(spec), ds, out_dir=tmp_path / "straight", **settings)

    # 64 images / 16 = 4 minibatches per data epoch: call 6 is the 2nd minibatch of data epoch 2.
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), Interrupting(defense(spec), at=6), ds, out_dir=tmp_path / "cut", **settings)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1

    resumed = fit(tiny(seed=1), defense(spec), ds, out_dir=tmp_path / "cut", resume=True, **settings)
    assert same_weights(resumed.model, straight.model)
    timed = ("seconds", "images_per_s")
    untimed = [{k: v for k, v in row.items() if k not in timed} for row in straight.history]
    assert [{k: row[k] for k in untimed[0]} for row in resumed.history] == untimed  # same losses, lrs, steps
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    for opt_a, opt_b in zip(a["optimizers"], b["optimizers"]):
        for key, state in opt_a["state"].items():
            assert torch.equal(state["momentum_buffer"], opt_b["state"][key]["momentum_buffer"])
    assert a["schedulers"] == b["schedulers"] and a["steps"] == b["steps"]
    if a["ema"] is not None:  # the averaged weights are the "model"; the live ones sit beside them
        assert a["ema"]["updates"] == b["ema"]["updates"]
        assert all(torch.equal(v, b["ema"]["live"][k]) for k, v in a["ema"]["live"].items())


def test_resuming_a_finished_run_trains_no_further(tmp_path):
    done = fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True)
    again = fit(tiny(seed=3), Plain(), data(), out_dir=tmp_path, resume=True, quiet=True)
    assert same_weights(done.model, again.model)
    assert again.data_epochs == 2 and len(again.history) == 2


def test_resume_with_other_settings_is_refused(tmp_path):
    fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True, epochs=1)
    with pytest.raises(ConfigError, match="lr 0.05 -> 0.2"):
        fit(tiny(), Plain(), data(), out_dir=tmp_path, resume=True, quiet=True, epochs=1, lr=0.2)


def test_a_checkpoint_loads_with_weights_only_and_holds_the_whole_state(tmp_path):
    fit(tiny(), create_defense("free-2"), data(), out_dir=tmp_path, quiet=True, epochs=2, batch_size=16)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["steps"] == 8  # one data epoch of 4 minibatches, each replayed twice
    assert state["defense"]["delta"].shape == (16, 3, 32, 32)  # Free's persistent perturbation
    assert state["config"]["train"]["data_epochs"] == 1 and state["config"]["defense"]["spec"] == "free-2"
    assert {"torch", "python", "numpy"} <= state["rng"].keys() and state["loader"]["epoch"] == 1


def test_truncated_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path):
    fit(tiny(), Plain(), data(), out_dir=tmp_path / "run", quiet=True, epochs=1)
    good = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="cut.pt is truncated or corrupt"):
        load_checkpoint(cut)


def test_corrupt_or_foreign_files_raise_checkpoint_error(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="weights.pt is not a robustode checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")


class Unsaveable:
    def __reduce__(self):
        raise RuntimeError("this object cannot be saved")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "last.pt"
    state = {"model": {"w": torch.ones(3)}, "optimizers": [], "schedulers": [], "epoch": 1, "steps": 4,
             "rng": {}, "config": {}}
    save_checkpoint(path, state)
    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_checkpoint(path, {**state, "epoch": 2, "bad": Unsaveable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_load_model_from_checkpoint_rebuilds_a_registered_model(tmp_path):
    model_registry.add("tiny_for_checkpoint_test", lambda num_classes=10: Tiny(num_classes))
    try:
        trained = fit("tiny_for_checkpoint_test", Plain(), data(), out_dir=tmp_path, quiet=True, epochs=1)
        rebuilt = load_model_from_checkpoint(tmp_path / "checkpoints" / "last.pt")
    finally:
        model_registry.remove("tiny_for_checkpoint_test")
    assert isinstance(rebuilt, Tiny) and same_weights(rebuilt, trained.model)


def test_load_model_from_checkpoint_explains_a_custom_model(tmp_path):
    fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True, epochs=1)
    with pytest.raises(CheckpointError, match="custom model"):
        load_model_from_checkpoint(tmp_path / "checkpoints" / "last.pt")
