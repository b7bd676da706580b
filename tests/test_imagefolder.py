"""imagefolder:PATH on tiny trees built here: directories, archives, the decode cache, bad input."""

import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from robustode.data import cifar10_jpeg as jpeg_module
from robustode.data import imagefolder as imagefolder_module
from robustode.data import load_dataset
from robustode.errors import DataError

CLASSES = ("cat", "dog", "eel")
HEIGHT, WIDTH = 5, 6  # not square, so a transposed image cannot pass


def build_tree(root, n_train=3, n_test=2, suffix=".png", seed=0):
    """train/ and test/ of random images; returns {relative path: (H, W, 3) pixels}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                rel = f"{split}/{name}/{i:02d}{suffix}"
                pixels[rel] = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
                Image.fromarray(pixels[rel]).save(root / rel)
    return pixels


def make_tar(source, target, arcname):
    with tarfile.open(target, "w:gz" if str(target).endswith("gz") else "w") as archive:
        archive.add(source, arcname=arcname)
    return target


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "pets"
    return root, build_tree(root)


@pytest.fixture
def image_tree_tar(tmp_path):
    """A .tar.gz holding one top folder with train/ and test/, like cifar10-jpeg.tar.gz."""
    root = tmp_path / "tree-src"
    build_tree(root, suffix=".jpg")
    return make_tar(root, tmp_path / "tree.tar.gz", arcname="tree")


def expected_split(pixels, split, n):
    """Classes interleaved: the first image of every class, then the second, ..."""
    rels = [f"{split}/{name}/{i:02d}.png" for i in range(n) for name in CLASSES]
    images = torch.stack([torch.from_numpy(pixels[r]).permute(2, 0, 1) for r in rels])
    return images, torch.tensor([CLASSES.index(r.split("/")[1]) for r in rels])


def test_directory_loads_exact_pixels_in_interleaved_order(tree, data_dir):
    root, pixels = tree
    data = load_dataset(f"imagefolder:{root}")
    assert (data.name, data.kind, data.source) == ("imagefolder:pets", "custom", str(root))
    assert data.classes == list(CLASSES)
    for split, n in (("train", 3), ("test", 2)):
        images, labels = expected_split(pixels, split, n)
        assert getattr(data, split).images.dtype == torch.uint8
        assert torch.equal(getattr(data, split).images, images)
        assert torch.equal(getattr(data, split).labels, labels)


@pytest.mark.parametrize("target, arcname", [("pets.tar.gz", "pets"), ("pets.tar", "."), ("pets.tgz", "")])
def test_archives_load_like_the_directory(tree, data_dir, tmp_path, target, arcname):
    root, _ = tree
    archive = make_tar(root, tmp_path / target, arcname)
    from_dir, from_tar = load_dataset(f"imagefolder:{root}"), load_dataset(f"imagefolder:{archive}")
    assert from_tar.name == "imagefolder:pets" and from_tar.classes == from_dir.classes
    assert torch.equal(from_tar.train.images, from_dir.train.images)
    assert torch.equal(from_tar.test.labels, from_dir.test.labels)


def test_archive_without_directory_entries(tree, data_dir, tmp_path):
    root, pixels = tree
    archive = tmp_path / "files-only.tar"
    with tarfile.open(archive, "w") as out:
        for rel in pixels:
            out.add(root / rel, arcname=rel, recursive=False)
    data = load_dataset(f"imagefolder:{archive}")
    assert torch.equal(data.test.images, expected_split(pixels, "test", 2)[0])


def test_jpeg_tree_decodes_to_rgb(image_tree_tar, data_dir):
    data = load_dataset(f"imagefolder:{image_tree_tar}")
    assert data.train.images.shape == (9, 3, HEIGHT, WIDTH) and data.test.images.shape == (6, 3, HEIGHT, WIDTH)


def test_hidden_and_non_image_files_are_skipped(tree, data_dir):
    root, _ = tree
    (root / "train" / "cat" / "._00.png").write_bytes(b"macOS resource fork")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    assert len(load_dataset(f"imagefolder:{root}").train) == 9


def test_second_load_comes_from_the_cache(tree, data_dir, monkeypatch):
    root, _ = tree
    first = load_dataset(f"imagefolder:{root}")
    assert first.meta["from_cache"] is False and first.meta["cache"].startswith(str(data_dir / "cache"))

    def no_decoding(tree):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(imagefolder_module, "decode_tree", no_decoding)
    second = load_dataset(f"imagefolder:{root}")
    assert second.meta["from_cache"] is True and second.meta["cache"] == first.meta["cache"]
    assert torch.equal(second.train.images, first.train.images) and second.classes == first.classes


def test_a_changed_source_is_decoded_again(tree, data_dir):
    root, pixels = tree
    first = load_dataset(f"imagefolder:{root}")
    changed = root / "test" / "dog" / "01.png"
    Image.fromarray(255 - pixels["test/dog/01.png"]).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # whatever the clock resolution
    second = load_dataset(f"imagefolder:{root}")
    assert second.meta["from_cache"] is False and second.meta["cache"] != first.meta["cache"]
    position = 3 * 1 + CLASSES.index("dog")  # second round of the interleaved test split
    assert torch.equal(second.test.images[position], torch.from_numpy(255 - pixels["test/dog/01.png"]).permute(2, 0, 1))


def test_an_unreadable_cache_is_rebuilt_with_a_warning(tree, data_dir):
    root, _ = tree
    first = load_dataset(f"imagefolder:{root}")
    with open(first.meta["cache"], "wb") as f:
        f.write(b"truncated")
    with pytest.warns(UserWarning, match="unreadable cache"):
        again = load_dataset(f"imagefolder:{root}")
    assert again.meta["from_cache"] is False and torch.equal(again.train.images, first.train.images)
    assert load_dataset(f"imagefolder:{root}").meta["from_cache"] is True


# ---- bad input: one clear line each -------------------------------------------------------------


def load_error(path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{path}")
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_path(tmp_path, data_dir):
    assert "does not exist" in load_error(tmp_path / "nowhere")


def test_a_file_that_is_no_archive(tmp_path, data_dir):
    (tmp_path / "x.zip").write_bytes(b"PK\x03\x04 not a tar")
    assert "neither a directory nor a .tar" in load_error(tmp_path / "x.zip")


def test_a_truncated_archive(tree, tmp_path, data_dir):
    archive = make_tar(tree[0], tmp_path / "pets.tar.gz", "pets")
    archive.write_bytes(archive.read_bytes()[:-200])
    assert str(archive) in load_error(archive)


def test_missing_test_folder(tree, data_dir):
    root, _ = tree
    (root / "test").rename(root / "val")
    assert "has no test/ folder" in load_error(root)


def test_empty_class_folder(tree, data_dir):
    root, _ = tree
    for image in (root / "train" / "eel").iterdir():
        image.unlink()
    assert "class folder train/eel" in load_error(root) and "holds no images" in load_error(root)


def test_classes_must_match_between_splits(tree, data_dir):
    root, _ = tree
    (root / "test" / "eel").rename(root / "test" / "emu")
    assert "only in train: ['eel']; only in test: ['emu']" in load_error(root)


@pytest.mark.parametrize("garbage", [b"not an image", "truncated"])
def test_corrupt_image_is_named(tree, data_dir, garbage):
    root, _ = tree
    bad = root / "train" / "dog" / "01.png"
    bad.write_bytes(bad.read_bytes()[:40] if garbage == "truncated" else garbage)
    assert "cannot decode image train/dog/01.png" in load_error(root)


def test_images_of_different_sizes(tree, data_dir):
    root, _ = tree
    Image.new("RGB", (WIDTH + 1, HEIGHT)).save(root / "test" / "cat" / "01.png")
    message = load_error(root)
    assert "differ in size" in message and "test/cat/01.png is 7x5" in message


# ---- the CIFAR-10 JPEG copy is found by name ----------------------------------------------------


def test_cifar10_jpeg_is_found_in_the_data_dir(image_tree_tar, data_dir):
    image_tree_tar.rename(data_dir / "cifar10-jpeg.tar.gz")
    data = load_dataset("cifar10-jpeg", test_subset=4)
    assert (data.name, data.kind, len(data.test)) == ("cifar10-jpeg", "jpeg-copy", 4)
    assert data.source == str(data_dir / "cifar10-jpeg.tar.gz")


def test_cifar10_jpeg_is_found_in_shared_data_above_the_current_directory(image_tree_tar, data_dir,
                                                                          tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    image_tree_tar.rename(shared / "cifar10-jpeg.tar.gz")
    project = tmp_path / "project" / "sub"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.setattr(jpeg_module, "_REPO", project)
    data = load_dataset("cifar10-jpeg")
    assert data.source == str(shared / "cifar10-jpeg.tar.gz")
    assert data.meta["cache"].startswith(str(data_dir / "cache"))
