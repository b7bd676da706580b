"""Small CPU measurements behind bench/RESULTS.md's reading of step_cost.py's ratios (one thread):

    python bench/cpu_timing.py drift   # how a fixed piece of work's time drifts from block to block
    python bench/cpu_timing.py stem    # the stem's input gradient (Free's extra per replay), by kernel
    python bench/cpu_timing.py bn      # batch norm's double backward (GradAlign's), torch's and the closed form
    python bench/cpu_timing.py conv    # the same for a convolution
    python bench/cpu_timing.py relu    # the same for a ReLU

``drift`` times one 512x512 matmul in blocks of 1, 10 and 100 matmuls and reports, per block size,
the mean, the coefficient of variation, the lag-1 autocorrelation of the block times and the
interquartile range of the ratio of adjacent blocks: how well a block measured next to another
cancels the machine's drift. ``stem`` times the backward of resnet20's stem (Conv2d(3, 16, 3,
padding=1) on a 64x3x32x32 batch) with and without the input gradient, and the same input
gradient by other routes (each the minimum of ``--repeats`` calls). ``bn``, ``conv`` and ``relu`` time
one layer (train-mode BatchNorm2d(16), Conv2d(16, 16, 3, padding=1), ReLU) on a 64x16x32x32
activation: forward and backward, and GradAlign's pattern (the input gradient with create_graph,
then a penalty on it backpropagated) with torch's double backward and with
robustode.kernels.double_backward's closed form for that layer alone (checked to give torch's
gradients first).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from robustode.kernels import closed_form_double_backward


def drift(blocks=(1, 10, 100), size: int = 512, work: int = 3000, least: int = 60) -> list[dict]:
    """Per block size: mean seconds, coefficient of variation, lag-1 autocorrelation, adjacent-ratio quartiles."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    rows = []
    for k in blocks:
        times = []
        for _ in range(max(least, work // k)):
            start = time.perf_counter()
            for _ in range(k):
                a @ b
            times.append(time.perf_counter() - start)
        t = np.array(times)
        q1, q3 = np.percentile(t[1:] / t[:-1], [25, 75])
        rows.append({"block": k, "mean_s": float(t.mean()), "cv": float(t.std() / t.mean()),
                     "lag1": float(np.corrcoef(t[1:], t[:-1])[0, 1]), "adjacent_q1": float(q1),
                     "adjacent_q3": float(q3)})
    return rows


def least_seconds(f, repeats: int) -> float:
    f()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def stem(batch: int = 64, repeats: int = 30) -> dict[str, float]:
    """Milliseconds (minimum of ``repeats``) of the stem's backward pieces and of its input gradient by other routes."""
    x, w = torch.rand(batch, 3, 32, 32), 0.1 * torch.randn(16, 3, 3, 3)
    g = torch.randn(batch, 16, 32, 32)
    flipped = w.flip(2, 3).transpose(0, 1).contiguous()
    g_last = g.contiguous(memory_format=torch.channels_last)
    as_matrix = w.reshape(16, 27).t()

    def backward(mask):
        return lambda: torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                           mask)

    routes = {
        "backward, weight gradient only": backward([False, True, False]),
        "backward, input and weight gradients": backward([True, True, False]),
        "backward, input gradient only": backward([True, False, False]),
        "conv_transpose2d": lambda: F.conv_transpose2d(g, w, padding=1),
        "conv2d of the flipped weight": lambda: F.conv2d(g, flipped, padding=1),
        "conv2d of the flipped weight, channels-last": lambda: F.conv2d(g_last, flipped, padding=1),
        "matmul and fold": lambda: F.fold(torch.matmul(as_matrix, g.reshape(batch, 16, -1)), (32, 32), 3, padding=1),
        "slow_conv2d backward (im2col and gemm)": lambda: torch.ops.aten._slow_conv2d_backward(
            g, x, w, [3, 3], [1, 1], [1, 1], [True, False, False])[0],
    }
    reference = F.conv_transpose2d(g, w, padding=1)
    for name in ("conv2d of the flipped weight", "matmul and fold", "slow_conv2d backward (im2col and gemm)"):
        if not torch.allclose(routes[name](), reference, atol=1e-4):
            raise AssertionError(f"{name} does not give the stem's input gradient")
    return {name: 1000 * least_seconds(f, repeats) for name, f in routes.items()}


LAYERS = {"bn": lambda c: torch.nn.BatchNorm2d(c).train(), "conv": lambda c: torch.nn.Conv2d(c, c, 3, padding=1),
          "relu": lambda c: torch.nn.ReLU()}
SWITCHES = {"bn": "batch_norm", "conv": "convolution", "relu": "relu"}  # closed_form_double_backward's, per layer


def double_backward(layer: str = "bn", batch: int = 64, channels: int = 16, size: int = 32,
                    repeats: int = 30) -> dict[str, float]:
    """Milliseconds (minimum of ``repeats``) of one layer's passes (``LAYERS``), GradAlign's with either double
    backward; raises if the two give different gradients."""
    torch.manual_seed(0)
    module = LAYERS[layer](channels)
    x = torch.randn(batch, channels, size, size, requires_grad=True)

    def forward_backward():
        module(x).sum().backward()

    def penalty(closed: bool):
        def run():
            only = {switch: name == layer for name, switch in SWITCHES.items()}
            with closed_form_double_backward(**only) if closed else torch.enable_grad():
                y = module(x)
                (g,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)
            (g * g).sum().backward()
        return run

    def gradients(closed: bool):
        x.grad = None
        module.zero_grad()
        penalty(closed)()
        return [x.grad.clone()] + [p.grad.clone() for p in module.parameters()]

    if not all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(gradients(True), gradients(False))):
        raise AssertionError(f"the closed-form double backward of {layer} does not give torch's gradients")
    routes = {"forward and backward": forward_backward, "penalty, torch's double backward": penalty(False),
              "penalty, closed-form double backward": penalty(True)}
    return {name: 1000 * least_seconds(f, repeats) for name, f in routes.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["drift", "stem", *LAYERS])
    p.add_argument("--repeats", type=int, default=30, help="stem, bn, conv, relu: calls per route (default: 30)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.what == "drift":
        rows = drift()
        for r in rows:
            print(f"block of {r['block']:3d} matmuls: mean {1000 * r['mean_s']:.2f} ms, cv {r['cv']:.3f}, lag-1 "
                  f"autocorrelation {r['lag1']:.2f}, adjacent blocks' ratio quartiles {r['adjacent_q1']:.3f}-"
                  f"{r['adjacent_q3']:.3f}")
        return rows
    ms = stem(repeats=args.repeats) if args.what == "stem" else double_backward(args.what, repeats=args.repeats)
    for name, value in ms.items():
        print(f"{name:45s} {value:6.2f} ms")
    return ms


if __name__ == "__main__":
    main()
