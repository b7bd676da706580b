"""``robustode demo`` at its tiniest: vit_tiny, one epoch on 64 synthetic images."""

from __future__ import annotations

import pytest

from robustode.cli import main
from robustode.cli.demo import pick_dataset
from robustode.data import cifar10_jpeg
from robustode.records import load_records

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TINY = ["--dataset", "synthetic", "--model", "vit_tiny", "--epochs", "1", "--train-subset", "64", "--n", "16"]


def test_demo_trains_both_defenses_and_shows_the_leaderboard(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", *TINY, "--out", str(out)]) == 0
    records = load_records(out / "records")
    assert sorted(r.defense.spec for r in records) == ["natural", "yopo-5-3"]
    for record in records:
        assert (record.label, record.model.name, record.dataset.name) == ("demo", "vit_tiny", "synthetic")
        assert (record.training.epochs, record.dataset.n_train, record.evaluation.n) == (1, 64, 16)
        assert (out / f"vit_tiny-{record.defense.spec}" / "record.json").is_file()
    printed = capsys.readouterr().out
    assert "# robustode leaderboard" in printed
    assert "| yopo-5-3 (demo) |" in printed and "| natural (demo) |" in printed
    assert "<html" in (out / "leaderboard.html").read_text().lower()


def test_demo_refuses_a_folder_that_holds_an_earlier_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "records").mkdir(parents=True)
    assert main(["demo", *TINY, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustode demo: error:") and "not empty" in err and "\n" not in err


def test_demo_falls_back_to_the_synthetic_set_without_the_cifar10_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10_jpeg, "candidate_dirs", lambda data_dir: [tmp_path])
    data, why = pick_dataset(None, tmp_path)
    assert data.name == "synthetic" and "cifar10-jpeg.tar.gz was not found" in why
    data, why = pick_dataset("synthetic", tmp_path)
    assert data.kind == "synthetic" and why is None
