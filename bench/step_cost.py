"""A defense's step against natural training's, measured so that machine noise cancels.

    python bench/step_cost.py                         # resnet20, preact_resnet18: YOPO's outside share, batch 64
    python bench/step_cost.py --mode ratio --models resnet20 --defenses natural,natural-x8,free-8,yopo-5-3
    python bench/step_cost.py --models wrn34_10 --batch-size 256 --paths closed-form,autograd --json out.json

Two measurements, each on one random batch, with the model set up as the training loop sets it
up (channels_last and bf16 autocast on CUDA, fused SGD there) and warm-up steps first:

- ``--mode fraction`` (YOPO specs): each timed train_step is timed whole and, inside it, the work
  outside the m full passes (``time_outside``: the input vector-Jacobian products, the sign
  steps and the Hamiltonian gradients; on the autograd path the m * n inner autograd passes and
  the m Hamiltonian passes), both with a device synchronize on either side. "outside %" =
  outside / step over the timed steps. The synchronizing makes a CUDA step a little slower.
- ``--mode ratio`` (any spec): the defense's train_steps with natural steps, on a second model,
  run between its forwards: a forward through the defense model's output layer (its last leaf
  module with parameters) leaves one natural step due, run when the next forward reaches layer
  one (its first such module; by then a forward-backward defense has finished the last pass's
  backward) or after the step. So one natural step follows each attack step's forward, each of
  Free's replays, each YOPO pass. They are timed apart and taken out of the defense's time, one
  more runs before the first step, and each pair (``--steps`` defense train_steps) gives defense
  time / (passes per step x steps x the mean natural step run in it and just before it); the row
  shows the median of the ``--pairs`` pairs (1.0: a pass costs what a natural pass costs,
  bench/throughput.py's "vs natural").
  Alternating at every forward keeps the natural steps within a pass's time of the defense's
  work, so the machine's drift (on this project's shared 2-core CPU, step times drift by +-20%
  over seconds) cancels. ``natural-xK`` (this bench's own spec) is natural training with each
  minibatch trained on K times in one train_step: natural against itself at K passes per step,
  the A/A row that shows the bench's bias and resolution at a defense's length.

Measured figures and the machine they came from: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch
from rich.table import Table
from throughput import command_line, make_defense, wide_console, write_json

from robustode.defenses.natural import Natural
from robustode.models import create
from robustode.training.optim import param_groups, sgd_factory
from robustode.utils import device_name, resolve_device, synchronize

PATHS = ("closed-form", "autograd")


class NaturalTimes(Natural):
    """natural-xK: K natural steps on the minibatch as one train_step (K passes): the ratio mode's A/A row."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    @property
    def passes_per_batch(self) -> float:
        return float(self.k)

    def train_step(self, model, x, y, optimizers, on_step):
        for _ in range(self.k):
            out = super().train_step(model, x, y, optimizers, on_step)
        return out


def bench_defense(spec: str):
    """A registered defense, or this bench's natural-xK."""
    head, _, k = spec.partition("-x")
    return NaturalTimes(int(k)) if head == "natural" and k.isdigit() and int(k) > 0 else make_defense(spec)


class Clock:
    """Times blocks (wall time) with a device synchronize on either side; ``seconds`` sums them by name."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[name] += time.perf_counter() - start


OUTSIDE = ("_inner", "_closed_form_inner", "_last_hamiltonian")  # YOPO's methods outside its m full passes


def time_outside(defense, clock: Clock) -> None:
    """Times the work outside YOPO's m full passes as ``clock``'s "outside": wraps the methods that do it
    (``OUTSIDE``), on this object alone."""

    def timed(work):
        @functools.wraps(work)
        def run(*args, **kwargs):
            with clock("outside"):
                return work(*args, **kwargs)

        return run

    for name in OUTSIDE:
        setattr(defense, name, timed(getattr(defense, name)))


class Runner:
    """One model, defense, optimizers and batch, as the loop would have them; ``steps(k)`` times k train_steps."""

    def __init__(self, model_name: str, spec: str, batch: int, clock: Clock, path: str = "closed-form"):
        torch.manual_seed(0)
        device = clock.device
        fmt = torch.channels_last if device.type == "cuda" else torch.preserve_format
        self.model = create(model_name, num_classes=10).to(device, memory_format=fmt).train()
        self.defense = bench_defense(spec)
        if hasattr(self.defense, "closed_form"):
            self.defense.closed_form = path == "closed-form"
        make = sgd_factory(0.01, 0.9, False, device)
        self.optimizers = list(self.defense.optimizers(self.model, param_groups(self.model, 5e-4), make))
        shape = getattr(self.model, "input_shape", (3, 32, 32))
        self.x = torch.rand(batch, *shape, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, 10, (batch,), device=device)
        self.clock = clock
        bf16 = device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else nullcontext

    def steps(self, k: int) -> list[float]:
        """Seconds of each of k train_steps."""
        seconds = []
        for _ in range(k):
            before = self.clock.seconds["step"]
            with self.clock("step"), self.autocast():
                self.defense.train_step(self.model, self.x, self.y, self.optimizers, lambda: None)
            seconds.append(self.clock.seconds["step"] - before)
        return seconds


def leaf_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The leaf modules with parameters, in registration order (layer one first, the classifier head last in
    every built-in model)."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None and next(m.parameters(False), None)
              is not None]
    if not leaves:
        raise ValueError(f"{type(model).__name__} has no leaf module with parameters to time its forwards by")
    return leaves


def interleaved(natural: Runner, run: Runner, pairs: int, steps: int = 1) -> dict:
    """``pairs`` pairs of ``steps`` defense train_steps, one natural step after each forward through the defense
    model's output layer (run when the next forward reaches layer one, or after the step) and one before the
    first; the runners need clocks of their own, as the natural steps are timed inside the defense's. Returns
    the defense's seconds per step with the natural steps taken out ("own"), every natural step ("natural")
    and each pair's own time / (passes x steps x the mean of its natural steps and the one before them)
    ("ratios")."""
    if natural.clock is run.clock:
        raise ValueError("interleaved: the natural and the defense runner need clocks of their own")
    passes = run.defense.passes_per_batch
    pending, inner = [], []  # a natural step is due (the output layer ran); the natural steps of this pair

    def natural_step(*_):
        if pending:
            pending.clear()
            with torch.enable_grad():  # some defenses run a forward under no_grad
                inner.extend(natural.steps(1))

    before = natural.steps(1)
    own, every, ratios = [], list(before), []
    leaves = leaf_modules(run.model)
    hooks = [leaves[-1].register_forward_hook(lambda *_: pending.append(True)),
             leaves[0].register_forward_pre_hook(natural_step)]
    try:
        for _ in range(pairs):
            inner.clear()
            seconds = sum(run.steps(steps)) - sum(inner)
            natural_step()  # the last forward's, after the step
            own.append(seconds / steps)
            ratios.append(seconds / (passes * steps * statistics.mean(before + inner)))
            every.extend(inner)
            before = inner[-1:] or before
    finally:
        for hook in hooks:
            hook.remove()
    return {"own": own, "natural": every, "ratios": ratios}


def fraction_row(model_name: str, spec: str, path: str, args, device: torch.device) -> dict:
    run = Runner(model_name, spec, args.batch_size, Clock(device), path)
    run.steps(args.warmup)
    run.clock.seconds.clear()
    time_outside(run.defense, run.clock)
    steps = run.steps(args.steps)
    outside = run.clock.seconds["outside"]
    if run.defense.last_path != path:
        raise RuntimeError(f"{model_name} / {spec}: asked for the {path} path, the step took {run.defense.last_path}")
    return {"model": model_name, "defense": spec, "path": path, "batch_size": args.batch_size,
            "step_ms": 1000 * sum(steps) / len(steps), "outside_ms": 1000 * outside / len(steps),
            "outside_fraction": outside / sum(steps), "steps": len(steps)}


def ratio_row(model_name: str, spec: str, path: str, args, device: torch.device) -> dict:
    """The defense against natural training, alternated at every forward (``interleaved``)."""
    natural = Runner(model_name, "natural", args.batch_size, Clock(device))
    run = Runner(model_name, spec, args.batch_size, Clock(device), path)
    natural.steps(args.warmup)
    run.steps(args.warmup)
    timed = interleaved(natural, run, args.pairs, args.steps)
    path = path if hasattr(run.defense, "closed_form") else "-"
    return {"model": model_name, "defense": spec, "path": path, "batch_size": args.batch_size,
            "passes": run.defense.passes_per_batch, "step_ms": 1000 * statistics.median(timed["own"]),
            "natural_ms": 1000 * statistics.median(timed["natural"]), "natural_steps": len(timed["natural"]),
            "vs_natural": statistics.median(timed["ratios"]), "pairs": timed["ratios"]}


def show(report: dict, console) -> None:
    fraction = report["mode"] == "fraction"
    what = "YOPO outside the m full passes" if fraction else f"step vs natural, median of {report['pairs']} pairs"
    table = Table(title=f"{what} on {report['device']} (torch {report['torch']}, {report['threads']} threads)")
    names = (("model", "defense", "path", "batch", "step ms", "outside ms", "outside %") if fraction else
             ("model", "defense", "path", "batch", "passes", "step ms", "natural ms", "vs natural", "pairs"))
    for name in names:
        table.add_column(name, justify="left" if name in ("model", "defense", "path", "pairs") else "right",
                         no_wrap=True)
    for r in report["rows"]:
        if fraction:
            table.add_row(r["model"], r["defense"], r["path"], str(r["batch_size"]), f"{r['step_ms']:.1f}",
                          f"{r['outside_ms']:.2f}", f"{100 * r['outside_fraction']:.2f}%")
        else:
            table.add_row(r["model"], r["defense"], r.get("path", "-"), str(r["batch_size"]), f"{r['passes']:g}",
                          f"{r['step_ms']:.1f}",
                          f"{r['natural_ms']:.1f}", f"{r['vs_natural']:.3f}x", pairs_cell(r["pairs"]))
    console.print(table)
    console.print(f"command: {report['command']}; load average (1, 5, 15 min) before / after: {report['load']}")


def pairs_cell(pairs: list[float]) -> str:
    """Up to 9 pairs one by one; more as their quartiles and range."""
    if len(pairs) <= 9:
        return " ".join(f"{p:.3f}" for p in pairs)
    q1, _, q3 = statistics.quantiles(pairs, n=4)
    return f"quartiles {q1:.3f}-{q3:.3f}, range {min(pairs):.3f}-{max(pairs):.3f} ({len(pairs)} pairs)"


def load_average() -> str:
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["fraction", "ratio"], default="fraction")
    p.add_argument("--models", default="resnet20,preact_resnet18", help="comma-separated model names")
    p.add_argument("--defenses", default="yopo-5-3,yopo-3-5", help="comma-separated specs (YOPO only for fraction)")
    p.add_argument("--paths", default="closed-form", help=f"of {', '.join(PATHS)}, for defenses with both (YOPO's "
                   "inner steps, GradAlign's batch-norm double backward)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps per row, or defense steps per pair (default: 3)")
    p.add_argument("--pairs", type=int, default=3, help="pairs in ratio mode (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--json", help="write the report here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True  # as the training loop runs: fixed shapes, cuDNN picks its kernels
    console, before, rows = wide_console(), load_average(), []
    for model_name in args.models.split(","):
        for spec in args.defenses.split(","):
            for path in args.paths.split(","):
                row = (fraction_row if args.mode == "fraction" else ratio_row)(model_name, spec, path, args, device)
                rows.append(row)
                console.print(f"{model_name} / {spec} / {row['path']}: {row['step_ms']:.0f} ms", highlight=False)
                if row["path"] == "-":  # one path only
                    break
    report = {"mode": args.mode, "pairs": args.pairs, "device": device_name(device),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "command": command_line("step_cost.py", argv), "load": f"{before} / {load_average()}", "rows": rows}
    show(report, console)
    write_json(report, args.json)
    return report


if __name__ == "__main__":
    main()
