"""Evaluation throughput: images per second for clean + PGD-20 through robustode's evaluator.

    python bench/eval_throughput.py                      # preact_resnet18, auto device
    python bench/eval_throughput.py --model wrn34_10 --n 2048 --batch-size 256

Random images and an untrained model: throughput does not depend on the weights. PGD-20 is
21 forward and 20 backward passes per image, in float32 (TF32 where torch allows it), eval mode.
Not a test: it prints numbers, it asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from robustode.attacks import pgd
from robustode.api import evaluate
from robustode.models import create
from robustode.utils import device_name, resolve_device, synchronize


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    return create(name, num_classes=num_classes)


def timed(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="preact_resnet18")
    parser.add_argument("--n", type=int, default=2048, help="test images to evaluate")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = resolve_device(args.device)
    model = build_model(args.model).to(device).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=g).to(device).float() / 255
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    warm = min(args.batch_size, args.n)
    evaluate(model, (x[:warm], y[:warm]), batch_size=args.batch_size, quiet=True, masking_checks=False)

    seconds = timed(lambda: evaluate(model, (x, y), batch_size=args.batch_size, quiet=True,
                                     masking_checks=False), device)
    batch, batch_y = x[:args.batch_size], y[:args.batch_size]
    attack_seconds = timed(lambda: pgd(model, batch, batch_y, steps=20), device)
    masked = timed(lambda: evaluate(model, (x, y), batch_size=args.batch_size, quiet=True), device)

    tf32 = device.type == "cuda" and torch.backends.cudnn.allow_tf32
    print(f"device: {device_name(device)}   torch {torch.__version__}   model {args.model}   "
          f"n {args.n}   batch {args.batch_size}   float32{' (TF32 convolutions)' if tf32 else ''}")
    print(f"evaluate, clean + PGD-20:            {args.n / seconds:10.1f} images/s  ({seconds:.2f} s)")
    print(f"pgd() alone, one batch of {len(batch):<5}:     {len(batch) / attack_seconds:10.1f} images/s")
    print(f"evaluate with the masking checks:    {args.n / masked:10.1f} images/s  ({masked:.2f} s)")


if __name__ == "__main__":
    main()
