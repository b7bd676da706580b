"""Hand-made records for the record and report tests (no training needed)."""

from __future__ import annotations

from robustode.records import make_record


def demo_record(*, defense="pgd-10", clean=0.87, pgd20=0.47, seconds=600.0, aa=None, aa_standard=True,
                dataset="cifar10", kind="real", model="wrn34_10", device="NVIDIA H200", seed=0,
                date="2025-01-02T03:04:05+00:00", label=None):
    """A valid record; the keywords cover what the report tests vary."""
    robust = {"pgd-20": pgd20} if aa is None else {"pgd-20": pgd20, "autoattack": aa}
    return make_record(
        model={"name": model, "params": 46_160_474},
        defense={"spec": defense, "name": defense.split("-")[0],
                 "hyperparameters": {"eps": 8 / 255, "alpha": 2 / 255, "steps": 10}},
        dataset={"name": dataset, "kind": kind, "n_train": 50_000, "n_test": 10_000, "num_classes": 10,
                 "source": "/data/" + dataset},
        training={"epochs": 105, "batch_size": 128, "seed": seed, "seconds": seconds,
                  "images_per_second": 105 * 50_000 / seconds, "passes_per_image": 11.0,
                  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                "schedule": "piecewise"}},
        evaluation={"n": 10_000, "norm": "linf", "eps": 8 / 255, "clean_acc": clean, "pgd20_acc": pgd20,
                    "autoattack_acc": aa, "autoattack_standard": aa_standard and aa is not None,
                    "robust": robust, "attack_settings": {"pgd-20": {"alpha": 2 / 255, "steps": 20}},
                    "seconds": 42.5, "flags": {"zero_grad_fraction": 0.0}},
        provenance={"robustode_version": "0.1.0", "git_commit": "abc123", "torch_version": "2.11.0",
                    "device": device, "device_type": "cuda", "precision": "bf16", "date": date},
        label=label, command="robustode train --model wrn34_10")
