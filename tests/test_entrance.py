"""The entrance redesign: names become objects once, at the API and the CLI; evaluation stands below
training; each rule is stated once, beside its field; help texts come from the registries."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest
import torch
from torch import nn
from training_utils import Net

import robustode as ro
from robustode import rules
from robustode.attacks import build
from robustode.attacks import spec as attack_spec
from robustode.cli.commands import train_config
from robustode.cli.parser import build_parser, dataset_help, defense_help
from robustode.data import make_synthetic
from robustode.defenses import create_defense, defenses, register_defense
from robustode.defenses.base import Defense
from robustode.errors import ConfigError
from robustode.evaluation import evaluate as evaluate_built
from robustode.threat import DEFAULT_EPS, ThreatModel, describe, eps_text
from robustode.training import TrainConfig

PACKAGE = Path(ro.__file__).parent
pgd_module = importlib.import_module("robustode.attacks.pgd")


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, inside a function) for every import of ``path``, made absolute."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            found += [(module, node.lineno, id(node) in inside)]
    return found


def test_evaluation_imports_nothing_of_training_not_even_inside_a_function():
    for path in (PACKAGE / "evaluation").rglob("*.py"):
        wrong = [(m, line) for m, line, _ in imports(path) if m.startswith("robustode.training")]
        assert not wrong, f"{path.name} imports training: {wrong}"


def test_outside_the_cli_an_import_inside_a_function_is_an_optional_dependency_and_says_so():
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.parts:
            continue
        lines = path.read_text().splitlines()
        for module, line, inside in imports(path):
            if inside:
                assert not module.startswith("robustode"), f"{path}:{line} imports {module} inside a function"
                said = " ".join(lines[max(0, line - 4):line])
                # An optional dependency, or (torchvision.datasets, data/torchvision_sets.py) one deferred to the path
                # that needs it; either way the comment says which.
                assert "optional" in said or "deferred" in said, f"{path}:{line}: say why {module} is imported here"


def test_the_default_budget_is_defined_once():
    def is_8_255(node) -> bool:
        return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                and getattr(node.left, "value", None) == 8 and getattr(node.right, "value", None) == 255)

    places = [f"{p.relative_to(PACKAGE)}:{n.lineno}" for p in PACKAGE.rglob("*.py")
              for n in ast.walk(ast.parse(p.read_text())) if is_8_255(n)]
    assert [place.split(":")[0] for place in places] == ["threat.py"]
    assert DEFAULT_EPS == 8 / 255 and create_defense("pgd-3").eps == DEFAULT_EPS
    assert build("pgd-3").settings["eps"] == DEFAULT_EPS and ThreatModel().eps == DEFAULT_EPS


def test_the_threat_model_checks_its_fields_and_describes_itself():
    assert ThreatModel(eps="4/255").describe() == "L-inf eps 4/255"
    assert ThreatModel(norm="l2", eps=0.5).describe() == "L2 eps 0.5"
    assert describe("linf", 8 / 255, symbol=True) == "L∞ eps 8/255"  # the report's spelling
    assert describe("l2", 0.5, symbol=True) == "L2 eps 0.5"
    assert describe("corruptions", None, symbol=True) == "common corruptions"
    assert eps_text(8 / 255) == "8/255" and eps_text(0.03) == "0.03"
    with pytest.raises(ConfigError, match=r"eps must lie in \(0, 1\]"):
        ThreatModel(eps=2)
    with pytest.raises(ConfigError, match="norm must be one of linf, l2"):
        ThreatModel(norm="l1")


def test_one_rule_table_serves_defenses_attacks_and_the_training_settings():
    for kind, field_of in ((create_defense("pgd-3"), "eps"), (create_defense("pgd-3"), "steps"),
                           (ro.TrainConfig(), "epochs"), (build("autoattack").config, "apgd_steps")):
        f = {f.name: f for f in dataclasses.fields(kind)}[field_of]
        assert isinstance(f.metadata["check"], (rules.Number, rules.Choice)), (type(kind).__name__, field_of)
    assert create_defense("pgd-3(alpha=2/255)").alpha == 2 / 255  # converted from the spec's text
    with pytest.raises(ConfigError, match=r"steps \(K of pgd-K\) must be a positive integer, got 0"):
        create_defense("pgd-0")
    with pytest.raises(ConfigError, match="epochs must be a positive integer, got '2'"):
        TrainConfig(epochs="2").resolve(create_defense("natural"))  # Python settings are not parsed from text
    with pytest.raises(ConfigError, match="apgd_steps must be a positive integer, got 0"):
        build("autoattack(apgd_steps=0)")


def test_a_defense_that_skipped_its_checks_is_checked_at_the_entrance():
    @dataclasses.dataclass
    class Sloppy(Defense):
        def __post_init__(self):  # forgets super().__post_init__()
            pass

        def train_step(self, model, x, y, optimizers, on_step):
            raise AssertionError("never reached")

    with pytest.raises(ConfigError, match=r"ema_decay must lie in \[0, 1\)"):
        ro.fit(nn.Linear(2, 2), Sloppy(ema_decay=1.5), make_synthetic(8, 8, seed=0), quiet=True)


def test_train_builds_each_object_once(monkeypatch):
    built = {"attack": 0, "defense": 0}
    create_attack, create = attack_spec.attacks.create, defenses.create
    monkeypatch.setattr(attack_spec.attacks, "create", lambda *a, **k: built.__setitem__(
        "attack", built["attack"] + 1) or create_attack(*a, **k))
    monkeypatch.setattr(defenses, "create", lambda *a, **k: built.__setitem__(
        "defense", built["defense"] + 1) or create(*a, **k))
    torch.manual_seed(0)
    _, record = ro.train(Net(), "pgd-2", make_synthetic(32, 16, seed=0), attacks=["fgsm", "pgd-2"], n=16,
                         epochs=1, batch_size=16, masking_checks=False, quiet=True, device="cpu")
    assert built == {"attack": 2, "defense": 1}
    assert set(record.evaluation.robust) == {"fgsm", "pgd-2"}


@pytest.mark.parametrize("spec", ["pgd-2", "fgsm-rs", "trades-2", "yopo-2-2", "free-2"])
def test_a_train_step_and_an_attack_trust_their_checked_settings(spec, monkeypatch):
    torch.manual_seed(0)
    model, defense, attack = Net(), create_defense(spec), build("pgd-2")
    defense.prepare(model, torch.rand(2, 3, 32, 32))
    optimizers = defense.optimizers(model, [{"params": list(model.parameters())}],
                                    lambda groups: torch.optim.SGD(groups, lr=0.01))
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)

    def refuse(*a, **k):
        raise AssertionError("a hot path checked its settings again")

    for target, name in ((pgd_module, "check_settings"), (rules.Number, "__call__"), (rules.Choice, "__call__")):
        monkeypatch.setattr(target, name, refuse)
    defense.train_step(model, x, y, optimizers, lambda: None)
    assert attack.run(model.eval(), x, y).x_adv.shape == x.shape


def test_the_evaluation_below_the_entrance_takes_objects_and_trains_no_surrogate():
    data = make_synthetic(32, 16, seed=0)
    model = Net().eval()
    model.robustode_escalate = "declared for the test"
    with pytest.raises(TypeError):
        evaluate_built(model, data, attacks=["fgsm"])  # no threat model: names are the entrance's business
    result = evaluate_built(model, data, [build("square(n_queries=5)")], ThreatModel(), n=8, quiet=True,
                            masking_checks=False)
    transfer = next(stage for stage in result.escalation if stage["stage"] == "transfer")
    assert transfer["skipped"].startswith("no surrogate given")


def test_the_cli_builds_the_train_config_itself():
    args = build_parser().parse_args(["train", "--model", "resnet20", "--defense", "pgd-3", "--epochs", "2",
                                      "--lr", "0.05", "--eval-every", "1", "--holdout", "8"])
    config = train_config(args, seed=3)
    assert isinstance(config, TrainConfig)
    assert (config.epochs, config.lr, config.eval_every, config.holdout, config.seed) == (2, 0.05, 1, 8, 3)
    assert config.batch_size is None  # unset: the preset's


def test_help_texts_and_valid_forms_come_from_the_registries():
    @register_defense("shield-K", pattern=r"shield-(?P<steps>\d+)")
    class Shield(Defense):
        steps: int = 1

    try:
        assert "shield-K" in defense_help() and "grad-align" in defense_help()
        with pytest.raises(ConfigError, match="valid forms: natural, .*shield-K"):
            create_defense("nosuch-3")
    finally:
        defenses.remove("shield-K")
    assert "shield-K" not in defense_help()
    assert all(name.rstrip(":") in dataset_help("x") for name in ro.list_datasets())


class Randomized(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = Net()

    def forward(self, x):
        return self.net(x + 0.01 * torch.randn_like(x))


def test_a_randomized_model_gets_eot_only_for_attacks_built_from_strings():
    data = make_synthetic(16, 8, seed=0)
    given = build("pgd-2", eps=4 / 255)
    given.name = "pgd-2 at 4/255"  # renamed: no longer a spec
    result = ro.evaluate(Randomized(), data, attacks=["fgsm", given], n=8, quiet=True, masking_checks=False,
                         escalate=False)
    assert result.randomized
    assert result.attack_settings["fgsm"]["eot"] == 20  # built here from its spec: rebuilt with EOT
    assert "eot" not in result.attack_settings["pgd-2 at 4/255"]  # given as an object: used as it is


def test_an_evaluation_without_attacks_is_clean_only():
    result = ro.evaluate(Net(), make_synthetic(16, 8, seed=0), attacks=[], n=8, quiet=True, masking_checks=False)
    assert result.robust == {} and result.worst_case == result.clean_acc
    with pytest.raises(ConfigError, match="needs at least one attack"):
        ro.train(Net(), "natural", make_synthetic(16, 8, seed=0), attacks=[])


@pytest.mark.parametrize(("call", "message"), [
    (lambda: ro.train(Net(), "natural", "cifar10", output=1.5), "output must be an index or a key"),
    (lambda: ro.train(Net(), "natural", "cifar10", eval_batch_size=0), "eval_batch_size must be a positive"),
    (lambda: ro.train(Net(), "natural", "cifar10", epochs=-1), "epochs"),
    (lambda: ro.fit(Net(), "natural", "cifar10", lr=-0.1), "lr"),
    (lambda: ro.fit(Net(), "natural", "cifar10", log=("nosuch",)), "nosuch"),
    (lambda: ro.fit(Net(), "natural", "cifar10", eval_every=1, eval_attack="nosuch-3"), "nosuch-3"),
    (lambda: ro.evaluate(Net(), "cifar10", batch_size=0), "batch_size must be a positive integer"),
    (lambda: ro.evaluate(Net(), "cifar10", device="cuda:99"), "cuda"),
])
def test_bad_input_fails_before_any_data_is_loaded(call, message, monkeypatch):
    import robustode.entrance

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before the bad input was found")

    monkeypatch.setattr(robustode.entrance, "load_dataset", no_data)
    with pytest.raises(ConfigError, match=message):
        call()
