"""Where a defense's step spends more than its passes of natural training: torch.profiler on one
defense step against ``passes`` natural steps (the same work if the defense costs exactly its
passes), the operators whose self time differs most, and the wall-clock ratio without the profiler,
a natural step after each of the defense's forwards (step_cost.py's ratio mode).

    python bench/profile_pair.py --model resnet20 --defense free-8 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from step_cost import Clock, Runner, interleaved, load_average
from torch.profiler import ProfilerActivity, profile

from robustode.utils import resolve_device


def self_times(block) -> tuple[float, dict[str, float]]:
    """(wall seconds, operator -> self CPU milliseconds) of ``block()`` under the profiler."""
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        block()
    return time.perf_counter() - start, {e.key: e.self_cpu_time_total / 1000 for e in prof.key_averages()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--defense", default="free-8")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--top", type=int, default=12, help="operators shown (default: 12)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"load average before: {load_average()}")
    device = resolve_device(args.device)
    natural, run = (Runner(args.model, spec, args.batch_size, Clock(device)) for spec in ("natural", args.defense))
    passes = round(run.defense.passes_per_batch)  # a float for some defenses (AWP, GradAlign)
    natural.steps(2), run.steps(1)  # warm-up
    wall_n, nat = self_times(lambda: natural.steps(passes))
    wall_d, own = self_times(lambda: run.steps(1))
    print(f"profiled: {passes} natural steps {1000 * wall_n:.0f} ms, one {args.defense} step {1000 * wall_d:.0f} ms "
          f"({wall_d / wall_n:.3f}x); self CPU in all {sum(nat.values()):.0f} / {sum(own.values()):.0f} ms")
    print(f"{'operator':48s} {'natural ms':>11s} {'defense ms':>11s} {'extra ms':>9s}")
    for op in sorted(set(nat) | set(own), key=lambda k: nat.get(k, 0) - own.get(k, 0))[: args.top]:
        print(f"{op[:48]:48s} {nat.get(op, 0):11.1f} {own.get(op, 0):11.1f} {own.get(op, 0) - nat.get(op, 0):9.1f}")
    ratios = interleaved(natural, run, args.pairs)["ratios"]
    print(f"interleaved at every forward, no profiler: {' '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}x")
    print(f"load average after: {load_average()}")
    return {"passes": passes, "natural_ms": nat, "defense_ms": own, "ratios": ratios,
            "median": statistics.median(ratios)}


if __name__ == "__main__":
    main()
