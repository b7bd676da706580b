"""What one block's Lipschitz estimate (robustode.lipschitz.spectral_norm) costs, in that block's
forward-backward passes at the same points, and how many Lanczos iterations it takes to its tolerance.

Interleaved: each round times one forward-backward of the block's residual function (or ODE field)
and one estimate, back to back, so a change of the machine's load hits both; the ratio is the median
of the rounds' ratios. Also the ratio of their FLOPs (torch's FLOP counter: convolutions and matrix
products, double backward included), which no load changes.

    python bench/lipschitz_cost.py [--rounds 15] [--points 16] [--checkpoint CKPT]

Without --checkpoint: untrained ode_net16_1 (its field at t = 0.5) and stepsize_resnet20 (stage 1,
block 1), seeded; with one: the first ODE block's field of that checkpoint's model as well.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from robustode.lipschitz import MAX_ITERATIONS, TOLERANCE, spectral_norm
from robustode.models import create
from robustode.training.checkpoint import load_model_from_checkpoint


def _cases(checkpoint: str | None, points: int):
    torch.manual_seed(0)
    ode = create("ode_net16_1").eval()
    t = torch.tensor(0.5)
    yield "ode_net16_1 field (untrained)", lambda u: ode.blocks[0].field.field(t, u), torch.randn(points, 16, 16, 16)
    resnet = create("stepsize_resnet20").eval()
    yield "stepsize_resnet20 block (untrained)", resnet.stages[0].blocks[1].residual, torch.randn(points, 16, 32, 32)
    if checkpoint:
        trained = load_model_from_checkpoint(checkpoint).eval()
        yield (f"{checkpoint} field", lambda u: trained.blocks[0].field.field(t, u),
               torch.randn(points, *_field_shape(trained)))


def _field_shape(model) -> tuple[int, ...]:
    """The state's shape (C, H, W) inside the model's first ODE block, from one image."""
    seen = []
    hook = model.blocks[0].register_forward_hook(lambda m, inp, out: seen.append(tuple(out.shape[1:])))
    with torch.no_grad():
        model(torch.rand(1, 3, 32, 32))
    hook.remove()
    return seen[0]


def _forward_backward(f, x) -> None:
    x = x.detach().requires_grad_(True)
    y = f(x)
    torch.autograd.grad(y, x, torch.ones_like(y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--checkpoint")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tolerance {TOLERANCE:g}, "
          f"at most {MAX_ITERATIONS} iterations; {args.points} points; {args.rounds} interleaved rounds")
    print("| function | forward-backward ms | estimate ms | estimate / forward-backward: time (median, range) "
          "| FLOPs | iterations |")
    print("|---|---|---|---|---|---|")
    for name, f, x in _cases(args.checkpoint, args.points):
        _forward_backward(f, x), spectral_norm(f, x)  # warm-up
        fbs, estimates, ratios, iterations = [], [], [], set()
        for _ in range(args.rounds):
            start = time.perf_counter()
            _forward_backward(f, x)
            middle = time.perf_counter()
            _, used, _ = spectral_norm(f, x)
            end = time.perf_counter()
            fbs.append(middle - start)
            estimates.append(end - middle)
            ratios.append((end - middle) / (middle - start))
            iterations.add(used)
        print(f"| {name} | {statistics.median(fbs) * 1e3:.1f} | {statistics.median(estimates) * 1e3:.1f} | "
              f"{statistics.median(ratios):.1f} ({min(ratios):.1f}-{max(ratios):.1f}) | {_flop_ratio(f, x):.1f} | "
              f"{'/'.join(map(str, sorted(iterations)))} |")


class _Flops(TorchDispatchMode):
    """The FLOPs of the aten operators torch's FLOP counter knows (FlopCounterMode itself hooks modules, which
    autograd.grad on a leaf refuses)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **(kwargs or {}), out_val=out)
        return out


def _flop_ratio(f, x) -> float:
    """FLOPs of one estimate over those of one forward-backward (the estimate's random start: seeded)."""
    with _Flops() as once:
        _forward_backward(f, x)
    torch.manual_seed(0)
    with _Flops() as estimate:
        spectral_norm(f, x)
    return estimate.total / once.total


if __name__ == "__main__":
    main()
