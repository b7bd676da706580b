"""The corruptions threat model: the released CIFAR-10-C layout (a tiny folder written here), exact accuracies
per corruption and severity, the mean and its interval, bad folders, the API, the CLI and its own table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robustode as ro
from robustode.cli import main
from robustode.data import DataSet
from robustode.data.corruptions import CORRUPTIONS, load_corruptions
from robustode.data.types import Split
from robustode.errors import ConfigError, DataError
from robustode.records import load_records
from robustode.report import render_markdown
from robustode.threat import ThreatModel, corruption_grid

pytestmark = pytest.mark.usefixtures("one_thread")

PER = 6  # images per severity
LABELS = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)


class PixelReader(nn.Module):
    """Predicts the class written in the image: its mean pixel value (0-255) modulo 10."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot((x.mean((1, 2, 3)) * 255).round().long() % 10, 10).float() + 0 * self.unused


def right_in_cell(i: int, s: int) -> int:
    """How many of a cell's images carry their own label: differs by corruption and severity."""
    return (i + s) % (PER + 1)


def write_folder(root, per=PER, size=32, drop=None, labels=None):
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "labels.npy", np.tile(LABELS, 5) if labels is None else labels)
    for i, c in enumerate(CORRUPTIONS):
        if c == drop:
            continue
        images = np.zeros((5 * per, size, size, 3), dtype=np.uint8)
        for s in range(1, 6):
            for j in range(per):
                k = right_in_cell(i, s)
                images[(s - 1) * per + j] = LABELS[j] if j < k else LABELS[j] + 1
        np.save(root / f"{c}.npy", images)
    return root


def clean_set() -> DataSet:
    images = torch.from_numpy(np.repeat(LABELS, 3 * 32 * 32).reshape(PER, 3, 32, 32))
    labels = torch.from_numpy(LABELS.astype(np.int64))
    return DataSet("clean", Split(images, labels), Split(images, labels), [str(i) for i in range(10)], "custom", "test")


def test_accuracy_per_cell_the_mean_and_its_interval_are_exact(tmp_path):
    root = write_folder(tmp_path / "CIFAR-10-C")
    result = ro.evaluate(PixelReader(), f"cifar10c:{root}", threat="corruptions", clean=clean_set(), quiet=True)
    expected = {f"{c}-{s}": right_in_cell(i, s) / PER for i, c in enumerate(CORRUPTIONS) for s in range(1, 6)}
    assert {k: v for k, v in result.robust.items() if k != "corruptions"} == expected
    assert result.clean_acc == 1.0
    assert result.robust["corruptions"] == pytest.approx(sum(expected.values()) / 75)
    per_image = torch.stack([result.per_point[k] for k in expected]).float().mean(0)
    half = 1.959963984540054 * per_image.std().item() / PER ** 0.5
    low, high = result.intervals["corruptions"]
    assert (low, high) == pytest.approx((max(0, per_image.mean().item() - half), per_image.mean().item() + half))
    assert list(corruption_grid(result.robust)) == list(CORRUPTIONS)
    assert ro.evaluate(PixelReader(), f"cifar10c:{root}", threat=ThreatModel.corruptions(), clean=clean_set(),
                       n=2, quiet=True).n == 2


def test_the_progress_line_counts_the_cells_done(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBUSTODE_PROGRESS_SECONDS", "0")  # a line at every update
    root = write_folder(tmp_path / "CIFAR-10-C")
    ro.evaluate(PixelReader(), f"cifar10c:{root}", threat="corruptions", clean=clean_set(), n=2, quiet=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("CIFAR-10-C, 2 images per cell:")]
    counts = [line.split(": ")[1].split()[0] for line in lines]
    assert counts == [f"{k}/76" for k in range(1, len(counts) + 1)] and len(counts) >= 75  # one more per cell


def test_bad_folders_name_the_file(tmp_path):
    with pytest.raises(DataError, match="fog.npy is missing"):
        load_corruptions(f"cifar10c:{write_folder(tmp_path / 'a', drop='fog')}")
    with pytest.raises(DataError, match="labels.npy has 31 labels"):
        load_corruptions(f"cifar10c:{write_folder(tmp_path / 'b', labels=np.zeros(31, np.uint8))}")
    with pytest.raises(DataError, match="labels.npy has 25 labels but .*shot_noise.npy 30 images"):
        load_corruptions(f"cifar10c:{write_folder(tmp_path / 'c', labels=np.zeros(25, np.uint8))}")
    with pytest.raises(DataError, match="shot_noise.npy holds uint8 images of shape \\(28, 28, 3\\)"):
        load_corruptions(f"cifar10c:{write_folder(tmp_path / 'd', size=28)}")
    with pytest.raises(DataError, match="cifar10c:PATH or cifar100c:PATH"):
        load_corruptions(f"cifar10x:{tmp_path}")
    with pytest.raises(DataError, match="does not exist"):
        load_corruptions(f"cifar100c:{tmp_path / 'none'}")


def test_the_threat_model_has_no_budget():
    assert ThreatModel.corruptions().describe() == "common corruptions" and not ThreatModel.corruptions().adversarial
    with pytest.raises(ConfigError, match="no budget"):
        ThreatModel(norm="corruptions", eps=8 / 255)
    with pytest.raises(ConfigError, match="needs a budget"):
        ThreatModel(norm="linf", eps=None)


@pytest.mark.usefixtures("data_dir")  # synthetic data written there
def test_cli_record_and_its_own_leaderboard_table(tmp_path, capsys):
    root = write_folder(tmp_path / "CIFAR-10-C")
    torch.manual_seed(0)
    torch.save(ro.create_model("dm_wrn10_1").state_dict(), tmp_path / "w.pt")
    common = ["--robustbench", "dm_wrn10_1", "--checkpoint", str(tmp_path / "w.pt"), "--dataset", "synthetic",
              "--device", "cpu", "--quiet", "--records", str(tmp_path / "records")]
    assert main(["eval", *common, "--corruptions", f"cifar10c:{root}", "--n", "4"]) == 0
    assert "fog" in capsys.readouterr().out
    assert main(["eval", *common, "--n", "4", "--attacks", "pgd-1", "--no-masking-checks"]) == 0
    records = load_records(tmp_path / "records")
    assert sorted(r.evaluation.norm for r in records) == ["corruptions", "linf"]
    text = render_markdown(records)
    linf, corruptions = text.index("L∞ eps 8/255 ·"), text.index("CIFAR-10-C · dm_wrn10_1 · common corruptions")
    assert linf < corruptions  # one table each, L-inf first
    assert text[corruptions:].count("| robustbench:dm_wrn10_1 |") == 1 and "Severity 5" in text[corruptions:]
    assert "Severity 5" not in text[:corruptions]
    assert "common corruptions (15 corruptions × 5 severities of cifar10c, the first 4 images" in text


@pytest.mark.usefixtures("data_dir")
def test_a_robustode_checkpoint_on_the_corruptions_keeps_its_training_facts(tmp_path):
    root = write_folder(tmp_path / "CIFAR-10-C")
    assert main(["train", "--model", "dm_wrn10_1", "--defense", "natural", "--epochs", "1", "--dataset", "synthetic",
                 "--train-subset", "64", "--batch-size", "32", "--n", "8", "--no-masking-checks", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").iterdir())
    record = ro.evaluate_corruptions(run / "checkpoints" / "last.pt", f"cifar10c:{root}", "synthetic", n=4,
                                     quiet=True).record
    assert (record.evaluation.norm, record.evaluation.n, record.dataset.name) == ("corruptions", 4, "cifar10c")
    assert record.training.epochs == 1 and record.dataset.n_train == 64 and record.defense.spec == "natural"
    cells = record.evaluation.attack_settings["corruptions"]  # typed: the record's one "attack"
    assert (cells.data, cells.corruptions, cells.severities, cells.per_severity) == (f"cifar10c:{root}",
                                                                                      list(CORRUPTIONS), 5, PER)
    with pytest.raises(ConfigError, match="needs|belong to a RobustBench entry"):
        ro.evaluate_corruptions(run / "checkpoints" / "last.pt", f"cifar10c:{root}", "synthetic", published="x.json")
