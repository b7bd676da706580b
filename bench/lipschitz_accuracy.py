"""How close robustode's Lipschitz estimate (robustode.lipschitz.spectral_norm) comes to a converged one, and
what the usual "moved < 1% since the last iteration" stop would have given, for Lanczos and for power
iteration, on the functions of bench/lipschitz_cost.py (seeds 0-2).

    python bench/lipschitz_accuracy.py [--points 16] [--checkpoint CKPT]

"worst" is the smallest estimate / reference over the points (the estimates come from below).
"""

from __future__ import annotations

import argparse

import torch
from lipschitz_cost import _cases

from robustode import lipschitz


def _estimate(f, x, seed: int, tolerance: float, iterations: int):
    torch.manual_seed(seed)
    saved = lipschitz.TOLERANCE, lipschitz.MAX_ITERATIONS
    lipschitz.TOLERANCE, lipschitz.MAX_ITERATIONS = tolerance, iterations
    try:
        return lipschitz.spectral_norm(f, x)
    finally:
        lipschitz.TOLERANCE, lipschitz.MAX_ITERATIONS = saved


def _power(f, x, seed: int, iterations: int) -> list[torch.Tensor]:
    """Power iteration on J^T J with the same products; its estimate after each iteration."""
    torch.manual_seed(seed)
    shape = (-1, *[1] * (x.dim() - 1))
    x = x.detach().requires_grad_(True)
    y = f(x)
    u = torch.zeros_like(y, requires_grad=True)
    (pullback,) = torch.autograd.grad(y, x, u, create_graph=True)
    v = torch.randn_like(x)
    v = v / v.flatten(1).norm(dim=1).view(shape)
    history = []
    for _ in range(iterations):
        (jv,) = torch.autograd.grad(pullback, u, v, retain_graph=True)
        (w,) = torch.autograd.grad(y, x, jv, retain_graph=True)
        history.append(jv.flatten(1).norm(dim=1).detach())
        v = (w / w.flatten(1).norm(dim=1).view(shape)).detach()
    return history


def _change_stop(history: list[torch.Tensor]) -> int:
    """The first iteration whose estimate moved by < 1% from the one before, at every point (1-based)."""
    return next((k + 1 for k in range(1, len(history))
                 if ((history[k] - history[k - 1]).abs() <= 0.01 * history[k - 1]).all()), len(history))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--checkpoint")
    args = parser.parse_args()
    print("| function | seed | residual rule: iterations, worst | Lanczos, change < 1%: iterations, worst "
          "| power, change < 1%: iterations, worst |")
    print("|---|---|---|---|---|")
    for name, f, x in _cases(args.checkpoint, args.points):
        reference, _, _ = _estimate(f, x, 0, 1e-9, 150)
        for seed in range(3):
            sigma, used, _ = _estimate(f, x, seed, lipschitz.TOLERANCE, lipschitz.MAX_ITERATIONS)
            lanczos = [_estimate(f, x, seed, 0.0, k)[0] for k in range(1, 31)]
            power = _power(f, x, seed, 60)
            k_l, k_p = _change_stop(lanczos), _change_stop(power)
            worst = [(s / reference).min().item() for s in (sigma, lanczos[k_l - 1], power[k_p - 1])]
            print(f"| {name} | {seed} | {used}, {worst[0]:.4f} | {k_l}, {worst[1]:.4f} | {k_p}, {worst[2]:.4f} |")


if __name__ == "__main__":
    main()
