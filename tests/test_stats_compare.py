"""Intervals against known values, the exact McNemar test on constructed pairs, compare and combine of
records with per-example results, and a schema-1 record's intervals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from robustode.cli import main
from robustode.errors import RecordError
from robustode.records import (
    SCHEMA_VERSION,
    combine,
    compare,
    load_record,
    load_record_points,
    make_record,
    save,
)
from robustode.stats import clopper_pearson, mcnemar_exact, wilson

N = 100


def test_wilson_interval_at_zero_half_and_all():
    assert wilson(0, N) == pytest.approx((0.0, 0.036994), abs=1e-6)  # z^2 / (n + z^2)
    assert wilson(50, N) == pytest.approx((0.403832, 0.596168), abs=1e-6)
    assert wilson(N, N) == pytest.approx((0.963006, 1.0), abs=1e-6)
    lo, hi = wilson(450, 1000)
    assert lo < 0.45 < hi and hi - lo == pytest.approx(0.0616, abs=2e-4)  # about 2 x 1.96 x sqrt(p q / n)


def test_clopper_pearson_is_exact_and_wider():
    assert clopper_pearson(0, N) == pytest.approx((0.0, 1 - 0.025 ** (1 / N)), abs=1e-9)
    assert clopper_pearson(N, N) == pytest.approx((0.025 ** (1 / N), 1.0), abs=1e-9)
    cp, w = clopper_pearson(30, N), wilson(30, N)
    assert cp[0] < w[0] and cp[1] > w[1]


@pytest.mark.parametrize(("b", "c", "p"), [(0, 0, 1.0), (10, 0, 2 / 2**10), (5, 5, 1.0), (7, 2, 92 / 512),
                                           (2, 7, 92 / 512)])
def test_mcnemar_exact_on_known_counts(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)


def record_with_points(folder: Path, name: str, correct: torch.Tensor, *, n: int = 80, eps: float = 8 / 255,
                       attack: str = "pgd-20", seed: int = 0):
    """A record whose per-example file says which of n points are robust (all are correct clean)."""
    acc = correct.float().mean().item()
    record = make_record(
        model={"name": "resnet20", "params": 1},
        defense={"spec": "pgd-3", "name": "pgd", "single_step": False},
        dataset={"name": "synthetic", "kind": "synthetic", "n_train": 64, "n_test": n, "num_classes": 10},
        training={"epochs": 1, "batch_size": 8, "seed": seed, "seconds": 1.0, "images_per_second": 64.0,
                  "passes_per_image": 4.0},
        evaluation={"n": n, "norm": "linf", "eps": eps, "clean_acc": 1.0, "pgd20_acc": acc, "robust": {attack: acc},
                    "worst_case_acc": acc},
        provenance={"robustode_version": "0.2", "git_commit": None, "torch_version": "2", "device": "CPU",
                    "device_type": "cpu", "precision": "float32", "date": "2026-12-01T00:00:00+00:00"})
    points = {"clean": torch.ones(n, dtype=torch.bool), attack: correct, "worst_case": correct}
    path = save(record, folder / f"{name}.json", points=points)
    return load_record(path)


def test_compare_counts_the_discordant_points_and_tests_them(tmp_path):
    a = torch.zeros(80, dtype=torch.bool)
    a[:60] = True  # A: points 0-59
    b = torch.zeros(80, dtype=torch.bool)
    b[:50] = True
    b[60:65] = True  # B: points 0-49 and 60-64
    rows = {r.metric: r for r in compare(record_with_points(tmp_path, "a", a), record_with_points(tmp_path, "b", b))}
    assert list(rows) == ["clean", "pgd-20", "worst_case"]
    pgd = rows["pgd-20"]
    assert (pgd.only_a, pgd.only_b) == (10, 5) and (pgd.a, pgd.b) == (60 / 80, 55 / 80)
    assert pgd.p_value == pytest.approx(2 * sum(math.comb(15, i) for i in range(6)) / 2**15)
    assert not pgd.significant and rows["clean"].p_value == 1.0


def test_compare_refuses_other_points_and_missing_or_changed_files(tmp_path):
    a = record_with_points(tmp_path, "a", torch.ones(80, dtype=torch.bool))
    other_eps = record_with_points(tmp_path, "b", torch.ones(80, dtype=torch.bool), eps=4 / 255)
    with pytest.raises(RecordError, match="not evaluated on the same points: eps"):
        compare(a, other_eps)
    points = tmp_path / a.evaluation.per_example["file"]
    points.write_bytes(points.read_bytes()[:-3] + b"xyz")
    with pytest.raises(RecordError, match="do not match the sha256"):
        load_record_points(a)


def test_robustode_compare_prints_the_p_value(tmp_path, capsys):
    a = torch.zeros(80, dtype=torch.bool)
    a[:40] = True
    b = torch.zeros(80, dtype=torch.bool)
    b[:20] = True
    record_with_points(tmp_path, "a", a)
    record_with_points(tmp_path, "b", b)
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("the same 80 points of synthetic, L-inf eps 8/255")  # threat.describe
    pgd = next(line for line in out.splitlines() if "pgd-20" in line)
    assert pgd.split() == ["pgd-20", "50.00%", "25.00%", "+25.00", "20", "0", f"{mcnemar_exact(20, 0):.3g}", "yes"]


def test_combine_takes_the_worst_case_per_point_over_evaluations(tmp_path):
    first = torch.zeros(80, dtype=torch.bool)
    first[:60] = True
    second = torch.zeros(80, dtype=torch.bool)
    second[10:70] = True
    a = record_with_points(tmp_path, "a", first)
    b = record_with_points(tmp_path, "b", second, attack="autoattack")
    merged = combine([a, b])
    assert set(merged.record.evaluation.robust) == {"pgd-20", "autoattack"}
    assert merged.record.evaluation.worst_case_acc == 50 / 80  # points 10-59
    assert torch.equal(merged.points["worst_case"], first & second)
    saved = load_record(save(merged.record, tmp_path / "merged.json", points=merged.points))
    assert torch.equal(torch.as_tensor(load_record_points(saved)["worst_case"]), first & second)
    with pytest.raises(RecordError, match="different runs"):
        combine([a, record_with_points(tmp_path, "c", first, seed=1)])


def test_a_schema_1_record_gets_wilson_intervals_from_n_and_its_accuracies():
    record = load_record(Path(__file__).parent / "fixtures" / "record_v1.json")
    ev = record.evaluation
    assert record.schema_version == SCHEMA_VERSION
    assert ev.intervals["clean"] == list(wilson(round(ev.clean_acc * 500), 500))
    assert ev.intervals["pgd-20"][0] < ev.pgd20_acc < ev.intervals["pgd-20"][1]
