"""Image folders with ``train/`` and ``test/`` splits, decoded once and cached as tensors.

Layout: ``ROOT/train/<class>/<image>`` and ``ROOT/test/<class>/<image>``, where ROOT
is a directory or a .tar/.tar.gz archive, or one folder at the top of either (as
in ``cifar10-jpeg/train/...``). Every image becomes RGB; all must share one size.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .cache import cache_file, load_cached, save_cached
from .catalog import data_root, datasets
from .trees import open_tree
from .types import DataSet, Split

SPLITS = ("train", "test")
IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
                 ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM"}


@datasets.register("imagefolder:")
def imagefolder(path: str, *, data_dir: Path | None = None, download: bool = True) -> DataSet:
    """Your own images: PATH/{train,test}/<class>/<image>, as a directory or a .tar/.tar.gz."""
    data_dir = data_root(data_dir)
    return load_imagefolder(path, data_dir / "cache")


def load_imagefolder(path: str | os.PathLike, cache_dir: Path, *, name: str | None = None,
                     kind: str = "custom") -> DataSet:
    """Decode an image folder, or read it back from ``cache_dir`` when it has not changed.

    ``meta["from_cache"]`` says which of the two happened.
    """
    path = Path(path).expanduser()
    tree = open_tree(path)
    stem = _stem(path)
    target = cache_file(cache_dir, stem, tree.key())
    arrays = load_cached(target)
    from_cache = arrays is not None
    if arrays is None:
        arrays = decode_tree(tree)
        save_cached(target, arrays)
    return DataSet(
        name=name or f"imagefolder:{stem}",
        train=Split(arrays["train_images"], arrays["train_labels"]),
        test=Split(arrays["test_images"], arrays["test_labels"]),
        classes=list(arrays["classes"]),
        kind=kind,
        source=str(path.resolve()),
        meta={"from_cache": from_cache, "cache": str(target)},
    )


def decode_tree(tree) -> dict:
    """Decode both splits of a tree into uint8 NCHW tensors and int64 labels."""
    classes, plan = _plan(tree)
    arrays: dict = {"classes": classes}
    first = None  # (relative path, size) of the first image, which all others must match
    for split in SPLITS:
        images, first = _decode_split(tree, [rel for rel, _ in plan[split]], first)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = torch.tensor([label for _, label in plan[split]], dtype=torch.int64)
    return arrays


def _plan(tree) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """Class names and, per split, the (relative path, label) of every image in reading order."""
    root = _split_root(tree)
    found = {split: _class_files(tree, f"{root}{split}") for split in SPLITS}
    classes = sorted(found["train"])
    if sorted(found["test"]) != classes:
        only_train = sorted(set(found["train"]) - set(found["test"]))
        only_test = sorted(set(found["test"]) - set(found["train"]))
        raise DataError(f"train/ and test/ of {tree.origin} hold different classes "
                        f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'})")
    plan = {}
    for split in SPLITS:
        # Interleave the classes (first image of each class, then the second, ...) so
        # that a first-n subset, as evaluations take it, covers every class evenly.
        ranked = [(rank, label, rel) for label, name in enumerate(classes)
                  for rank, rel in enumerate(found[split][name])]
        plan[split] = [(rel, label) for _, label, rel in sorted(ranked)]
    return classes, plan


def _split_root(tree) -> str:
    """"" when train/ and test/ sit at the top, "name/" when they sit in one top folder."""
    dirs = tree.dirs
    tops = {d.split("/")[0] for d in dirs if not d.startswith(".")}
    candidates = [""] + ([f"{tops.pop()}/"] if len(tops) == 1 else [])
    for root in candidates:
        if all(root + split in dirs for split in SPLITS):
            return root
    missing = [f"{split}/" for split in SPLITS if candidates[-1] + split not in dirs]
    raise DataError(f"{tree.origin} has no {' or '.join(missing)} folder; an image folder needs "
                    f"train/<class>/<image> and test/<class>/<image>")


def _class_files(tree, split_dir: str) -> dict[str, list[str]]:
    """Class folder name -> sorted image paths below it (hidden and non-image files skipped)."""
    prefix = split_dir + "/"
    classes = {d[len(prefix):]: [] for d in tree.dirs
               if d.startswith(prefix) and "/" not in d[len(prefix):] and not d[len(prefix):].startswith(".")}
    if not classes:
        raise DataError(f"{tree.origin}: {split_dir}/ holds no class folders")
    for rel in tree.files:
        parts = rel[len(prefix):].split("/") if rel.startswith(prefix) else ()
        # Hidden files include the "._name.jpg" resource forks macOS writes into archives.
        if len(parts) >= 2 and parts[0] in classes and not any(p.startswith(".") for p in parts) \
                and os.path.splitext(rel)[1].lower() in IMAGE_FORMATS:
            classes[parts[0]].append(rel)
    for name, files in classes.items():
        if not files:
            raise DataError(f"class folder {split_dir}/{name} in {tree.origin} holds no images")
        files.sort()
    return classes


def _decode_split(tree, rels: list[str], first: tuple[str, tuple[int, int]] | None):
    chunks = []
    for rel in rels:
        pixels, size = _decode(tree.read(rel), rel, tree.origin)
        if first is None:
            first = (rel, size)
        elif size != first[1]:
            raise DataError(f"images in {tree.origin} differ in size: {rel} is {size[0]}x{size[1]} but "
                            f"{first[0]} is {first[1][0]}x{first[1][1]}; resize them to one size first")
        chunks.append(pixels)
    width, height = first[1]
    array = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(rels), height, width, 3)
    return torch.from_numpy(array.copy()).permute(0, 3, 1, 2).contiguous(), first


def _decode(data: bytes, rel: str, origin: str) -> tuple[bytes, tuple[int, int]]:
    """RGB pixel bytes (H, W, 3) and (width, height) of one encoded image."""
    try:
        try:  # naming the format skips PIL's probing of every plugin, a third of the time
            image = Image.open(io.BytesIO(data), formats=(IMAGE_FORMATS[os.path.splitext(rel)[1].lower()],))
        except UnidentifiedImageError:  # e.g. a PNG saved under a .jpg name
            image = Image.open(io.BytesIO(data))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return image.tobytes(), image.size
    except Exception as err:  # PIL reports malformed files through many exception types
        reason = "not an image format PIL reads" if isinstance(err, UnidentifiedImageError) else err
        raise DataError(f"cannot decode image {rel} in {origin}: {reason}") from err


def _stem(path: Path) -> str:
    name = path.resolve().name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
