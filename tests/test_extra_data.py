"""Extra training data: the released .npz format, conversion, exact per-batch shares, seeded streams,
streaming from host memory, exact resume, per-rank shards, and one-line refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from defense_fixtures import one_thread  # noqa: F401 (autouse: one CPU thread)
from training_utils import Interrupting, Plain, data, same_weights, tiny

from robustode.api import fit
from robustode.cli import main
from robustode.data.convert import convert
from robustode.data.extra import open_extra
from robustode.data.mixed import MixedLoader, extra_share
from robustode.errors import ConfigError, DataError
from robustode.records import load_record
from robustode.report.tables import method
from robustode.training import TrainConfig, load_checkpoint

MARK = 7  # every extra image is this grey, so a batch's extra share can be counted


def write_npz(path, n=40, seed=0, marked=False, **override):
    rng = np.random.default_rng(seed)
    arrays = {"image": np.full((n, 32, 32, 3), MARK, np.uint8) if marked
              else rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
              "label": rng.integers(0, 10, n)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_the_share_is_floored_as_the_reference_code_rounds_it_but_exactly_for_decimals():
    assert extra_share(0.7, 512) == 358 and 512 - extra_share(0.7, 512) == 154
    assert extra_share(0.29, 100) == 29  # int(0.29 * 100) would give 28
    assert extra_share(0.0, 128) == 0


def test_every_minibatch_holds_the_exact_share_and_an_epoch_keeps_the_base_count(tmp_path):
    ds = data(n_train=64)
    extra = open_extra(write_npz(tmp_path / "g.npz", n=50, marked=True), ds)
    loader = MixedLoader(ds.train, extra, 0.7, 20, "cpu", seed=1)
    assert len(loader) == 4  # ceil(64 / 20), whatever the extra set's size
    for x, y in loader:
        marked = (x == MARK / 255).flatten(1).all(1)
        assert len(y) == 20 and int(marked.sum()) == 14 and not marked[:6].any()


def test_both_streams_run_through_every_image_once_per_pass_from_the_seed(tmp_path):
    ds = data(n_train=60)
    extra = open_extra(write_npz(tmp_path / "g.npz", n=42), ds)
    loader = MixedLoader(ds.train, extra, 0.7, 20, "cpu", seed=5)  # 14 extra + 6 base, 3 minibatches
    bases, extras = zip(*(loader.plan(e) for e in range(7)))
    base = np.concatenate([b for epoch in bases for b in epoch])
    drawn = np.concatenate([x for epoch in extras for x in epoch])
    assert len(drawn) == 7 * 3 * 14 and all(sorted(drawn[i:i + 42]) == list(range(42)) for i in (0, 42, 84))
    assert all(sorted(base[i:i + 60]) == list(range(60)) for i in (0, 60))
    again = MixedLoader(ds.train, extra, 0.7, 20, "cpu", seed=5).plan(3)
    other = MixedLoader(ds.train, extra, 0.7, 20, "cpu", seed=6).plan(3)
    assert all(np.array_equal(a, b) for a, b in zip(again[1], extras[3]))
    assert not all(np.array_equal(a, b) for a, b in zip(other[1], extras[3]))


def test_streamed_batches_equal_the_on_device_ones_and_ranks_split_each_batch(tmp_path):
    ds = data(n_train=64)
    extra = open_extra(write_npz(tmp_path / "g.npz", n=50), ds)
    settings = {"augment": True, "seed": 3}
    resident = MixedLoader(ds.train, extra, 0.7, 20, "cpu", budget_bytes=1 << 30, **settings)
    streamed = MixedLoader(ds.train, extra, 0.7, 20, "cpu", budget_bytes=0, **settings)
    assert resident.resident and not streamed.resident
    ranks = [MixedLoader(ds.train, extra, 0.7, 20, "cpu", rank=r, world_size=2, **settings) for r in (0, 1)]
    for epoch in range(2):
        for (x, y), (sx, sy), (ax, ay), (bx, by) in zip(resident, streamed, *ranks):
            assert torch.equal(x, sx) and torch.equal(y, sy)
            # rank 0: base 0..2, extra 0, 2, .., 12; rank 1: base 3..5, extra 1, 3, .., 13
            assert torch.equal(torch.cat([ay[:3], by[:3], torch.stack([ay[3:], by[3:]], 1).flatten()]), y)
            assert torch.equal(torch.cat([ax[:3], bx[:3], torch.stack([ax[3:], bx[3:]], 1).flatten(0, 1)]), x)


def test_ranks_get_every_class_of_an_extra_set_stored_in_class_order(tmp_path):
    ds = data(n_train=64)
    labels = np.arange(50) * 10 // 50  # 5 images of class 0, then 5 of class 1, ...
    extra = open_extra(write_npz(tmp_path / "g.npz", n=50, label=labels), ds)
    ranks = [MixedLoader(ds.train, extra, 0.7, 20, "cpu", rank=r, world_size=2, seed=3) for r in (0, 1)]
    for batch in zip(*(loader.plan(0)[1] for loader in ranks)):
        every = np.sort(np.concatenate(batch))
        for shard in batch:  # each rank's classes span the batch's, within one image's class of each end
            assert labels[shard].min() <= labels[every[1]] and labels[shard].max() >= labels[every[-2]]


@pytest.mark.parametrize("budget", [0.0, None])  # streamed from host memory, and on the device
def test_a_run_killed_mid_epoch_resumes_both_streams_to_the_weights_of_a_straight_run(tmp_path, budget):
    ds = data()
    extra = open_extra(write_npz(tmp_path / "g.npz", n=30), ds)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.05, extra_fraction=0.5, data_budget_gb=budget)
    straight = fit(tiny(), Plain(), ds, config=config, out_dir=tmp_path / "straight", quiet=True, extra_data=extra)
    with pytest.raises(KeyboardInterrupt):  # 4 minibatches per epoch: call 7 is in the middle of epoch 2
        fit(tiny(), Interrupting(Plain(), at=7), ds, config=config, out_dir=tmp_path / "cut", quiet=True,
            extra_data=extra)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = fit(tiny(seed=1), Plain(), ds, config=config, out_dir=tmp_path / "cut", resume=True, quiet=True,
                  extra_data=extra)
    assert same_weights(resumed.model, straight.model)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    described = resumed.run.data.extra
    assert described.count == 30 and described.fraction == 0.5 and sum(described.histogram) == 30
    assert "8 extra + 8 base" in (tmp_path / "cut" / "train.log").read_text()


def test_convert_streams_parts_into_one_mappable_set_with_a_manifest(tmp_path):
    ds = data()
    one, two = write_npz(tmp_path / "a.npz", n=30, seed=1), tmp_path / "b.npz"
    rng = np.random.default_rng(2)
    np.savez_compressed(two, image=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), label=np.arange(20) % 10)
    manifest = convert([one, two], tmp_path / "out", quiet=True)
    converted = open_extra(tmp_path / "out", ds)
    with np.load(one) as f, np.load(two) as g:
        images, labels = np.concatenate([f["image"], g["image"]]), np.concatenate([f["label"], g["label"]])
    assert manifest["count"] == 50 and manifest["histogram"] == np.bincount(labels).tolist()
    index, out = np.array([0, 29, 30, 49]), np.empty((4, 32, 32, 3), np.uint8)
    converted.gather(index, out)
    assert np.array_equal(out, images[index]) and np.array_equal(converted.labels, labels)
    assert converted.digest == manifest["digest"] and converted.digest_of == "files"
    with pytest.raises(DataError, match="compressed and cannot be memory-mapped; convert it first"):
        open_extra([one, two], ds)


def bad_npz(tmp_path, kind):
    rng = np.random.default_rng(0)
    path = tmp_path / f"{kind}.npz"
    if kind == "no-label":
        return write_npz(path, label=None)
    if kind == "float":
        return write_npz(path, image=rng.random((10, 32, 32, 3), dtype=np.float32))
    if kind == "nchw":
        return write_npz(path, image=rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8), label=np.zeros(10, int))
    if kind == "label-10":
        return write_npz(path, n=10, label=np.arange(10) + 1)
    return write_npz(path, image=rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8), label=np.zeros(10, int))


@pytest.mark.parametrize("kind, message", [
    ("no-label", "has no 'label' array"), ("float", "holds float32 images; the format is uint8"),
    ("nchw", r"laid out NCHW \(10, 3, 32, 32\); the format is NHWC"),
    ("label-10", "has label 10, outside the base set's 10 classes"),
    ("small", "holds 16x16x3 images \\(HxWxC\\); the base set's are 32x32x3")])
def test_bad_npz_files_are_refused_in_one_line_before_training(tmp_path, kind, message):
    with pytest.raises(DataError, match=message):
        open_extra(bad_npz(tmp_path, kind), data())


def test_a_converted_set_changed_or_cut_after_conversion_is_refused(tmp_path):
    convert([write_npz(tmp_path / "a.npz", n=20)], tmp_path / "out", quiet=True)
    labels = tmp_path / "out" / "labels.npy"
    raw = bytearray(labels.read_bytes())
    raw[-1] ^= 1
    labels.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="does not match the SHA-256 in its manifest"):
        open_extra(tmp_path / "out", data())
    images = tmp_path / "out" / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or replaced"):
        open_extra(tmp_path / "out", data())


def test_a_truncated_npy_is_named_with_its_sizes(tmp_path):
    from robustode.data.arrays import ArrayRef, memmap

    path = tmp_path / "images.npy"
    np.save(path, np.zeros((10, 32, 32, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"images.npy is truncated: its header says \(10, 32, 32, 3\) uint8"):
        memmap(ArrayRef(path))


def test_a_fraction_outside_0_1_is_refused():
    with pytest.raises(ConfigError, match=r"extra_fraction \(share of extra images\) must lie in \[0, 1\)"):
        TrainConfig(extra_fraction=1.0).resolve(Plain())


def test_the_cli_trains_with_extra_data_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    good = write_npz(tmp_path / "g.npz", n=40)
    base = ["train", "--model", "vit_tiny", "--dataset", "synthetic", "--train-subset", "64", "--batch-size", "32",
            "--n", "16", "--quiet", "--defense", "natural", "--epochs", "1", "--out", str(tmp_path / "runs"),
            "--no-masking-checks"]
    assert main([*base, "--extra-data", str(good), "--extra-fraction", "0.25"]) == 0
    path = next((tmp_path / "runs").glob("*/record.json"))
    record = json.loads(path.read_text())
    assert record["dataset"]["extra"]["fraction"] == 0.25 and record["dataset"]["extra"]["count"] == 40
    assert method(load_record(path)) == "natural + 40 extra images at 0.25"  # its own leaderboard row
    capsys.readouterr()
    assert main([*base, "--name", "x", "--extra-data", str(bad_npz(tmp_path, "nchw"))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NCHW" in err[0]
    assert main([*base, "--extra-data", str(good), "--extra-fraction", "1"]) == 2
    assert "the fraction must lie in [0, 1), got 1" in capsys.readouterr().err
    assert main(["data", "convert", str(good), str(tmp_path / "conv"), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'conv'}: 40 images 32x32x3, 10 classes")
    assert main(["data", "convert", str(good), str(tmp_path / "conv")]) == 1  # never into a full directory
    assert "exists and is not empty" in capsys.readouterr().err
