"""YOPO's work outside its m full passes, part by part, inside its training step and alone: the input
vector-Jacobian product A^T dL/dz of each pass, the n sign steps of each pass, and the last Hamiltonian's
weight-gradient product (the closed-form path of an affine conv stem; bench/step_cost.py times them together).

    python bench/yopo_outside_parts.py [--model ode_net16_1] [--defense yopo-5-3] [--batch-size 64]

Milliseconds per training step, means over 10 steps after 3 warm-up steps; "alone" repeats one call 50 times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustode.defenses import create_defense
from robustode.defenses.yopo import sign_steps
from robustode.models import create


def _alone(work, repeats: int = 50) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ode_net16_1")
    parser.add_argument("--defense", default="yopo-5-3")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, defense = create(args.model), create_defense(args.defense)
    x, y = torch.rand(args.batch_size, 3, 32, 32), torch.randint(0, 10, (args.batch_size,))
    defense.prepare(model, x)
    optimizers = list(defense.optimizers(model, [{"params": list(model.parameters())}],
                                         lambda groups: torch.optim.SGD(groups, lr=0.01, momentum=0.9)))
    spent = {"vjp": 0.0, "sign steps": 0.0, "last product": 0.0}

    def inner(x, z, eta, dz):  # YOPO._closed_form_inner, its two parts timed apart
        start = time.perf_counter()
        (grad,) = torch.autograd.grad(z, eta, dz, retain_graph=True)
        middle = time.perf_counter()
        out = sign_steps(x, eta.detach(), grad.sign().mul_(defense.sigma), steps=defense.n, eps=defense.eps)
        spent["vjp"] += middle - start
        spent["sign steps"] += time.perf_counter() - middle
        return out

    last = defense._last_hamiltonian

    def timed_last(*a, **k):
        start = time.perf_counter()
        last(*a, **k)
        spent["last product"] += time.perf_counter() - start

    defense._closed_form_inner, defense._last_hamiltonian = inner, timed_last
    steps = []
    for i in range(13):
        if i == 3:
            spent = dict.fromkeys(spent, 0.0)
        start = time.perf_counter()
        defense.train_step(model, x, y, optimizers, lambda: None)
        steps.append(time.perf_counter() - start)
    step = 1e3 * sum(steps[3:]) / 10
    split = defense.split(model, x)
    eta = torch.zeros_like(x).requires_grad_(True)
    z = split.layer_one(x + eta)
    dz = torch.randn_like(z)
    (grad,) = torch.autograd.grad(z, eta, dz, retain_graph=True)
    alone = {"vjp": defense.m * _alone(lambda: torch.autograd.grad(z, eta, dz, retain_graph=True)),
             "sign steps": defense.m * _alone(lambda: sign_steps(x, eta.detach(), grad.sign().mul_(defense.sigma),
                                                                 steps=defense.n, eps=defense.eps)),
             "last product": _alone(lambda: defense._prepared.product(x + eta.detach(), dz))}
    print(f"{args.model} {args.defense}, batch {args.batch_size}, {torch.get_num_threads()} threads: "
          f"step {step:.1f} ms")
    print("| part | in the step (ms per step) | alone (ms per step) |")
    print("|---|---|---|")
    for part in spent:
        print(f"| {part} | {1e3 * spent[part] / 10:.2f} | {alone[part]:.2f} |")
    total_in, total_alone = 1e3 * sum(spent.values()) / 10, sum(alone.values())
    print(f"| all | {total_in:.2f} ({total_in / step:.2%}) | {total_alone:.2f} ({total_alone / step:.2%}) |")


if __name__ == "__main__":
    main()
