"""Recipes: one word sets model, defense, modifiers, optimizer, schedule and mix; what is given wins, said in
the log; the authors' weight average and OneCycle schedule they choose."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from defense_fixtures import TinyNet, blobs
from training_utils import Interrupting, Plain, data, same_weights, tiny

from robustode.api import fit
from robustode.cli import main
from robustode.entrance import apply_recipe, recipe_defense
from robustode.errors import ConfigError, UnknownNameError
from robustode.recipes import Recipe, recipes
from robustode.training import TrainConfig, load_checkpoint
from robustode.training.averaging import WeightAverage
from robustode.training.schedules import onecycle


def test_wang2023_sets_the_papers_settings_and_given_ones_win_with_a_note():
    model, defense, config, notes = apply_recipe("wang2023", None, None, TrainConfig(), set(), extra_data="x")
    assert model == "dm_wrn28_10" and notes == ()
    assert defense == ("trades-10(beta=5, bn_mode=train-frozen, ema_decay=0.995, eps=8/255, label_smoothing=0.1, "
                       "step_size=2/255)")  # the one spelling (robustode.specs.spec_text): settings sorted by key
    assert (config.batch_size, config.lr, config.epochs, config.nesterov, config.weight_decay) == (512, 0.2, 400, True,
                                                                                                  5e-4)
    assert (config.schedule, config.cyclic_peak, config.extra_fraction, config.ema_style) == (
        "onecycle", 0.025, 0.7, "wang2023")
    built = recipe_defense("wang2023", defense)
    assert (built.beta, built.step_size, built.eps, built.bn_mode) == (5, 2 / 255, 8 / 255, "train-frozen")
    model, defense, config, notes = apply_recipe("wang2023", "resnet20", "trades-10(beta=6, label_smoothing=0.2)",
                                                 TrainConfig(lr=0.1, extra_fraction=0.5),
                                                 {"lr", "extra_fraction"}, extra_data="x")
    assert (config.lr, config.extra_fraction, config.batch_size) == (0.1, 0.5, 512)
    assert defense == ("trades-10(beta=6, bn_mode=train-frozen, ema_decay=0.995, eps=8/255, label_smoothing=51/255, "
                       "step_size=2/255)")  # 0.2 is 51/255: a whole fraction of 255 is written as one
    assert set(notes) == {"model: resnet20 (given) over the recipe's dm_wrn28_10",
                          "beta: 6 (given) over the recipe's 5", "label_smoothing: 0.2 (given) over the recipe's 0.1",
                          "lr: 0.1 (given) over the recipe's 0.2", "extra_fraction: 0.5 (given) over the recipe's 0.7"}


def test_wang2023s_attack_normalizes_by_batch_statistics_and_only_the_loss_moves_the_running_ones():
    torch.manual_seed(0)
    _, spec, _, _ = apply_recipe("wang2023", None, None, TrainConfig(), set(), extra_data="x")
    defense = recipe_defense("wang2023", spec)
    model = TinyNet().train()
    bn = model.body[0]
    seen = []  # per BN forward: (normalized by the batch's statistics, running mean after it)

    def record(module, args, out):
        batch = F.batch_norm(args[0], None, None, module.weight, module.bias, training=True, eps=module.eps)
        seen.append((torch.allclose(out, batch, atol=1e-5), module.running_mean.clone()))

    bn.register_forward_hook(record)
    defense.train_step(model, *blobs(16), [torch.optim.SGD(model.parameters(), lr=0.0)], lambda: None)
    loss_forwards = 2 + defense.kl_target_forward  # f(x), f(x') and the KL target's f(x), in train mode
    attack, loss = seen[:-loss_forwards], seen[-loss_forwards:]
    assert len(attack) == 1 + defense.steps  # the KL target's f(x), then one forward per step
    assert all(batch for batch, _ in seen)  # train-mode batch norm throughout, the attack's forwards too
    assert all(torch.equal(mean, torch.zeros(8)) for _, mean in attack)  # the attack leaves the statistics alone
    assert all(not torch.equal(before, after) for (_, before), (_, after) in zip([attack[-1], *loss], loss))
    assert int(bn.num_batches_tracked) == loss_forwards and model.training


def test_another_method_drops_the_recipes_method_settings_and_keeps_its_modifiers():
    _, defense, _, notes = apply_recipe("wang2023", None, "pgd-10", TrainConfig(), set())
    assert defense == "pgd-10(ema_decay=0.995, label_smoothing=0.1)"
    assert notes[0].startswith("no extra data given") and notes[1].startswith("defense: pgd-10 (given) over")


def test_unknown_recipes_missing_methods_and_conflicts_are_refused_in_one_line():
    with pytest.raises(UnknownNameError, match="unknown recipe 'nope' \\(known: fastat, wang2023\\)"):
        apply_recipe("nope", None, None, TrainConfig(), set())
    with pytest.raises(ConfigError, match="recipe fastat sets what every method shares; name the method"):
        apply_recipe("fastat", None, None, TrainConfig(), set())
    recipes.add("awp-test", lambda: Recipe("awp-test", "resnet20", None, modifiers={"awp_gamma": 0.01}))
    try:
        _, defense, _, _ = apply_recipe("awp-test", None, "fgsm-rs", TrainConfig(), set())
        with pytest.raises(ConfigError, match="recipe awp-test with defense fgsm-rs\\(awp_gamma=0.01\\): .*does not "
                                              "take AWP"):
            recipe_defense("awp-test", defense)
    finally:
        recipes.remove("awp-test")


def test_fastat_is_the_benchmarks_common_settings():
    model, defense, config, _ = apply_recipe("fastat", None, "n-fgsm", TrainConfig(), set())
    assert (model, defense) == ("preact_resnet18", "n-fgsm(label_smoothing=102/255)")  # 0.4, in the one spelling
    assert (config.epochs, config.batch_size, config.lr, config.schedule, config.cyclic_peak) == (
        100, 128, 0.1, "onecycle", 0.3)


def test_onecycle_is_torchs_curve():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    torch_lr = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=201, pct_start=0.3)
    ours = []
    for step in range(201):
        ours.append((opt.param_groups[0]["lr"], onecycle(step / 2, total=100, peak=0.3)))
        opt.step()
        if step < 200:
            torch_lr.step()
    assert ours[0] == pytest.approx((0.04, 0.04)) and ours[60][1] == 1.0 and ours[-1][1] == pytest.approx(4e-6)
    assert max(abs(a - b) for a, b in ours) < 0.03  # torch's phases end one step earlier


def test_the_authors_average_copies_the_weights_through_the_warm_up_then_averages_parameters_only():
    model = tiny()
    average = WeightAverage(model, 0.995, "wang2023", total_steps=200)  # warm-up: 2.5% of 200 = 5 steps
    rates = []
    for _ in range(8):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
            model.body[0].running_mean.add_(3.0)
        rates.append(average.rate())
        average.update()
    assert rates[:4] == [0.0] * 4 and rates[4] == pytest.approx(1 / 10) and rates[5] == pytest.approx(2 / 11)
    live, avg = model.state_dict(), average.model.state_dict()
    assert torch.equal(avg["body.0.running_mean"], live["body.0.running_mean"])  # copied, not averaged
    assert not torch.equal(avg["body.4.weight"], live["body.4.weight"])
    robustode = WeightAverage(tiny(), 0.995)
    assert robustode.rate() == pytest.approx(1 / 10) and WeightAverage(tiny(), 0.9995, "fixed").rate() == 0.9995
    assert not math.isnan(rates[-1])


def test_list_recipes_and_a_cli_run_from_a_recipe_logs_which_setting_won(tmp_path, capsys):
    assert main(["list", "recipes"]) == 0
    listed = capsys.readouterr().out
    assert "wang2023" in listed and "fastat" in listed
    argv = ["train", "--recipe", "fastat", "--defense", "natural", "--model", "vit_tiny", "--dataset", "synthetic",
            "--train-subset", "64", "--batch-size", "32", "--epochs", "1", "--n", "16", "--quiet",
            "--no-masking-checks", "--out", str(tmp_path)]
    assert main(argv) == 0
    log = next(tmp_path.glob("*fastat*/train.log")).read_text()
    assert "recipe fastat: batch_size: 32 (given) over the recipe's 128" in log
    assert "recipe fastat: model: vit_tiny (given) over the recipe's preact_resnet18" in log


def test_a_run_with_the_authors_average_resumes_to_the_weights_of_a_straight_run(tmp_path):
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, schedule="onecycle", cyclic_peak=0.3, ema_style="wang2023")
    straight = fit(tiny(), Plain(ema_decay=0.9), data(), config=config, out_dir=tmp_path / "a", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), Interrupting(Plain(ema_decay=0.9), at=6), data(), config=config, out_dir=tmp_path / "b",
            quiet=True)
    resumed = fit(tiny(seed=1), Plain(ema_decay=0.9), data(), config=config, out_dir=tmp_path / "b", resume=True,
                  quiet=True)
    assert same_weights(resumed.model, straight.model)  # the average, with its warm-up position
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["ema"]["updates"] == 12
