"""Data sets: synthetic, torchvision's (offline), the CIFAR-10 JPEG copy, load_dataset options."""

import re
import tarfile
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from robustode.data import cifar10_jpeg as jpeg_module
from robustode.data import load_dataset, make_synthetic
from robustode.data.catalog import data_folder
from robustode.data.torchvision_sets import _cifar_split, _svhn_split
from robustode.errors import ConfigError, DataError, UnknownNameError


def test_synthetic_is_deterministic_in_its_seed():
    a, b, c = make_synthetic(60, 30, seed=3), make_synthetic(60, 30, seed=3), make_synthetic(60, 30, seed=4)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.train.images, c.train.images)
    # the test set does not depend on how many training images were drawn
    assert torch.equal(make_synthetic(10, 30, seed=3).test.images, a.test.images)


def test_synthetic_layout_and_balance():
    data = make_synthetic(200, 50, seed=0)
    assert data.train.images.shape == (200, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (50, 3, 32, 32)
    assert data.train.labels.dtype == torch.int64
    assert data.train.labels.bincount().tolist() == [20] * 10
    assert data.test.labels.bincount().tolist() == [5] * 10
    assert data.test.subset(10).labels.tolist() == list(range(10))  # first n covers every class
    assert (data.name, data.kind, data.num_classes) == ("synthetic", "synthetic", 10)
    assert data.classes == [f"synthetic-{c}" for c in range(10)]
    assert data.train.images.float().std() > 40  # stripes, not flat images


def test_synthetic_mean_colour_says_little_about_the_class():
    data = make_synthetic(1000, 10, seed=0)
    colour = data.train.images.float().mean((2, 3)) / 255  # (N, 3)
    per_class = torch.stack([colour[data.train.labels == c].mean(0) for c in range(10)])
    assert (per_class - colour.mean(0)).abs().max() < 0.05


@pytest.mark.parametrize("kwargs", [{"n_train": 0}, {"n_test": -1}, {"seed": -1}, {"seed": 1.5}])
def test_synthetic_rejects_bad_options(kwargs):
    with pytest.raises(ConfigError):
        make_synthetic(**{"n_train": 10, "n_test": 10, **kwargs})


def test_load_dataset_passes_options_and_takes_subsets(data_dir):
    data = load_dataset("synthetic", n_train=40, n_test=20, seed=1, train_subset=25, test_subset=7)
    assert (len(data.train), len(data.test)) == (25, 7)
    full = make_synthetic(40, 20, seed=1)
    assert torch.equal(data.test.images, full.test.images[:7])


def test_subset_larger_than_the_data_is_a_clear_error(data_dir):
    with pytest.raises(DataError, match="asked for 21 examples of the synthetic test set, which has only 20"):
        load_dataset("synthetic", n_train=40, n_test=20, test_subset=21)


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean.*cifar10"):
        load_dataset("cifar1")


def test_data_dir_defaults_to_the_environment(data_dir, tmp_path, monkeypatch):
    from robustode.data import data_root

    assert data_root() == data_dir
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x").mkdir()
    assert data_root("~/x") == tmp_path / "x"
    assert data_root("~/y") == tmp_path / "y"  # where it would be; only a folder the user names must exist
    with pytest.raises(DataError, match="does not exist"):  # no typo'd caches
        load_dataset("synthetic", data_dir="~/y")


# ---- torchvision data sets, offline -------------------------------------------------------------


def _offline(monkeypatch):
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    return calls


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_offline_download_gives_one_clear_error(name, tmp_path, monkeypatch):
    calls = _offline(monkeypatch)
    with pytest.raises(DataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert calls, "the download was never attempted"
    assert "\n" not in message
    assert f"{name} is not in {tmp_path}" in message and "could not be downloaded" in message
    assert "network is unreachable (test)" in message
    assert "--data-dir" in message and "ROBUSTODE_DATA" in message and "cifar10-jpeg" in message


def test_missing_data_without_download_says_downloads_are_off(tmp_path, monkeypatch):
    calls = _offline(monkeypatch)
    with pytest.raises(DataError, match="downloads are off"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert not calls


def test_torchvision_arrays_become_uint8_nchw():
    nhwc = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    split = _cifar_split(SimpleNamespace(data=nhwc, targets=[3, 1, 4, 1]))
    assert split.images.shape == (4, 3, 5, 6) and split.images.is_contiguous()
    assert torch.equal(split.images[2, 1], torch.from_numpy(nhwc[2, :, :, 1]))
    assert split.labels.tolist() == [3, 1, 4, 1] and split.labels.dtype == torch.int64
    svhn = _svhn_split(SimpleNamespace(data=np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)),
                                       labels=np.array([0, 9, 2, 5])))
    assert torch.equal(svhn.images, split.images) and svhn.labels.dtype == torch.int64


# ---- the CIFAR-10 JPEG copy ---------------------------------------------------------------------


def test_cifar10_jpeg_missing_lists_the_places_looked(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jpeg_module, "_REPO", tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10-jpeg")
    message = str(info.value)
    assert "cifar10-jpeg.tar.gz was not found" in message and "\n" not in message
    assert str(data_dir) in message and str(tmp_path / "shared" / "data") in message
    assert "--data-dir" in message and "ROBUSTODE_DATA" in message


@pytest.fixture(scope="session")
def cifar10_jpeg(cifar10_jpeg_tar, tmp_path_factory):
    """The real JPEG copy, decoded once per test session into a temporary cache."""
    cache_root = tmp_path_factory.mktemp("cifar10-jpeg-data")
    return cache_root, load_dataset("cifar10-jpeg", data_dir=cache_root)


def test_real_cifar10_jpeg_copy(cifar10_jpeg, cifar10_jpeg_tar):
    cache_root, data = cifar10_jpeg
    assert (data.kind, data.source) == ("jpeg-copy", str(cifar10_jpeg_tar.resolve()))
    assert data.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                            "ship", "truck"]
    assert data.train.images.shape == (50000, 3, 32, 32) and data.test.images.shape == (10000, 3, 32, 32)
    assert data.train.labels.bincount().tolist() == [5000] * 10
    assert data.test.labels.bincount().tolist() == [1000] * 10
    # the first test image is test/airplane/0000.jpg, decoded the ordinary way
    with tarfile.open(cifar10_jpeg_tar, "r|gz") as archive:
        member = next(m for m in archive if m.name == "cifar10-jpeg/test/airplane/0000.jpg")
        expected = np.array(Image.open(archive.extractfile(member)).convert("RGB"))
    assert data.test.labels[0] == 0
    assert torch.equal(data.test.images[0], torch.from_numpy(expected).permute(2, 0, 1))

    again = load_dataset("cifar10-jpeg", data_dir=cache_root)
    assert not data.meta["from_cache"] and again.meta["from_cache"]
    assert torch.equal(again.test.images, data.test.images) and torch.equal(again.train.labels, data.train.labels)


def test_registry_factories_resolve_the_data_dir_themselves(data_dir):
    from robustode.data import datasets

    assert datasets.get("synthetic", n_train=10, n_test=10).kind == "synthetic"
    with pytest.raises(DataError, match=f"cifar10 is not in {data_dir} and downloads are off"):
        datasets.get("cifar10", download=False)


def test_the_default_data_folder_need_not_exist_yet(tmp_path, monkeypatch):
    """Only a folder the user names (--data-dir, $ROBUSTODE_DATA) must exist; ~/.cache/robustode is made when
    needed."""
    from PIL import Image

    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "tree" / split / name).mkdir(parents=True)
            Image.new("RGB", (4, 4), (10, 20, 30)).save(tmp_path / "tree" / split / name / "0.png")
    monkeypatch.delenv("ROBUSTODE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = load_dataset(f"imagefolder:{tmp_path / 'tree'}")
    assert len(data.train) == 2 and (tmp_path / "home" / ".cache" / "robustode").is_dir()  # its decode cache


def test_the_data_folder_is_the_first_source_given_and_one_the_user_names_must_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTODE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_folder(tmp_path) == (tmp_path, "--data-dir") and data_folder() == (tmp_path / "env", "$ROBUSTODE_DATA")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=re.escape(f"data folder {tmp_path / 'file'} (from --data-dir) is a file, not a "
                                                  "folder; create it first, or leave --data-dir out for "
                                                  "$ROBUSTODE_DATA or ~/.cache/robustode")):
        load_dataset("synthetic", data_dir=tmp_path / "file")
    with pytest.raises(DataError, match=re.escape(f"data folder {tmp_path / 'env'} (from $ROBUSTODE_DATA) does not "
                                                  "exist; create it first, or leave $ROBUSTODE_DATA out for "
                                                  "~/.cache/robustode")):
        load_dataset("synthetic")
    monkeypatch.delenv("ROBUSTODE_DATA")
    default = data_folder()
    assert default == (tmp_path / "home" / ".cache" / "robustode", "~/.cache/robustode") and not default.by_user
    assert len(load_dataset("synthetic", n_train=4, n_test=4).train) == 4  # the default need not exist yet
