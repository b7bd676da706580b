"""The spec grammar ``name(key=value, ...)``: one parser in the registry, the same result and the
same error wording at every door (create_defense, fit, ro.train, the CLI) and for attacks."""

from __future__ import annotations

import pytest
from training_utils import tiny

import robustode as ro
from robustode.attacks import attacks, build, parse_spec, split_specs
from robustode.attacks.pgd import _run_recorded as run_recorded
from robustode.cli import main
from robustode.cli.parser import build_parser
from robustode.data import make_synthetic
from robustode.defenses import create_defense
from robustode.errors import ConfigError, UnknownNameError
from robustode.records import load_record
from robustode.specs import spec_value
from robustode.api import fit

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

@pytest.mark.parametrize("spec", ["pgdd", "autoatack", "torchattacks:NoSuchAttack", "pgd-K"])
def test_unknown_attack_names_raise(spec):
    with pytest.raises(UnknownNameError):
        build(spec)


@pytest.mark.parametrize("spec", ["pgd-0", "pgd-20(eps=2)", "pgd(norm=l3)", "fgsm(eps=-1)", "pgd-20(",
                                  "pgd-20(restarts)", "torchattacks:CW(nope=1)", "autoattack(apgd_steps=0)"])
def test_bad_specs_raise(spec):
    with pytest.raises(ConfigError):
        build(spec)


def test_spec_parsing_and_registry_defaults():
    assert parse_spec("pgd-50(restarts=5, eps=8/255, norm=l2, early_stop=true)") == (
        "pgd-50", {"restarts": 5, "eps": 8 / 255, "norm": "l2", "early_stop": True})
    attack = build("pgd-20")
    assert attack.name == "pgd-20" and attack.fn is run_recorded  # run_pgd on the checked settings
    assert attack.settings == dict(eps=8 / 255, alpha=2 / 255, steps=20, norm="linf", random_start=True,
                                   restarts=1, early_stop=False, autocast_dtype=None)
    assert split_specs(" pgd-20(restarts=5, norm=l2),autoattack,, torchattacks:CW(c=1, steps=5)") == [
        "pgd-20(restarts=5, norm=l2)", "autoattack", "torchattacks:CW(c=1, steps=5)"]
    assert build("pgd").settings["steps"] == 20
    assert build("pgd-7(steps=9)").settings["steps"] == 9  # explicit settings win over the name
    assert build("pgd-10", eps=4 / 255).settings["alpha"] == 1 / 255
    assert build("square").blackbox and not build("pgd-20").blackbox
    assert {"pgd", "pgd-K", "fgsm", "autoattack", "autoattack-dev", "square", "torchattacks:"} <= set(attacks)


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("none", None), ("-3", -3),
                                             ("8/255", 8 / 255), ("0.5", 0.5), ("l2", "l2")])
def test_a_spec_value_is_parsed_by_its_text(text, value):
    assert spec_value(text) == value


def test_a_setting_given_twice_in_one_spec_is_refused():
    with pytest.raises(ConfigError, match="sets alpha twice"):
        parse_spec("pgd-10(alpha=1/255, alpha=2/255)")


SPEC = "pgd-2(alpha=1/255)"
FAST = {"epochs": 1, "batch_size": 16, "device": "cpu", "quiet": True}


def test_a_defense_spec_with_settings_means_the_same_at_every_door(tmp_path):
    data = make_synthetic(32, 16, seed=0)
    by_create = create_defense(SPEC)
    assert (by_create.steps, by_create.alpha, by_create.spec) == (2, 1 / 255, SPEC)
    by_fit = fit(tiny(), SPEC, data, **FAST)
    assert by_fit.run.defense.spec == SPEC and by_fit.run.defense.hyperparameters["alpha"] == 1 / 255
    _, record = ro.train(tiny(), SPEC, data, n=8, masking_checks=False, **FAST)
    assert record.defense.spec == SPEC and record.defense.hyperparameters["alpha"] == 1 / 255
    out = tmp_path / "runs"
    assert main(["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--epochs",
                 "1", "--batch-size", "16", "--n", "8", "--quiet", "--no-masking-checks", "--defense", SPEC,
                 "--out", str(out), "--name", "cli"]) == 0
    by_cli = load_record(out / "cli" / "record.json")
    assert by_cli.defense.spec == SPEC and by_cli.defense.hyperparameters == record.defense.hyperparameters


@pytest.mark.parametrize(("spec", "message"), [
    ("pgd-2(alpha", "malformed defense spec 'pgd-2(alpha'"),
    ("pgd-2(alpa=1/255)", "defense 'pgd-2(alpa=1/255)' has no setting alpa"),
    ("pgd-2(alpha=0)", "bad defense spec 'pgd-2(alpha=0)'"),
])
def test_a_bad_defense_spec_gets_one_wording_at_every_door(tmp_path, capsys, spec, message):
    data = make_synthetic(32, 16, seed=0)
    doors = [lambda: create_defense(spec), lambda: fit(tiny(), spec, data, **FAST),
             lambda: ro.train(tiny(), spec, data, n=8, **FAST)]
    for door in doors:
        with pytest.raises(ConfigError) as err:
            door()
        assert message in str(err.value)
    assert main(["train", "--model", "vit_tiny", "--dataset", "synthetic", "--defense", spec,
                 "--out", str(tmp_path / "runs")]) == 1
    assert message in capsys.readouterr().err


def test_the_cli_keeps_commas_inside_an_attack_spec():
    for command in (["eval", "--checkpoint", "x.pt"], ["train", "--model", "m", "--defense", "natural"]):
        args = build_parser().parse_args([*command, "--attacks", "pgd-5(restarts=2, norm=l2),fgsm"])
        assert args.attacks == ["pgd-5(restarts=2, norm=l2)", "fgsm"]


def test_robustode_eval_runs_an_attack_spec_with_commas(tmp_path):
    out = tmp_path / "runs"
    assert main(["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--epochs",
                 "1", "--batch-size", "16", "--n", "8", "--quiet", "--no-masking-checks", "--defense", "natural",
                 "--out", str(out), "--name", "r"]) == 0
    spec = "pgd-3(restarts=2, norm=l2, eps=0.5)"
    assert main(["eval", "--checkpoint", str(out / "r" / "checkpoints" / "last.pt"), "--n", "8", "--quiet",
                 "--no-masking-checks", "--attacks", f"{spec},fgsm", "--out", str(tmp_path / "eval.json")]) == 0
    record = load_record(tmp_path / "eval.json")
    spec = "pgd-3(eps=0.5, norm=l2, restarts=2)"  # its one spelling: settings sorted
    assert list(record.evaluation.robust) == [spec, "fgsm"]
    settings = record.evaluation.attack_settings[spec]
    assert settings.restarts == 2 and settings.norm == "l2" and settings.eps == 0.5
