"""The extra-data stream from host memory: how many images per second one loader thread delivers from a
memory-mapped .npy, cold and warm page cache, and what its background thread costs a training step.

    python bench/data_stream.py                                  # 1M images (3.07 GB) under /tmp, then deleted
    python bench/data_stream.py --images 200000 --keep           # a smaller file, kept for a rerun
    python bench/data_stream.py --device cuda --model dm_wrn28_10 --step-batch 512 --json out.json

1. delivery: ``Prefetch`` (robustode/data/prefetch.py, the thread MixedLoader streams with) gathers
   ``--batches`` minibatches of floor(0.7 x batch) random images each (sorted within a batch, as the
   loader draws them) from the .npy and hands them over on ``--device`` (pinned buffers and asynchronous
   copies on CUDA). Cold: the file's pages dropped from the cache first (posix_fadvise DONTNEED, this
   file only); warm: the same draws again with the file cached.
2. the whole loader: MixedLoader streamed (budget 0) with crop and flip, images per second.
3. interleaved: natural training steps of ``--model`` at ``--step-batch``, each timed alone, alternate one
   by one: a step on a batch from the streamed loader, during which its thread gathers the next batch,
   then a step on a batch made beforehand, during which the thread waits; the slowdown is the median over
   ``--rounds`` pairs of their ratio (the main thread's share of making a batch is not in either).

Measured figures and the machine they came from: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustode.data import make_synthetic
from robustode.data.arrays import ArrayRef, memmap
from robustode.data.extra import ExtraSet
from robustode.data.mixed import MixedLoader, extra_share
from robustode.data.prefetch import Prefetch
from robustode.models import create
from robustode.utils import resolve_device, synchronize

BLOCK = 1 << 16


def make_file(folder: Path, n: int) -> ExtraSet:
    """n random 32 x 32 x 3 images as images.npy (written block by block) and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "images.npy"
    if not path.is_file() or memmap(ArrayRef(path)).shape[0] != n:
        images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 32, 32, 3))
        block = np.random.default_rng(0).integers(0, 256, (BLOCK, 32, 32, 3), dtype=np.uint8)
        for k, first in enumerate(range(0, n, BLOCK)):  # one random block, shifted per block: fast to write
            rows = min(BLOCK, n - first)
            np.add(block[:rows], np.uint8(k % 256), out=images[first:first + rows])
        images.flush()
        del images
    labels = np.random.default_rng(1).integers(0, 10, n)
    return ExtraSet((memmap(ArrayRef(path)),), labels, str(path), "-", "bench", tuple(np.bincount(labels)))


def drop_cache(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def delivery(extra: ExtraSet, per_batch: int, batches: int, device: torch.device) -> float:
    rng = np.random.default_rng(2)
    plan = [np.sort(rng.choice(len(extra), per_batch, replace=False)) for _ in range(batches)]
    start = time.perf_counter()
    for images, _ in Prefetch(extra, plan, device):
        pass
    synchronize(device)
    return per_batch * batches / (time.perf_counter() - start)


def whole_loader(extra: ExtraSet, batch: int, batches: int, device: torch.device) -> float:
    base = make_synthetic(batch * batches, 8, seed=0).train
    loader = MixedLoader(base, extra, 0.7, batch, device, augment=True, budget_bytes=0)
    start = time.perf_counter()
    for _ in loader:
        pass
    synchronize(device)
    return batch * len(loader) / (time.perf_counter() - start)


def interleaved(extra: ExtraSet, model_name: str, batch: int, rounds: int, device) -> dict:
    model = create(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(x, y):
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    base = make_synthetic(batch * (rounds + 1), 8, seed=0).train
    loader = MixedLoader(base, extra, 0.7, batch, device, augment=True, budget_bytes=0)
    streamed, alone = [], []
    stream = iter(loader)
    # The batch the step runs alone on: the stream's first (a resident loader would copy the whole set to the
    # device and warm the page cache with all of it, for one batch).
    fixed = tuple(t.clone() for t in next(stream))
    for x, y in [fixed] * 2:  # warm-up
        step(x, y)
    for _ in range(rounds):  # one step of each, in turn: the machine's drift cancels in each pair's ratio
        for times, (x, y) in ((streamed, next(stream)), (alone, fixed)):
            synchronize(device)  # the step alone is timed: during the first, the thread gathers the next batch
            t0 = time.perf_counter()
            step(x, y)
            synchronize(device)
            times.append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(streamed, alone)]
    return {"streamed_s": streamed, "alone_s": alone, "slowdown": statistics.median(ratios),
            "pair_ratios": ratios}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--dir", default="/tmp/robustode-stream")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--batches", type=int, default=200, help="minibatches per delivery measurement")
    p.add_argument("--model", default="resnet20")
    p.add_argument("--step-batch", type=int, default=128, help="batch of the interleaved natural steps")
    p.add_argument("--rounds", type=int, default=20, help="pairs of interleaved steps")
    p.add_argument("--keep", action="store_true", help="keep the generated file")
    p.add_argument("--json")
    args = p.parse_args()
    device = resolve_device(args.device)
    folder = Path(args.dir)
    try:
        t0 = time.perf_counter()
        extra = make_file(folder, args.images)
        report = {"images": args.images, "file_bytes": extra.nbytes, "written_s": time.perf_counter() - t0,
                  "device": str(device), "torch": torch.__version__, "cpus": os.cpu_count(),
                  "per_batch": extra_share(0.7, args.batch_size)}
        drop_cache(extra.source)
        report["cold_img_s"] = delivery(extra, report["per_batch"], args.batches, device)
        delivery(extra, report["per_batch"], args.batches, device)  # the same draws, now cached
        report["warm_img_s"] = delivery(extra, report["per_batch"], args.batches, device)
        report["loader_img_s"] = whole_loader(extra, args.batch_size, min(args.batches, 50), device)
        report["interleaved"] = interleaved(extra, args.model, args.step_batch, args.rounds, device)
        report["interleaved"].update(model=args.model, batch=args.step_batch)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
