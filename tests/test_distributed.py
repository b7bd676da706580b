"""Data-parallel training: 2 gloo processes on the CPU end with one process's weights, same global batch."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from training_utils import tiny

from robustode import dist
from robustode.api import train
from robustode.data import DeviceLoader, make_synthetic
from robustode.data.extra import ExtraSet
from robustode.defenses import Natural, create_defense
from robustode.defenses.awp import ascent_gradients, perturbed_parameters
from robustode.api import evaluate
from robustode.attacks import build
from robustode.evaluation import evaluate_sharded
from robustode.threat import ThreatModel
from robustode.models.contract import LayerOneModel, Normalize
from robustode.api import fit

# Batch norm would normalize each rank's shard by its own statistics: no batch norm here, so the
# two runs must agree up to the order of float sums.
DEFENSES = {"natural": {}, "free-2": {}, "yopo-2-1": {"eps": 0.0}}  # yopo at eps 0: no random start to match
SETTINGS = {"epochs": 2, "batch_size": 8, "lr": 0.05, "augment": True, "seed": 3, "schedule": "constant",
            "device": "cpu", "quiet": True}
EVAL_N = 9  # odd: the ranks' shards differ in size
AWP_SHARDS = (slice(0, 3), slice(3, 5))  # a global batch of 5 split 3 / 2, as an uneven last minibatch is

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one CPU thread per module


class NoNorm(LayerOneModel):
    """Layer one: normalize + conv without bias; rest: ReLU, pool, linear. Deterministic, no batch norm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(Normalize(), nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False))
        self.body = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))

    def rest(self, z):
        return self.body(z)


@dataclass
class Watching(Natural):
    """Natural training that keeps each rank's batch-norm statistics as the epoch ends (before any final sync)."""

    def end_epoch(self, model, optimizers, epoch):
        self.stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def tiny_data():
    return make_synthetic(32, EVAL_N, seed=1)


def tiny_extra() -> ExtraSet:
    """20 extra images in memory (an ExtraSet needs no file), streamed by each rank's background thread."""
    images = np.random.default_rng(2).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(20) % 10
    return ExtraSet((images,), labels, "in memory", "-", "test", tuple(np.bincount(labels)))


def train_all(out_dir=None) -> dict:
    results = {}
    torch.manual_seed(0)
    mixed = fit(NoNorm(), create_defense("natural"), tiny_data(), extra_data=tiny_extra(), extra_fraction=0.5,
                data_budget_gb=0.0, **SETTINGS)
    results["extra"] = {k: v.clone() for k, v in mixed.model.state_dict().items()}
    for spec, options in DEFENSES.items():
        torch.manual_seed(0)
        run_dir = None if out_dir is None else os.path.join(out_dir, spec)
        trained = fit(NoNorm(), create_defense(spec, **options), tiny_data(), out_dir=run_dir, **SETTINGS)
        results[spec] = {k: v.clone() for k, v in trained.model.state_dict().items()}
        results[spec + ":images"] = trained.history[-1]["images"]
    return results


def awp_gradients(rows: slice, share: float | None) -> list[torch.Tensor]:
    """AWP's ascent gradients on NoNorm for ``rows`` of one fixed batch, this rank weighing ``share``."""
    torch.manual_seed(0)
    model = NoNorm()
    x, y = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(5)
    dist.set_share(share)
    try:
        return ascent_gradients(model, perturbed_parameters(model),
                                lambda: (F.cross_entropy(model(x[rows]), y[rows]), None))
    finally:
        dist.set_share(None)


def worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    results = train_all(out_dir)
    watching = Watching()
    fit(tiny(), watching, tiny_data(), **SETTINGS)
    results["batch_norm"] = watching.stats
    model = NoNorm()
    model.load_state_dict(results["natural"])
    evaluation = evaluate_sharded(model, tiny_data(), [build("fgsm")], ThreatModel(), quiet=True,
                                  masking_checks=False)
    results["eval"] = (evaluation.clean_acc, evaluation.robust["fgsm"], evaluation.n, evaluation.per_point)
    _, record = train(NoNorm(), "natural", tiny_data(), attacks=("fgsm",), records_dir=os.path.join(out_dir, "records"),
                      **SETTINGS)
    results["record"] = record.evaluation.robust
    rows = AWP_SHARDS[rank]
    results["awp"] = awp_gradients(rows, (rows.stop - rows.start) / 5)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    # A spawned process leaves through os._exit, past robustode's atexit teardown: a gloo group left up then
    # now and then aborts the process as its threads are torn down ("terminate called without an active
    # exception", SIGABRT). Both ranks close it here, together.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(worker, args=(2, free_port(), str(out)), nprocs=2, start_method="spawn")
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process(one_thread):
    return train_all()


@pytest.mark.parametrize("spec", DEFENSES)
def test_two_gloo_ranks_end_with_the_weights_of_one_process(two_ranks, one_process, spec):
    _, ranks = two_ranks
    single = one_process
    for rank in ranks:
        assert rank[spec].keys() == single[spec].keys()
        for name, tensor in single[spec].items():
            torch.testing.assert_close(rank[spec][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    assert all(torch.equal(ranks[0][spec][k], ranks[1][spec][k]) for k in single[spec])  # ranks agree exactly
    assert ranks[0][spec + ":images"] == single[spec + ":images"] == 32  # epoch counts over both ranks


def test_extra_data_streamed_on_two_ranks_trains_the_weights_of_one_process(two_ranks, one_process):
    _, ranks = two_ranks
    for rank in ranks:  # each rank streamed only its slice of every minibatch's extra share
        for name, tensor in one_process["extra"].items():
            torch.testing.assert_close(rank["extra"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_with_batch_norm_the_ranks_still_hold_one_model(two_ranks):
    _, (first, second) = two_ranks
    assert "body.0.running_var" in first["batch_norm"]
    assert all(torch.equal(first["batch_norm"][k], second["batch_norm"][k]) for k in first["batch_norm"])


def test_only_rank_zero_writes_the_run_directory(two_ranks):
    out, _ = two_ranks
    for spec in DEFENSES:
        run = out / spec
        assert (run / "checkpoints" / "last.pt").is_file() and (run / "train.log").is_file()
        assert '"world_size": 2' in (run / "config.json").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted([*DEFENSES, "rank0.pt", "rank1.pt", "records"])
    assert len(list((out / "records").glob("*.json"))) == 1  # robustode.api.train: one record, from rank 0
    assert len(list((out / "records").glob("points-*.npz"))) == 1  # and its per-example results


def test_awp_ascent_gradients_over_uneven_shards_are_the_global_batch_gradients(two_ranks):
    _, ranks = two_ranks
    single = awp_gradients(slice(0, 5), None)
    for rank in ranks:
        for mine, whole in zip(rank["awp"], single):
            torch.testing.assert_close(mine, whole, rtol=1e-5, atol=1e-7)


def test_sharded_evaluation_gathers_every_point_in_order(two_ranks):
    _, ranks = two_ranks
    model = NoNorm()
    model.load_state_dict(ranks[0]["natural"])
    single = evaluate(model, tiny_data(), attacks=("fgsm",), quiet=True, masking_checks=False)
    for rank in ranks:
        clean, robust, n, per_point = rank["eval"]
        assert (clean, robust, n) == (single.clean_acc, single.robust["fgsm"], EVAL_N)
        for key, mask in single.per_point.items():
            assert torch.equal(per_point[key], mask)
    assert ranks[0]["record"] == ranks[1]["record"]


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_make_up_the_single_process_batches(world_size):
    data = make_synthetic(22, 1, seed=0).train  # 22 = 2 full batches of 8 + 6: shards of 3/3, 2/2/2
    settings = {"shuffle": True, "augment": True, "seed": 5, "channels_last": True}
    single = list(DeviceLoader(data, 8, "cpu", **settings))
    ranks = [list(DeviceLoader(data, 8, "cpu", rank=r, world_size=world_size, **settings))
             for r in range(world_size)]
    assert all(len(batches) == len(single) == 3 for batches in ranks)
    for index, (x, y) in enumerate(single):
        assert torch.equal(torch.cat([r[index][0] for r in ranks]), x)
        assert torch.equal(torch.cat([r[index][1] for r in ranks]), y)


def test_a_last_batch_smaller_than_the_ranks_is_dropped():
    data = make_synthetic(17, 1, seed=0).train  # 2 batches of 8, then 1 example for 2 ranks
    loaders = [DeviceLoader(data, 8, "cpu", rank=r, world_size=2) for r in range(2)]
    assert [len(loader) for loader in loaders] == [2, 2]
    assert len(DeviceLoader(data, 8, "cpu")) == 3
    with pytest.raises(Exception, match="at least the 3 ranks"):
        DeviceLoader(data, 2, "cpu", rank=0, world_size=3)
