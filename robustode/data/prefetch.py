"""Batches of a set that stays in host memory or on disk: gathered on a background thread into pinned
buffers and copied to the device asynchronously, two in flight (double buffering).

While the device trains on batch i, the thread gathers batch i + 1 into the other buffer; a buffer is
refilled only after its copy to the device has finished (a CUDA event). On the CPU the "copy" is a
clone, so a batch handed out never shares memory with a buffer being refilled.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch

DEPTH = 2  # buffers: one being copied and trained on, one being filled


class _Slot:
    def __init__(self, rows: int, shape: tuple, pin: bool):
        self.images = torch.empty((rows, *shape), dtype=torch.uint8, pin_memory=pin)
        self.labels = torch.empty(rows, dtype=torch.int64, pin_memory=pin)
        self.copied: torch.cuda.Event | None = None  # recorded after its last copy to the device


class Prefetch:
    """Iterate over ``(images, labels)`` on ``device`` for each index array of ``plan`` (sorted
    indices into ``extra``); images stay uint8 N x H x W x C as stored."""

    def __init__(self, extra, plan: Sequence[np.ndarray], device: torch.device, depth: int = DEPTH):
        self.extra, self.plan, self.device = extra, plan, device
        self.cuda = device.type == "cuda"
        rows = max((len(p) for p in plan), default=0)
        self.free: queue.Queue = queue.Queue()
        for _ in range(depth):
            self.free.put(_Slot(rows, extra.image_shape, self.cuda))
        self.ready: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="robustode-prefetch", daemon=True)
        self.thread.start()

    def _produce(self) -> None:
        try:
            for index in self.plan:
                slot = self.free.get()
                if slot is None or self.stopped.is_set():  # closed early
                    return
                if slot.copied is not None:
                    slot.copied.synchronize()
                n = len(index)
                self.extra.gather(index, slot.images[:n].numpy())
                slot.labels[:n].copy_(torch.from_numpy(self.extra.labels[index]))
                self.ready.put((slot, n))
        except BaseException as err:  # noqa: BLE001 (handed to the consumer, which raises it)
            self.ready.put(err)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for _ in range(len(self.plan)):
                item = self.ready.get()
                if isinstance(item, BaseException):
                    raise item
                slot, n = item
                if self.cuda:
                    images = slot.images[:n].to(self.device, non_blocking=True)
                    labels = slot.labels[:n].to(self.device, non_blocking=True)
                    slot.copied = torch.cuda.Event()
                    slot.copied.record()
                else:
                    images, labels = slot.images[:n].clone(), slot.labels[:n].clone()
                self.free.put(slot)
                yield images, labels
        finally:
            self.close()

    def close(self) -> None:
        self.stopped.set()
        self.free.put(None)
        self.thread.join()
