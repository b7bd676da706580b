"""A battery of bad inputs through the Python API and the CLI: each one is refused before any
training with one line, a robustode error type and (CLI) a non-zero exit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustode as ro
from robustode.cli import main
from robustode.data import make_synthetic
from robustode.errors import CheckpointError, ConfigError, DataError, RobustodeError, UnknownNameError

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

DATA = make_synthetic(32, 16, seed=0)
FAST = {"epochs": 1, "batch_size": 16, "device": "cpu", "quiet": True, "n": 8, "masking_checks": False}


class Net(nn.Module):
    def __init__(self, out=(10,)):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4, 10)
        self.out = out

    def forward(self, x):
        z = self.fc(self.conv(x).mean((2, 3)))
        return z[:, : self.out[0]].reshape(len(x), *self.out)


class NoParams(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10]


class Pair(Net):
    def forward(self, x):
        return super().forward(x), x


class Gray(Net):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=4)


API = [  # (what is wrong, ro.train keyword arguments, error type, words in the message)
    ("model None", {"model": None}, ConfigError, "no model given: a registered name"),
    ("model a number", {"model": 42}, ConfigError, "model must be an nn.Module"),
    ("unknown model", {"model": "no_such_net"}, UnknownNameError, "unknown model"),
    ("no parameters", {"model": NoParams()}, ConfigError, "no trainable parameters"),
    ("5 outputs for 10 classes", {"model": Net(out=(5,))}, ConfigError, "expected logits (2, 10)"),
    ("output (N, 10, 1)", {"model": Net(out=(10, 1))}, ConfigError, "shape (2, 10, 1)"),
    ("output a tuple", {"model": Pair()}, ConfigError, "returns a tuple of 2"),
    ("forward fails", {"model": Gray()}, ConfigError, "Gray fails on (2, 3, 32, 32) in [0, 1]"),
    ("epochs a string", {"epochs": "2"}, ConfigError, "epochs must be a positive integer"),
    ("epochs 0", {"epochs": 0}, ConfigError, "epochs must be a positive integer"),
    ("epochs 2.5", {"epochs": 2.5}, ConfigError, "epochs must be a positive integer"),
    ("lr nan", {"lr": float("nan")}, ConfigError, "lr must be a number >= 0"),
    ("lr inf", {"lr": float("inf")}, ConfigError, "lr must be a number >= 0"),
    ("lr negative", {"lr": -1.0}, ConfigError, "lr must be a number >= 0"),
    ("batch size 0", {"batch_size": 0}, ConfigError, "batch_size must be a positive integer"),
    ("unknown schedule", {"schedule": "linear"}, ConfigError, "schedule must be one of multistep"),
    ("unknown setting", {"epocs": 3}, ConfigError, "unknown training setting(s) epocs"),
    ("unknown device", {"device": "tpu"}, ConfigError, "unknown device 'tpu'"),
    ("bad precision", {"precision": "fp16"}, ConfigError, "precision must be one of"),
    ("zero budget", {"max_seconds": 0}, ConfigError, "max_seconds must be > 0"),
    ("keep_best alone", {"keep_best": True}, ConfigError, "keep_best needs held-out evaluations"),
    ("unknown defense", {"defense": "nope"}, UnknownNameError, "unknown defense 'nope'"),
    ("pgd-0", {"defense": "pgd-0"}, ConfigError, "bad defense spec 'pgd-0'"),
    ("zero step", {"defense": "pgd-3(alpha=0)"}, ConfigError, "alpha must lie in (0, 1]"),
    ("step not a number", {"defense": "pgd-3(alpha=abc)"}, ConfigError, "alpha must be a number"),
    ("yopo sigma 2", {"defense": "yopo-3-2(sigma=2)"}, ConfigError, "sigma must lie in (0, 1]"),
    ("unknown defense option", {"defense_options": {"nope": 1}}, ConfigError, "has no setting nope"),
    ("eps 2", {"eps": 2}, ConfigError, "must lie in (0, 1]"),
    ("eps a word", {"eps": "eight"}, ConfigError, "fraction like 8/255"),
    ("eps negative", {"eps": -0.1}, ConfigError, "must lie in (0, 1]"),
    ("eps 0", {"eps": 0}, ConfigError, "eps 0 attacks nothing"),
    ("no attacks", {"attacks": []}, ConfigError, "at least one attack"),
    ("unknown attack", {"attacks": ["nope"]}, UnknownNameError, "unknown attack 'nope'"),
    ("torchattacks bad value", {"attacks": ["torchattacks:CW(c=abc)"]}, ConfigError, "c must be a number"),
    ("attack eps 2", {"attacks": ["pgd-20(eps=2)"]}, ConfigError, "bad attack spec 'pgd-20(eps=2)'"),
    ("n 0", {"n": 0}, ConfigError, "n must be a positive integer"),
    ("n too large", {"n": 10**6}, DataError, "only 16"),
    ("data a tensor", {"data": torch.rand(4, 3, 32, 32)}, ConfigError, "got a Tensor"),
    ("unknown data set", {"data": "no_such_data"}, UnknownNameError, "unknown dataset"),
    ("missing data folder", {"data": "synthetic", "data_dir": "/nonexistent/robustode"}, DataError,
     "does not exist"),
    ("train subset 0", {"data": "synthetic", "train_subset": 0}, DataError, "positive integer"),
    ("resume without a folder", {"resume": True, "out_dir": None}, ConfigError, "resume needs the run directory"),
    ("resume an empty folder", {"resume": True}, ConfigError, "nothing to resume"),
]


@pytest.mark.parametrize(("what", "kwargs", "error", "words"), API, ids=[case[0] for case in API])
def test_the_api_refuses_bad_input_in_one_line(tmp_path, what, kwargs, error, words):
    args = {**FAST, "model": Net(), "defense": "natural", "data": DATA, "out_dir": tmp_path / "run", **kwargs}
    with pytest.raises(error) as info:
        ro.train(args.pop("model"), args.pop("defense"), args.pop("data"), **args)
    assert isinstance(info.value, RobustodeError)
    message = str(info.value)
    assert words in message and "\n" not in message and len(message) < 600
    assert not (tmp_path / "run").exists()  # nothing written: refused before training


EVAL = [
    ({"n": -1}, "n must be a positive integer"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"eps": 5}, "must lie in (0, 1]"),
    ({"attacks": "pgd-20(alpha=0)"}, "alpha (the step size) must be > 0"),
    ({"data": "no_such_data"}, "unknown dataset"),
]


@pytest.mark.parametrize(("kwargs", "words"), EVAL)
def test_ro_evaluate_refuses_bad_input_in_one_line(kwargs, words):
    with pytest.raises(RobustodeError) as info:
        ro.evaluate(Net(), **{"data": DATA, "quiet": True, **kwargs})
    assert words in str(info.value) and "\n" not in str(info.value)


def test_ro_evaluate_takes_one_attack_as_a_string():
    result = ro.evaluate(Net(), DATA, attacks="pgd-2", n=8, masking_checks=False, quiet=True)
    assert list(result.robust) == ["pgd-2"]


@pytest.mark.parametrize("call", ["evaluate_checkpoint", "load_model"])
def test_missing_and_corrupt_checkpoints_are_refused(tmp_path, call):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for path, words in ((tmp_path / "missing.pt", "no checkpoint file"), (bad, "truncated or corrupt")):
        with pytest.raises(CheckpointError, match=words):
            getattr(ro, call)(path)


CLI = [  # argv after "train <tiny valid command line>" unless it starts with another command
    ["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--epochs", "2.5"], ["--epochs", "-1"],
    ["--batch-size", "0"], ["--n", "0"], ["--eval-n", "0"], ["--seed", "-1"], ["--max-seconds", "0"],
    ["--defense", "pgd-3(alpha=0)"], ["--defense", "yopo-2"], ["--defense", "free-2(m=0)"],
    ["--attacks", "torchattacks:CW(c=abc)"], ["--attacks", ""], ["--attacks", "pgd-20(restarts=0)"],
    ["--data-dir", "{tmp}/nowhere"], ["--dataset", "imagefolder:{tmp}/nowhere"], ["--records", "{file}"],
    ["--out", "{file}"], ["--keep-best"], ["--schedule", "linear"], ["--precision", "fp8"], ["--resume"],
    ["eval", "--checkpoint", "{tmp}/nowhere.pt"], ["eval", "--checkpoint", "{file}"],
    ["eval", "--checkpoint", "x.pt", "--eps", "3"], ["eval", "--checkpoint", "x.pt", "--n", "-3"],
    ["leaderboard", "--records", "{file}"], ["leaderboard", "--records", "{tmp}", "--out", "{tmp}"],
    ["list", "things"], ["demo", "--epochs", "0"],
]


@pytest.mark.parametrize("argv", CLI, ids=lambda argv: " ".join(argv))
def test_the_cli_refuses_bad_input_in_one_line(tmp_path, capsys, argv):
    (tmp_path / "a-file").write_text("not a folder, not a checkpoint")
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(tmp_path / "a-file")) for a in argv]
    if argv[0].startswith("--"):
        argv = ["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--epochs", "1",
                "--defense", "natural", "--out", str(tmp_path / "runs"), *argv]
    assert main(argv) != 0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"robustode {argv[0]}: error:") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("convert", "text", "message"), [
    ("positive_number", "0", "the value must be > 0, got 0"),
    ("below_one", "1", "the value must lie strictly between 0 and 1, got 1"),
    ("positive_int", "0", "the value must be a positive integer, got 0"),
    ("count", "-1", "the value must be an integer >= 0, got '-1'"),
    ("seed_list", "0,x", "a seed must be an integer >= 0, got 'x'"),
    ("class_count", "1", "the class count must be an integer >= 2, got 1"),
    ("input_shape", "3,0,8", "each of C,H,W must be a positive integer, got 0"),
])
def test_an_option_type_refuses_in_the_words_of_its_rule(convert, text, message):
    import argparse

    from robustode.cli import tool_parsers, types

    convert = getattr(types, convert, None) or getattr(tool_parsers, convert)
    with pytest.raises(argparse.ArgumentTypeError) as err:
        convert(text)
    assert str(err.value) == message


def test_an_option_type_takes_what_its_rule_lets_through():
    from robustode.cli import tool_parsers, types

    assert (types.positive_number("8/255"), types.below_one("0.5"), types.positive_int("3"), types.count("0"),
            types.seed_list("0, 2"), tool_parsers.class_count("2"), tool_parsers.input_shape("3x32x32")) == \
        (8 / 255, 0.5, 3, 0, [0, 2], 2, (3, 32, 32))
