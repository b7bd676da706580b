"""Training throughput, model x defense: images/s, epoch time, passes per image, achieved TFLOP/s.

    python bench/throughput.py                                  # 5 models x 7 defenses, auto device
    python bench/throughput.py --models wrn34_10 --defenses natural,pgd-10 --steps 20 --json out.json
    python bench/throughput.py --models preact_resnet18 --defenses natural --compile reduce-overhead

Every pair trains through robustode.fit (the entrance to robustode.training.fit), the loop every run uses (data resident on the
device, on-device crop and flip, bf16 autocast and channels_last on CUDA, fused SGD), on random
uint8 images: throughput does not depend on the pixels. Warm-up data epochs come first (cuDNN
autotuning, compilation), then timed data epochs of --steps minibatches each; the time is the
loop's own, read after synchronizing. FGSM-RS runs without its end-of-epoch guard (the guard is a
fixed cost per epoch, negligible over 50,000 images, large over a few timed steps).

FLOPs of one train_step are counted once with torch.utils.flop_counter on a small batch and scaled
to the batch (convolutions, matmuls, attention; an attack step's backward counts its input gradient
only, which is all it computes). "vs natural" is epoch time / (passes per image x natural's epoch
time for that model): 1.0 means a pass costs what a natural pass costs.

Measured figures and the card they came from: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from contextlib import nullcontext

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from robustode.data.types import DataSet, Split
from robustode.defenses import create_defense
from robustode.models import create
from robustode.api import fit
from robustode.training.optim import param_groups, sgd_factory
from robustode.utils import device_name, resolve_device

MODELS = ("wrn34_10", "preact_resnet18", "lm_resnet56", "meanfield_resnet56", "macaron_vit")
DEFENSES = ("natural", "fgsm-rs", "pgd-10", "free-8", "yopo-5-3", "yopo-3-5", "trades-10")
BATCH = {"wrn34_10": 256}  # the prototype's batches: 256 for WRN-34-10, 512 for the others
DEFAULT_BATCH = 512
EPOCH = 50_000  # CIFAR-10's training images
# Dense bf16 tensor-core peaks from NVIDIA's data sheets (TFLOP/s), matched in order against the name.
PEAKS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))
FLOP_BATCH = 16  # images in the batch whose train_step the FLOP counter runs


def peak_tflops(name: str) -> float | None:
    return next((peak for key, peak in PEAKS if key in name), None)


def random_data(n: int, device: torch.device, shape=(3, 32, 32), classes: int = 10) -> DataSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g).to(device)
    labels = torch.randint(0, classes, (n,), generator=g).to(device)
    split = Split(images, labels)
    return DataSet("random", split, split, [str(c) for c in range(classes)], kind="synthetic", source="random")


def make_defense(spec: str):
    defense = create_defense(spec)
    if getattr(defense, "guard", False):
        defense.guard = False
    return defense


def flops_per_image(model_name: str, spec: str, device: torch.device, precision: str) -> float:
    """FLOPs one train_step spends per training image (all of its passes), counted on a small batch."""
    torch.manual_seed(0)
    model = create(model_name, num_classes=10).to(device).train()
    defense = make_defense(spec)
    optimizers = list(defense.optimizers(model, param_groups(model, 5e-4), sgd_factory(0.01, 0.9, False, device)))
    x = torch.rand(FLOP_BATCH, *getattr(model, "input_shape", (3, 32, 32)), device=device)
    y = torch.randint(0, 10, (FLOP_BATCH,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    with FlopCounterMode(display=False) as counter, autocast:
        defense.train_step(model, x, y, optimizers, lambda: None)
    return counter.get_total_flops() / FLOP_BATCH


def measure(model_name: str, spec: str, args, device: torch.device) -> dict:
    defense = make_defense(spec)
    batch = args.batch_size or BATCH.get(model_name, DEFAULT_BATCH)
    data = random_data(batch * args.steps, device)
    epochs = (args.warmup + args.timed) * defense.replays  # nominal epochs: Free-m counts replays
    result = fit(model_name, defense, data, epochs=epochs, batch_size=batch, lr=0.01, schedule="constant",
                 device=str(device), precision=args.precision, compile=args.compile, seed=0, quiet=True)
    timed = result.history[args.warmup:]
    if result.stopped_reason or len(timed) != args.timed:
        raise RuntimeError(f"{model_name} / {spec} stopped early: {result.stopped_reason}")
    seconds = sum(row["seconds"] for row in timed)
    images_per_s = sum(row["images"] for row in timed) / seconds
    flops = flops_per_image(model_name, spec, device, result.run.train.precision)
    return {"model": model_name, "defense": spec, "batch_size": batch, "images_per_s": images_per_s,
            "step_ms": 1000 * batch / images_per_s, "epoch_s": EPOCH / images_per_s,
            "passes_per_image": defense.passes_per_batch, "gflop_per_image": flops / 1e9,
            "tflops": flops * images_per_s / 1e12, "precision": result.run.train.precision,
            "channels_last": result.run.train.channels_last, "compile": args.compile}


def add_ratios(rows: list[dict], peak: float | None) -> None:
    """Fraction of the peak, and epoch time against passes x the natural epoch time of the same model."""
    natural = {r["model"]: r["epoch_s"] for r in rows if r["defense"] == "natural"}
    for row in rows:
        row["peak_fraction"] = None if peak is None else row["tflops"] / peak
        base = natural.get(row["model"])
        row["vs_natural"] = None if base is None else row["epoch_s"] / (row["passes_per_image"] * base)


def show(report: dict, console: Console) -> None:
    table = Table(title=f"training throughput on {report['device']} (torch {report['torch']})")
    for name in ("model", "defense", "batch", "img/s", "step ms", "epoch 50k s", "passes", "GFLOP/img",
                 "TFLOP/s", "% peak", "vs natural"):
        table.add_column(name, justify="left" if name in ("model", "defense") else "right", no_wrap=True)
    for r in report["rows"]:
        table.add_row(r["model"], r["defense"], str(r["batch_size"]), f"{r['images_per_s']:,.0f}",
                      f"{r['step_ms']:.1f}", f"{r['epoch_s']:.2f}", f"{r['passes_per_image']:g}",
                      f"{r['gflop_per_image']:.2f}", f"{r['tflops']:.3g}",
                      "-" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%",
                      "-" if r["vs_natural"] is None else f"{r['vs_natural']:.2f}x")
    console.print(table)
    peak = report["peak_tflops"]
    console.print(f"peak: {'unknown (pass --peak-tflops)' if peak is None else f'{peak:g} TFLOP/s dense bf16'}"
                  f"; compile: {report['compile']}; command: {report['command']}")


def wide_console() -> Console:
    """A console that does not squeeze the table into 80 columns when the output is a log file."""
    console = Console()
    if not console.is_terminal:
        console.width = 180
    return console


def command_line(script: str, argv) -> str:
    argv = sys.argv[1:] if argv is None else argv
    return " ".join([f"python bench/{script}", *map(shlex.quote, argv)])


def write_json(report: dict, path: str | None) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    p.add_argument("--defenses", default=",".join(DEFENSES), help="comma-separated defense specs")
    p.add_argument("--batch-size", type=int, help="one batch for all models (default: 256 for wrn34_10, else 512)")
    p.add_argument("--steps", type=int, default=20, help="minibatches per timed data epoch (default: 20)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up data epochs, not timed (default: 1)")
    p.add_argument("--timed", type=int, default=1, help="timed data epochs (default: 1)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--precision", choices=["bf16", "float32"], help="default: bf16 on CUDA, float32 on CPU")
    p.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                   help="torch.compile the model; optionally a mode, e.g. reduce-overhead (CUDA graphs)")
    p.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak (default: looked up by name)")
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    name = device_name(device)
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    console = wide_console()
    rows = []
    for model_name in args.models.split(","):
        for spec in args.defenses.split(","):
            rows.append(measure(model_name, spec, args, device))
            console.print(f"{model_name} / {spec}: {rows[-1]['images_per_s']:,.0f} img/s", highlight=False)
    add_ratios(rows, peak)
    report = {"device": name, "torch": torch.__version__, "peak_tflops": peak, "compile": args.compile,
              "command": command_line("throughput.py", argv), "rows": rows}
    show(report, console)
    write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
