"""Settings that would give a plausible number meaning nothing are refused, or, where a preset's value is
lowered to what the data allows, the value used is recorded and logged (issue 30, item 2)."""

from __future__ import annotations

import pytest
import torch

import robustode as ro
from robustode.cli import main
from robustode.data import DataSet, Split, load_dataset, make_synthetic
from robustode.errors import ConfigError, DataError
from robustode.threat import ThreatModel

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TRAIN = ["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--defense", "pgd-2",
         "--epochs", "1", "--n", "8", "--quiet", "--no-masking-checks"]


def refused(capsys, argv, words: str) -> None:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


@pytest.mark.parametrize("twice", [["--cycle-momentum", "--no-cycle-momentum"], ["--epochs", "2"],
                                   ["--epochs=3"], ["--epoch", "3"], ["--lr", "0.1", "--lr", "0.2"],
                                   ["--ema", "0.9", "--ema", "0.99"]])
def test_an_option_given_twice_is_refused_not_the_last_taken(tmp_path, capsys, twice):
    refused(capsys, [*TRAIN, "--out", str(tmp_path / "runs"), *twice], "give")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option, text", [("--seeds", "0,,1"), ("--seeds", "0,1,"), ("--seeds", ",0"),
                                          ("--attacks", "pgd-20,,pgd-2"), ("--attacks", "pgd-2,")])
def test_a_list_with_an_empty_item_is_refused(tmp_path, capsys, option, text):
    refused(capsys, [*TRAIN, "--out", str(tmp_path / "runs"), option, text], "an empty item")


@pytest.mark.parametrize("eps", ["0", "0/255", "-8/255", "-0.1"])
def test_eps_zero_or_negative_is_refused_for_train_and_eval(tmp_path, capsys, eps):
    refused(capsys, [*TRAIN, "--out", str(tmp_path / "runs"), "--eps", eps], "must lie in (0, 1]")
    refused(capsys, ["eval", "--checkpoint", "x.pt", "--eps", eps], "must lie in (0, 1]")


def test_eps_zero_is_refused_for_threat_models_and_attacks():
    with pytest.raises(ConfigError, match="eps 0 attacks nothing"):
        ThreatModel(eps=0)
    with pytest.raises(ConfigError, match="eps 0 attacks nothing"):
        ro.evaluate(torch.nn.Flatten(), make_synthetic(8, 8, seed=0), attacks=["pgd-2(eps=0)"], n=8)


def test_one_class_is_no_classification(capsys):
    split = Split(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(DataError, match="1 class"):
        DataSet("one-folder", split, split, ["cats"])
    with pytest.raises(ConfigError, match=">= 2"):
        ro.check_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 1)), num_classes=1)
    refused(capsys, ["check-model", "--model", "vit_tiny", "--num-classes", "1"], ">= 2")


def test_a_batch_larger_than_the_data_is_refused_when_asked_and_recorded_when_lowered(tmp_path):
    data = make_synthetic(24, 8, seed=0)
    with pytest.raises(ConfigError, match="batch_size=64 exceeds the 24 training images"):
        ro.fit("vit_tiny", "natural", data, epochs=1, batch_size=64, device="cpu", quiet=True)
    with pytest.raises(ConfigError, match="eval_n=100 exceeds the 8 held-out images"):
        ro.fit("vit_tiny", "natural", data, epochs=1, eval_every=1, eval_n=100, device="cpu", quiet=True)
    result = ro.fit("vit_tiny", "natural", data, epochs=1, eval_every=1, device="cpu", quiet=True,
                    out_dir=tmp_path / "run")
    assert (result.run.train.batch_size, result.run.train.eval_n) == (24, 8)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "batch_size 256 (not asked for) exceeds the 24 training images: using 24" in log
    assert '"batch_size": 24' in (tmp_path / "run" / "config.json").read_text()


def test_a_mistyped_robustode_data_is_refused_as_a_mistyped_data_dir_is(tmp_path, monkeypatch, capsys):
    typo = tmp_path / "robustode-dta"
    monkeypatch.setenv("ROBUSTODE_DATA", str(typo))
    with pytest.raises(DataError, match=r"from \$ROBUSTODE_DATA\) does not exist"):
        load_dataset("synthetic")
    refused(capsys, [*TRAIN, "--out", str(tmp_path / "runs")], "$ROBUSTODE_DATA")
    assert not typo.exists() and not (tmp_path / "runs").exists()
    assert len(load_dataset("synthetic", data_dir=tmp_path).train) > 0  # --data-dir still wins over it


def test_an_evaluation_batch_larger_than_n_records_the_batch_used():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    result = ro.evaluate(model, make_synthetic(8, 8, seed=0), attacks=["pgd-1"], n=8, batch_size=256,
                         masking_checks=False, quiet=True, escalate=False)
    assert result.batch_size == 8


def test_free_m_rounded_up_to_whole_data_epochs_records_and_logs_the_epochs_run(tmp_path):
    data = make_synthetic(16, 8, seed=0)
    result = ro.fit("vit_tiny", "free-2", data, epochs=3, batch_size=8, device="cpu", quiet=True,
                    out_dir=tmp_path / "run")
    assert result.nominal_epochs == 4  # 2 data epochs of 2 replays, not the 3 asked
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epochs 3 is no multiple of the defense's 2 replays per minibatch: 2 data epochs run 4 nominal epochs" in log
