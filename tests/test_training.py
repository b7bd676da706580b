"""The shared training loop: groups, hooks, replay counting, timing, stops and the run directory."""

import csv
import itertools
import json
import time
from types import SimpleNamespace

import pytest
import torch
from defense_fixtures import one_thread  # noqa: F401 (autouse: one CPU thread)
from training_utils import Plain, data, same_weights, tiny

import robustode.evaluation.sharded
from robustode.defenses import create_defense
from robustode.errors import ConfigError
from robustode.api import fit
from robustode.training import load_checkpoint
from robustode.training.optim import param_groups, sgd_factory


def test_no_weight_decay_for_the_models_listed_parameters_and_optionally_norms():
    model = tiny()
    groups = {g["name"]: g for g in param_groups(model, 5e-4)}
    assert [p is model.tau for p in groups["no_decay"]["params"]] == [True]
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0.0

    groups = {g["name"]: g for g in param_groups(model, 5e-4, no_wd_norms=True)}
    exempt = {id(p) for p in groups["no_decay"]["params"]}
    bn, conv, linear = model.body[0], model.stem[1], model.body[4]
    assert exempt == {id(model.tau), id(bn.weight), id(bn.bias), id(conv.bias), id(linear.bias)}
    opt = sgd_factory(0.1, 0.9, False, torch.device("cpu"))(list(groups.values()))
    assert [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]


def test_loss_decreases_and_the_step_hook_runs_once_per_optimizer_step():
    model = tiny()
    result = fit(model, Plain(), data(), epochs=6, lr=0.5, augment=False, quiet=True)
    losses = [row["loss"] for row in result.history]
    assert all(later < earlier for earlier, later in itertools.pairwise(losses))
    assert model.hook_calls == result.history[-1]["steps"] == 6 * 4  # 64 images in minibatches of 16
    assert result.passes_per_image == 6.0 and result.data_epochs == 6


def test_free_m_runs_epochs_over_m_data_epochs_on_the_natural_lr_schedule():
    settings = {"epochs": 4, "batch_size": 16, "lr": 0.1, "milestones": (2,), "augment": False, "quiet": True}
    natural = fit(tiny(), create_defense("natural"), data(), **settings)
    free = fit(tiny(), create_defense("free-2"), data(), **settings)
    assert free.data_epochs == 2 and natural.data_epochs == 4
    for row in free.history:  # Free's data epoch j ends at nominal epoch 2j, on the same step and lr
        twin = natural.history[row["nominal_epoch"] - 1]
        assert (row["steps"], row["lr"]) == (twin["steps"], twin["lr"])
    assert [row["lr"] for row in free.history] == pytest.approx([0.1, 0.01])
    assert free.passes_per_image == natural.passes_per_image == 4.0


def test_the_cuda_settings_bf16_autocast_and_channels_last_also_run_on_cpu():
    model = tiny()
    result = fit(model, Plain(), data(), precision="bf16", channels_last=True, quiet=True)
    assert result.run.train.precision == "bf16" and result.history[-1]["loss"] < 2.5
    assert model.stem[1].weight.is_contiguous(memory_format=torch.channels_last)


def fake_evaluate(robust_by_call, pause=0.0):
    calls = []

    def evaluate(model, held_out, attacks, threat, **kw):
        calls.append(len(held_out))
        time.sleep(pause)
        return SimpleNamespace(clean_acc=0.9, robust={attacks[0].name: robust_by_call[len(calls) - 1]})

    return evaluate, calls


def test_training_time_excludes_the_periodic_evaluation(monkeypatch):
    evaluate, calls = fake_evaluate([0.1, 0.2], pause=0.5)
    monkeypatch.setattr(robustode.evaluation.sharded, "evaluate", evaluate)
    start = time.perf_counter()
    result = fit(tiny(), Plain(), data(), eval_every=1, eval_n=8, quiet=True)
    wall = time.perf_counter() - start
    assert calls == [8, 8]
    assert [row["eval_robust"] for row in result.history] == [0.1, 0.2]
    assert result.train_seconds + 2 * 0.5 <= wall
    assert result.train_seconds == pytest.approx(sum(row["seconds"] for row in result.history))


def test_periodic_evaluation_uses_the_shared_evaluator_and_leaves_training_untouched():
    ds = data()
    plain = fit(tiny(), Plain(), ds, quiet=True)
    evaluated = fit(tiny(), Plain(), ds, eval_every=1, eval_n=8, quiet=True)
    assert same_weights(plain.model, evaluated.model)  # evaluation draws from its own random stream
    direct = robustode.evaluate(evaluated.model, ds.test.subset(8), attacks=("pgd-20",), seed=0,
                                          masking_checks=False, quiet=True)
    last = evaluated.history[-1]
    assert (last["eval_clean"], last["eval_robust"]) == (direct.clean_acc, direct.robust["pgd-20"])


def test_keep_best_keeps_the_epoch_with_the_best_held_out_robust_accuracy(monkeypatch, tmp_path):
    evaluate, _ = fake_evaluate([0.3, 0.5, 0.4])
    monkeypatch.setattr(robustode.evaluation.sharded, "evaluate", evaluate)
    result = fit(tiny(), Plain(), data(), epochs=3, eval_every=1, keep_best=True, out_dir=tmp_path,
                 quiet=True)
    assert result.best["epoch"] == 2 and result.best["eval_robust"] == 0.5
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 3


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    result = fit(tiny(), Plain(nan_from_call=6), data(), epochs=3, out_dir=tmp_path, quiet=True)
    assert "training loss became nan in data epoch 2" in result.stopped_reason
    assert "kept the checkpoint of data epoch 1" in result.stopped_reason
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and result.data_epochs == 1
    assert all(torch.equal(v, last["model"][k]) for k, v in result.model.state_dict().items())
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"] and "nan" in rows[1]["note"]


def test_a_nan_loss_without_a_run_directory_says_the_weights_diverged():
    result = fit(tiny(), Plain(nan_from_call=1), data(), epochs=3, quiet=True)
    assert "data epoch 1" in result.stopped_reason and "diverged weights" in result.stopped_reason
    assert len(result.history) == 1


@pytest.mark.parametrize(("restores", "saved_epoch"), [(True, 1), (False, 2)])
def test_a_defense_stop_checkpoints_the_epoch_only_when_it_kept_its_weights(tmp_path, restores, saved_epoch):
    result = fit(tiny(), Plain(stop_at_epoch=2, restores=restores), data(), epochs=4, out_dir=tmp_path, quiet=True)
    assert result.stopped_reason == "guard tripped after epoch 2" and result.data_epochs == 2
    # A guard that put epoch 1's weights back: last.pt holds them already; a stop that kept epoch 2's: saved.
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == saved_epoch


def test_max_seconds_stops_inside_an_epoch_and_writes_final_pt(tmp_path):
    result = fit(tiny(), Plain(), data(), max_seconds=1e-9, log_every=1, out_dir=tmp_path, quiet=True)
    assert result.stopped_reason == ("time budget of 1e-09 s spent in data epoch 1 "
                                     "within its first 1 minibatches")
    assert result.data_epochs == 0 and result.history[0]["steps"] == 1
    assert load_checkpoint(tmp_path / "checkpoints" / "final.pt")["mid_epoch"] is True
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_max_seconds_checked_at_epoch_end_stops_after_that_epoch():
    result = fit(tiny(), Plain(), data(), epochs=3, max_seconds=1e-9, log_every=100, quiet=True)
    assert result.stopped_reason == "time budget of 1e-09 s spent after data epoch 1"
    assert result.data_epochs == 1


def test_the_run_directory_holds_config_log_metrics_and_checkpoints(tmp_path):
    fit(tiny(), Plain(), data(), out_dir=tmp_path / "run", quiet=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["lr"] == 0.05 and config["defense"]["spec"] == "plain"
    assert config["data"]["n_train"] == 64 and config["model"]["class"] == "Tiny"
    rows = read_metrics(tmp_path / "run")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert "epoch 2/2" in (tmp_path / "run" / "train.log").read_text()


def read_metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_an_existing_run_directory_is_refused_without_resume(tmp_path):
    (tmp_path / "notes.txt").write_text("an earlier run")
    with pytest.raises(ConfigError, match="exists; pass resume=True"):
        fit(tiny(), Plain(), data(), out_dir=tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(tiny(), Plain(), data(), out_dir=tmp_path, resume=True, quiet=True)
    with pytest.raises(ConfigError, match="lr must be a number >= 0"):
        fit(tiny(), Plain(), data(), out_dir=tmp_path / "new", lr=-1.0, quiet=True)
    assert not (tmp_path / "new").exists()  # a refused run leaves nothing behind


def test_a_run_that_died_before_its_first_checkpoint_can_start_afresh(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "train.log").write_text("killed in epoch 1\n")
    with pytest.raises(ConfigError, match="without --resume to start it afresh"):
        fit(tiny(), Plain(), data(), out_dir=run, resume=True, quiet=True)
    fit(tiny(), Plain(), data(), out_dir=run, epochs=1, quiet=True)
    assert (run / "checkpoints" / "last.pt").is_file()
    with pytest.raises(ConfigError, match="exists; pass resume=True"):  # now it holds a checkpoint
        fit(tiny(), Plain(), data(), out_dir=run, epochs=1, quiet=True)
