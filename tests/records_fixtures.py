"""Hand-made records for the record and report tests (no training needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robustode.defenses import defenses
from robustode.records import load_record, make_record, record_filename, save_new
from robustode.specs import parse_spec
from robustode.stats import wilson


def demo_record(*, defense="pgd-10", single_step=None, clean=0.87, pgd20=0.47, seconds=600.0, aa=None,
                aa_standard=True, dataset="cifar10", kind="real", model="wrn34_10", device="NVIDIA H200",
                seed=0, date="2025-01-02T03:04:05+00:00", label=None, n_train=50_000, n=10_000, eps=8 / 255,
                epochs=105, lr=0.1, training=None, evaluation=None, commit="abc123"):
    """A valid record; the keywords cover what the report tests vary.

    ``single_step`` defaults to what run_record stores for ``defense``: its registered class's.
    ``training`` and ``evaluation`` add or replace fields of those sections (schema 2:
    curve, best_epoch, stop_kind, world_size, flops_per_image, intervals, worst_case_acc, ...).
    """
    robust = {"pgd-20": pgd20} if aa is None else {"pgd-20": pgd20, "autoattack": aa}
    # As the evaluator writes them: a 95% Wilson interval for clean and each attack (a value the record
    # refuses, such as NaN, gets none, so that the record's own check reports it).
    intervals = {k: list(wilson(round(acc * n), n)) for k, acc in {"clean": clean, **robust}.items()
                 if isinstance(acc, (int, float)) and 0 <= acc <= 1}
    return make_record(
        model={"name": model, "params": 46_160_474},
        defense={"spec": defense, "name": defense.split("-")[0],
                 "single_step": class_single_step(defense) if single_step is None else single_step,
                 "hyperparameters": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}},
        dataset={"name": dataset, "kind": kind, "n_train": n_train, "n_test": 10_000, "num_classes": 10,
                 "source": "/data/" + dataset},
        training={"epochs": epochs, "batch_size": 128, "seed": seed, "seconds": seconds,
                  "images_per_second": epochs * n_train / seconds, "passes_per_image": 11.0,
                  "optimizer": {"lr": lr, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "multistep",
                                "milestones": [], "gamma": 0.1, "momentum_min": None},
                  **(training or {})},
        evaluation={"n": n, "norm": "linf", "eps": eps, "clean_acc": clean, "pgd20_acc": pgd20,
                    "autoattack_acc": aa, "autoattack_standard": aa_standard and aa is not None,
                    "robust": robust, "attack_settings": {"pgd-20": {"alpha": 2 / 255, "steps": 20}},
                    "seconds": 42.5, "flags": {"zero_grad_fraction": 0.0}, "intervals": intervals,
                    **(evaluation or {})},
        provenance={"robustode_version": "0.1.0", "git_commit": commit, "torch_version": "2.11.0",
                    "device": device, "device_type": "cuda", "precision": "bf16", "date": date},
        label=label, command="robustode train --model wrn34_10")


def class_single_step(spec: str) -> bool:
    return defenses.lookup(parse_spec(spec, "defense")[0]).single_step


def correct(n: int, right: int, start: int = 0) -> np.ndarray:
    """A per-point array of ``n`` points: ``right`` of them correct, starting at index ``start``."""
    out = np.zeros(n, dtype=bool)
    out[start:start + right] = True
    return out


def saved_record(folder: Path, clean: np.ndarray, pgd20: np.ndarray, **keywords):
    """A record whose accuracies are those of its per-example arrays, saved with them in ``folder`` and
    read back (so it knows its file, as the leaderboard's records do)."""
    points = {"clean": clean, "pgd-20": pgd20 & clean, "worst_case": pgd20 & clean}
    record = demo_record(clean=float(clean.mean()), pgd20=float(points["pgd-20"].mean()), n=len(clean),
                         **keywords)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / record_filename(record)
    return load_record(save_new(record, path, points=points))
