"""bench/throughput.py, step_cost.py and time_to_robust.py at toy sizes on the CPU: rows, JSON, records, exact FLOPs."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from robustode.models import create
from robustode.records import load_records

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import cpu_timing
import profile_pair
import step_cost
import throughput
import time_to_robust

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one CPU thread per module


def forward_flops(module, x) -> float:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / len(x)


@pytest.fixture(scope="module")
def throughput_report(one_thread, tmp_path_factory):
    out = tmp_path_factory.mktemp("throughput") / "report.json"
    argv = ["--models", "resnet20", "--defenses", "natural,pgd-2,free-2", "--batch-size", "8", "--steps", "2",
            "--device", "cpu", "--json", str(out)]
    return throughput.main(argv), json.loads(out.read_text())


def test_throughput_writes_one_row_per_pair_with_consistent_numbers(throughput_report, capsys):
    report, saved = throughput_report
    assert saved == json.loads(json.dumps(report))
    assert [(r["model"], r["defense"]) for r in saved["rows"]] == [("resnet20", s) for s in ("natural", "pgd-2", "free-2")]
    assert [r["passes_per_image"] for r in saved["rows"]] == [1.0, 3.0, 2.0]
    for r in saved["rows"]:
        assert r["images_per_s"] > 0 and r["batch_size"] == 8 and r["precision"] == "float32"
        assert r["epoch_s"] == pytest.approx(50_000 / r["images_per_s"])
        assert r["step_ms"] == pytest.approx(8000 / r["images_per_s"])
        assert r["tflops"] == pytest.approx(r["gflop_per_image"] * r["images_per_s"] / 1000)
        assert r["peak_fraction"] is None  # a CPU has no bf16 peak in the table
    natural = saved["rows"][0]
    assert natural["vs_natural"] == 1.0
    assert saved["rows"][1]["vs_natural"] == pytest.approx(saved["rows"][1]["epoch_s"] / (3 * natural["epoch_s"]))
    assert saved["device"].startswith("CPU") and saved["torch"] == torch.__version__
    assert saved["command"].startswith("python bench/throughput.py --models resnet20")


def test_the_flop_count_sees_every_pass_and_no_weight_gradient_in_attack_steps(throughput_report):
    _, saved = throughput_report
    model, x = create("resnet20"), torch.rand(4, 3, 32, 32)
    full, stem = forward_flops(model, x), forward_flops(model.stem, x)
    flops = {r["defense"]: r["gflop_per_image"] * 1e9 for r in saved["rows"]}
    assert flops["natural"] == pytest.approx(3 * full - stem)  # no input gradient through the first conv
    assert flops["pgd-2"] == pytest.approx(flops["natural"] + 2 * 2 * full)  # attack step: forward + input grads
    assert flops["free-2"] == pytest.approx(2 * 3 * full)  # each replay also takes the input gradient


def test_the_peak_is_looked_up_by_card_name():
    assert throughput.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert throughput.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert throughput.peak_tflops("NVIDIA H200") == 989.0
    assert throughput.peak_tflops("Radeon") is None


def test_time_to_robust_writes_records_html_and_stops_at_the_budget(tmp_path):
    records, html, out = tmp_path / "records", tmp_path / "report.html", tmp_path / "ttr.json"
    argv = ["--model", "resnet20", "--dataset", "synthetic", "--train-subset", "32", "--defenses", "natural,yopo-2-1",
            "--epochs", "natural=2,yopo-2-1=1", "--batch-size", "16", "--n", "4", "--device", "cpu",
            "--budget-seconds", "1e-6", "--records", str(records), "--html", str(html), "--json", str(out)]
    report = time_to_robust.main(argv)
    rows = {r["defense"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["natural", "yopo-2-1"]
    assert (rows["natural"]["epochs"], rows["natural"]["planned_epochs"]) == (1, 2)  # the budget stopped it
    assert "time budget" in rows["natural"]["stopped"] and rows["yopo-2-1"]["stopped"] is None
    assert rows["yopo-2-1"]["lr"] == pytest.approx(0.2)  # not in RECIPES: the default recipe
    saved = {r.defense.spec: r for r in load_records(records)}
    assert set(saved) == {"natural", "yopo-2-1"}
    for spec, record in saved.items():
        assert record.evaluation.n == 4 == rows[spec]["n"] and record.dataset.kind == "synthetic"
        assert record.training.seconds == rows[spec]["train_seconds"]
        assert record.evaluation.pgd20_acc == rows[spec]["pgd20"] and record.training.batch_size == 16
    assert html.is_file() and "yopo-2-1" in html.read_text()
    assert report["targets"]["fastest_to_45"] is None or report["targets"]["fastest_to_45"]["pgd20"] >= 0.45


def test_the_targets_are_read_off_the_rows():
    rows = [{"defense": "fgsm-rs", "pgd20": 0.46, "train_seconds": 25.0},
            {"defense": "free-8", "pgd20": 0.47, "train_seconds": 20.0},
            {"defense": "pgd-10", "pgd20": 0.48, "train_seconds": 120.0},
            {"defense": "yopo-5-3", "pgd20": 0.472, "train_seconds": 39.0}]
    t = time_to_robust.targets(rows)
    assert t["fastest_to_45"] == {"defense": "free-8", "train_seconds": 20.0, "pgd20": 0.47, "met": True}
    assert t["yopo_vs_pgd10"]["pgd20_gap"] == pytest.approx(0.008)
    assert t["yopo_vs_pgd10"]["time_ratio"] == pytest.approx(0.325) and t["yopo_vs_pgd10"]["met"]
    rows[3]["train_seconds"] = 41.0
    assert not time_to_robust.targets(rows)["yopo_vs_pgd10"]["met"]


def test_epoch_overrides():
    assert time_to_robust.epochs_overrides("12") == {"*": 12}
    assert time_to_robust.epochs_overrides("yopo-5-3=10,pgd-10=15") == {"yopo-5-3": 10, "pgd-10": 15}
    assert time_to_robust.epochs_overrides(None) == {}


def test_step_cost_times_yopo_outside_its_full_passes_on_the_path_asked(tmp_path):
    out = tmp_path / "fraction.json"
    argv = ["--models", "resnet20", "--defenses", "yopo-2-1,yopo-1-2", "--paths", "closed-form,autograd",
            "--batch-size", "4", "--steps", "2", "--warmup", "0", "--device", "cpu", "--json", str(out)]
    report = step_cost.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [(r["defense"], r["path"]) for r in report["rows"]] == [
        ("yopo-2-1", "closed-form"), ("yopo-2-1", "autograd"), ("yopo-1-2", "closed-form"), ("yopo-1-2", "autograd")]
    for r in report["rows"]:
        assert 0 < r["outside_ms"] < r["step_ms"] and r["steps"] == 2
        assert r["outside_fraction"] == pytest.approx(r["outside_ms"] / r["step_ms"])
    with pytest.raises(RuntimeError, match="asked for the closed-form path, the step took autograd"):
        step_cost.main(["--models", "wrn10_2", "--defenses", "yopo-1-1(nonlinear_layer_one=true)", "--batch-size",
                        "2", "--steps", "1", "--warmup", "0", "--device", "cpu"])


def test_step_cost_ratio_is_the_median_of_its_pairs():
    argv = ["--mode", "ratio", "--models", "resnet20", "--defenses", "natural,pgd-1,free-2,natural-x2",
            "--batch-size", "4",
            "--steps", "1", "--pairs", "3", "--warmup", "0", "--device", "cpu"]
    rows = step_cost.main(argv)["rows"]
    assert [(r["defense"], r["path"], r["passes"], len(r["pairs"])) for r in rows] == [
        ("natural", "-", 1, 3), ("pgd-1", "-", 2, 3), ("free-2", "-", 2, 3), ("natural-x2", "-", 2, 3)]
    for r in rows:
        assert r["vs_natural"] == sorted(r["pairs"])[1] > 0


def test_step_cost_ratio_runs_each_path_of_a_defense_that_has_two():
    argv = ["--mode", "ratio", "--models", "resnet20", "--defenses", "grad-align,natural", "--paths",
            "closed-form,autograd", "--batch-size", "2", "--steps", "1", "--pairs", "1", "--warmup", "0",
            "--device", "cpu"]
    rows = step_cost.main(argv)["rows"]
    assert [(r["defense"], r["path"]) for r in rows] == [("grad-align", "closed-form"), ("grad-align", "autograd"),
                                                         ("natural", "-")]


def test_step_cost_interleaves_a_natural_step_after_each_forward_and_takes_it_out(monkeypatch):
    device = torch.device("cpu")
    natural = step_cost.Runner("resnet20", "natural", 2, step_cost.Clock(device))
    run = step_cost.Runner("resnet20", "free-2", 2, step_cost.Clock(device))
    real = natural.defense.train_step

    def slow_natural(*args):  # a natural step far slower than the defense's tiny replays
        time.sleep(0.15)
        return real(*args)

    monkeypatch.setattr(natural.defense, "train_step", slow_natural)
    step_cost.interleaved(natural, run, pairs=1)  # warm-up: a fresh process's first step pays one-off costs
    timed = step_cost.interleaved(natural, run, pairs=3)
    # One natural step first, then one after each of Free's 2 replays in each of the 3 pairs.
    assert len(timed["natural"]) == 1 + 3 * 2 and min(timed["natural"]) >= 0.15
    # The defense's own time leaves the 2 x 0.15 s of natural steps run inside its step out.
    assert max(timed["own"]) < 0.15
    for seconds, ratio, i in zip(timed["own"], timed["ratios"], range(3)):
        reference = statistics.mean(timed["natural"][2 * i: 2 * i + 3])  # the step before and the 2 inside
        assert ratio == pytest.approx(seconds / (2 * reference))
    with pytest.raises(ValueError, match="clocks of their own"):
        step_cost.interleaved(natural, step_cost.Runner("resnet20", "free-2", 2, natural.clock), pairs=1)


@pytest.mark.parametrize("spec, forwards", [("pgd-2", 3), ("yopo-2-3", 2), ("fgsm-rs", 2), ("natural-x3", 3)])
def test_step_cost_runs_one_natural_step_per_forward_of_the_defense(spec, forwards):
    device = torch.device("cpu")
    natural = step_cost.Runner("resnet20", "natural", 2, step_cost.Clock(device))
    run = step_cost.Runner("resnet20", spec, 2, step_cost.Clock(device))
    timed = step_cost.interleaved(natural, run, pairs=2)
    # PGD-2: two attack steps and the training pass; YOPO-2-3: its 2 full passes (the inner steps stop at
    # layer one); FGSM-RS: the attack step and the training pass; the bench's A/A row natural-x3: 3 steps.
    assert len(timed["natural"]) == 1 + 2 * forwards
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in run.model.modules())  # the hooks are gone after


def test_profile_pair_sets_one_defense_step_against_its_passes_of_natural_steps(capsys):
    out = profile_pair.main(["--model", "resnet20", "--defense", "free-2", "--batch-size", "4", "--pairs", "3",
                             "--device", "cpu"])
    assert out["passes"] == 2 and len(out["ratios"]) == 3 and out["median"] == sorted(out["ratios"])[1]
    assert all(0 < r < 10 for r in out["ratios"])
    # Free's replays need the input's gradient, natural training does not: only the defense clamps the input.
    assert out["natural_ms"].get("aten::clamp", 0) == 0 < out["defense_ms"]["aten::clamp"]
    assert "interleaved at every forward, no profiler" in capsys.readouterr().out


def test_cpu_timing_drift_and_stem_routes():
    rows = cpu_timing.drift(blocks=(1, 3), size=16, work=12, least=8)
    assert [r["block"] for r in rows] == [1, 3]
    for r in rows:
        assert r["mean_s"] > 0 and r["cv"] >= 0 and -1 <= r["lag1"] <= 1 and 0 < r["adjacent_q1"] <= r["adjacent_q3"]
    ms = cpu_timing.stem(batch=2, repeats=2)  # raises if a route's input gradient differs from conv_transpose2d's
    assert len(ms) == 8 and all(v > 0 for v in ms.values())
    for layer in ("bn", "conv", "relu"):  # raises if the closed form's gradients differ from torch's
        ms = cpu_timing.double_backward(layer, batch=2, channels=2, size=4, repeats=2)
        assert list(ms) == ["forward and backward", "penalty, torch's double backward",
                            "penalty, closed-form double backward"] and all(v > 0 for v in ms.values())


def test_step_cost_shows_many_pairs_as_quartiles():
    assert step_cost.pairs_cell([1.0, 1.1, 0.9]) == "1.000 1.100 0.900"
    assert step_cost.pairs_cell([1.0 + i / 100 for i in range(11)]) == \
        "quartiles 1.020-1.080, range 1.000-1.100 (11 pairs)"
