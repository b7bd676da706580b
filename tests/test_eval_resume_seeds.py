"""A killed evaluation resumes to the same per-point results; one run per seed; AutoAttack in bf16; the
surrogate a transfer attack trains when none is given."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustode as ro
from robustode.attacks import AutoAttack, build
from robustode.cli import main
from robustode.data import make_synthetic
from robustode.errors import ConfigError
from robustode.api import evaluate
from robustode.evaluation import escalation
from robustode.training import surrogate
from robustode.records import load_record

pytestmark = pytest.mark.usefixtures("one_thread", "data_dir")

TINY_AA = "autoattack-dev(apgd_steps=4, apgdt_steps=4, fab_steps=4, square_queries=20)"


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def points(n: int = 40):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = tiny_model()(x).argmax(1)
    return x, y


class DiesAfter(AutoAttack):
    """The same AutoAttack (same name and settings), killed like Ctrl-C on its ``calls``-th batch."""

    def __init__(self, spec: str, calls: int):
        built = build(spec, eps=0.1)
        super().__init__(built.config, built.name)
        self.name, self.left = spec, calls

    def run(self, model, x, y):
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt
        return super().run(model, x, y)


def test_a_killed_autoattack_evaluation_resumes_to_the_uninterrupted_result(tmp_path):
    model, data = tiny_model(), points()
    settings = {"eps": 0.1, "batch_size": 8, "quiet": True, "masking_checks": False, "escalate": False}
    straight = evaluate(model, data, attacks=("pgd-5", TINY_AA), **settings)
    state = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, data, attacks=("pgd-5", DiesAfter(TINY_AA, calls=3)), state=state, **settings)
    assert state.is_file()  # pgd-5 done, two AutoAttack batches done
    resumed = evaluate(model, data, attacks=("pgd-5", TINY_AA), state=state, **settings)
    for key in ("clean", "pgd-5", TINY_AA, "worst_case"):
        assert torch.equal(resumed.per_point[key], straight.per_point[key]), key
    assert not state.exists()  # finished: the state is gone


def test_a_state_of_another_evaluation_is_not_reused(tmp_path):
    model, data = tiny_model(), points()
    state = tmp_path / "state.npz"
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, data, attacks=(DiesAfter(TINY_AA, calls=2),), eps=0.1, batch_size=8, quiet=True,
                 masking_checks=False, escalate=False, state=state)
    other = evaluate(model, data, attacks=(TINY_AA,), eps=0.05, batch_size=8, quiet=True, masking_checks=False,
                     escalate=False, state=state)  # another eps: a fresh start
    fresh = evaluate(model, data, attacks=(TINY_AA,), eps=0.05, batch_size=8, quiet=True, masking_checks=False,
                     escalate=False)
    assert torch.equal(other.per_point[TINY_AA], fresh.per_point[TINY_AA])


def test_bf16_autoattack_rechecks_every_break_in_float32():
    model, (x, y) = tiny_model(), points()
    aa = build(TINY_AA.replace(")", ", precision=bf16)"), eps=0.1)
    assert aa.settings["standard"] is False and aa.settings["precision"] == "bf16"
    x_adv, robust, _ = aa.run(model, x, y)
    with torch.no_grad():
        fooled_fp32 = model(x_adv).argmax(1) != y
    assert torch.equal(~robust, fooled_fp32)  # every break holds in float32, every other point is robust


SEEDS_ARGS = ["--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "32", "--batch-size", "16",
              "--n", "8", "--epochs", "1", "--quiet", "--no-masking-checks", "--defense", "natural"]


def test_train_with_seeds_makes_one_run_per_seed(tmp_path):
    assert main(["train", *SEEDS_ARGS, "--seeds", "0,2", "--out", str(tmp_path / "runs"),
                 "--records", str(tmp_path / "records")]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["synthetic-vit_tiny-natural-s0", "synthetic-vit_tiny-natural-s2"]
    records = [load_record(tmp_path / "runs" / run / "record.json") for run in runs]
    assert [r.training.seed for r in records] == [0, 2]
    assert len(list((tmp_path / "records").glob("*.json"))) == 2
    assert main(["train", *SEEDS_ARGS, "--seeds", "1,1"]) != 0


def test_train_seeds_trains_a_fresh_model_per_seed(tmp_path):
    data = make_synthetic(32, 8, seed=0)
    runs = ro.train_seeds(lambda: tiny_cnn(), "natural", data, seeds=(0, 1), epochs=1, batch_size=16, n=8,
                          masking_checks=False, quiet=True, device="cpu", out_dir=tmp_path / "runs")
    (m0, r0), (m1, r1) = runs
    assert (r0.training.seed, r1.training.seed) == (0, 1) and m0 is not m1
    assert not torch.equal(m0[0].weight, m1[0].weight)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["s0", "s1"]
    with pytest.raises(ConfigError, match="factory"):
        ro.train_seeds(tiny_cnn(), "natural", data, seeds=(0,))


def tiny_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_without_a_surrogate_one_is_trained_for_a_custom_32x32_model(monkeypatch):
    monkeypatch.setattr(escalation, "SQUARE", "square(n_queries=20)")
    monkeypatch.setattr(surrogate, "SURROGATE_EPOCHS", 1)
    data = make_synthetic(32, 16, seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()
    model.robustode_escalate = "declared for the test"
    result = evaluate(model, data, n=16, quiet=True, masking_checks=False)
    transfer = next(s for s in result.escalation if s["stage"] == "transfer")
    assert transfer["surrogate"].startswith("resnet20 trained naturally for 1 epoch(s) on 32 training images")
    pair = evaluate(model, (data.test.images[:16].float() / 255, data.test.labels[:16]), quiet=True,
                    masking_checks=False)
    skipped = next(s for s in pair.escalation if s["stage"] == "transfer")
    assert "no training split" in skipped["skipped"]
