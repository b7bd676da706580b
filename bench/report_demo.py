"""Demo records for looking at the HTML leaderboard: made up, never written to leaderboard/records.

Two tables. CIFAR-10 holds the seed talk's figures (docs/published.md; one run each, no per-example
results: how older records look). The JPEG copy holds three seeds of PGD-10 and
FGSM-RS (one FGSM-RS seed stopped by its overfitting guard) and one natural run,
each with a training curve, per-example results (so rows get McNemar p-values),
peak memory and counted FLOPs. The per-point results are drawn so that runs agree
on most points, as real runs do: one shared difficulty per test point, plus noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustode.defenses import defenses
from robustode.records import make_record, record_filename, save
from robustode.stats import wilson

# (method, clean, PGD-20, minutes): the seed talk's table (docs/published.md#the-seed-talks-table).
SEED_TALK = [("natural", 0.9503, 0.0, 233), ("pgd-3", 0.9007, 0.3918, 1134), ("pgd-5", 0.8965, 0.4385, 1574),
             ("pgd-10", 0.8730, 0.4704, 2713), ("free-8", 0.8629, 0.4700, 667), ("yopo-3-5", 0.8727, 0.4304, 299),
             ("yopo-5-3", 0.8670, 0.4798, 476)]
# (method, seed, clean, PGD-20, seconds, epochs run, guard fired): the JPEG copy, 15 planned epochs.
JPEG = [("pgd-10", 0, 0.723, 0.443, 123, 15, False), ("pgd-10", 1, 0.731, 0.437, 126, 15, False),
        ("pgd-10", 2, 0.718, 0.451, 121, 15, False), ("fgsm-rs", 0, 0.763, 0.420, 26.4, 15, False),
        ("fgsm-rs", 1, 0.771, 0.409, 25.9, 15, False), ("fgsm-rs", 2, 0.702, 0.331, 11.2, 6, True),
        ("natural", 0, 0.912, 0.0, 9.8, 15, False)]
N = 1000
PASSES = {"pgd-10": 11, "fgsm-rs": 2, "natural": 1}


def _record(spec: str, seed: int, clean: float, pgd: float, seconds: float, real: bool, **extra) -> object:
    training, n = extra.pop("training", {}), 10_000 if real else N
    intervals = {k: list(wilson(round(acc * n), n)) for k, acc in (("clean", clean), ("pgd-20", pgd))}
    return make_record(
        model={"name": "wrn34_10" if real else "preact_resnet18", "params": 1},
        defense={"spec": spec, "name": spec.split("-")[0], "single_step": defenses.lookup(spec).single_step},
        dataset={"name": "cifar10" if real else "cifar10-jpeg", "kind": "real" if real else "jpeg-copy",
                 "n_train": 50_000, "n_test": 10_000, "num_classes": 10},
        training={"epochs": 105 if real else 15, "batch_size": 128, "seed": seed, "seconds": seconds,
                  "images_per_second": 1.0, "passes_per_image": 1.0, **training},
        evaluation={"n": n, "norm": "linf", "eps": 8 / 255, "clean_acc": clean, "pgd20_acc": pgd,
                    "robust": {"pgd-20": pgd}, "intervals": intervals, **extra},
        provenance={"robustode_version": "demo", "git_commit": None if real else "0123456789abcdef+dirty",
                    "torch_version": "demo", "device": "seed talk GPU" if real else "NVIDIA H200",
                    "device_type": "cuda", "precision": "fp32" if real else "bf16",
                    "date": "2020-01-01T00:00:00+00:00" if real else f"2026-11-2{seed}T10:00:00+00:00"},
        label="demo")


def _points(spec: str, seed: int, clean: float, pgd: float) -> dict:
    """Per-point results with exactly these accuracies, correlated across runs through shared difficulty."""
    difficulty = np.random.default_rng(0).random(N)
    rng = np.random.default_rng([seed, len(spec), ord(spec[0])])
    ranks = np.argsort(difficulty + rng.normal(0, 0.15, N))
    right = np.zeros(N, dtype=bool)
    right[ranks[:round(clean * N)]] = True
    robust = np.zeros(N, dtype=bool)
    robust[ranks[:round(pgd * N)]] = True
    return {"clean": right, "pgd-20": robust & right, "worst_case": robust & right}


def _curve(clean: float, pgd: float, epochs: int, guard: bool) -> tuple[list[dict], int]:
    """Held-out accuracy every epoch: robust overfitting after the lr decay at epoch 10; a guard's collapse."""
    rows = []
    for e in range(1, epochs + 1):
        lr = 0.1 if e <= 10 else 0.01
        rise = min(1.0, e / 10)
        robust = pgd * (0.6 + 0.45 * rise) - (0.004 * (e - 11) if e > 11 else 0.0)
        if guard and e == epochs:
            robust = 0.02  # catastrophic overfitting: the guard stops the run here
        rows.append({"epoch": e, "nominal_epoch": e, "lr": lr, "loss": 2.0 - rise, "train_acc": 0.3 + 0.5 * rise,
                     "eval_clean": clean * (0.7 + 0.3 * rise), "eval_robust": max(0.0, robust)})
    best = max(rows, key=lambda r: r["eval_robust"])["epoch"]
    return rows, best


def demo_records(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for spec, clean, pgd, minutes in SEED_TALK:
        rec = _record(spec, 0, clean, pgd, minutes * 60, True)
        save(rec, folder / record_filename(rec))
    for spec, seed, clean, pgd, seconds, epochs, guard in JPEG:
        points = _points(spec, seed, clean, pgd)
        curve, best = _curve(clean, pgd, epochs, guard)
        stop = {"stop_kind": "guard", "stopped_early": "the overfitting guard fired"} if guard else {}
        training = {"epochs": epochs, "curve": curve, "best_epoch": best, "peak_memory_bytes": 5_300_000_000,
                    "flops_per_image": 0.56e9 * 3 * PASSES[spec], "passes_per_image": PASSES[spec] * epochs, **stop}
        rec = _record(spec, seed, float(points["clean"].mean()), float(points["pgd-20"].mean()), seconds, False,
                      training=training, worst_case_acc=float(points["worst_case"].mean()))
        save(rec, folder / record_filename(rec), points=points)
    return folder
