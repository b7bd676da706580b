"""Adversarial training buys robustness on real images (the CIFAR-10 JPEG copy).

Slow: 18 min on the shared, loaded 2-core machine (2026-11-27); run with ``python -m pytest -m slow``.
"""

from __future__ import annotations

import pytest

from robustode.data import load_dataset
from robustode.api import evaluate
from robustode.api import fit

pytestmark = pytest.mark.slow


def test_pgd3_training_beats_natural_under_pgd20(cifar10_jpeg_tar, tmp_path):
    data = load_dataset("cifar10-jpeg", data_dir=tmp_path, train_subset=4000, test_subset=500)
    robust = {}
    for spec in ("natural", "pgd-3"):
        result = fit("resnet20", spec, data, epochs=4, batch_size=128, lr=0.05, schedule="constant",
                     seed=0, device="cpu", quiet=True)
        ev = evaluate(result.model, data, attacks=("pgd-20",), device="cpu", quiet=True, masking_checks=False)
        robust[spec] = ev.robust["pgd-20"]
        assert ev.clean_acc > 0.2, f"{spec} did not learn: clean {ev.clean_acc:.3f}"
    assert robust["pgd-3"] > robust["natural"] + 0.05, robust
