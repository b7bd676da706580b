"""How far the adjoint's input gradients are from direct backpropagation through the solver, on ode_net16_1
(rk4, untrained, seeded) at two step sizes: ||g_adjoint - g_direct|| / ||g_direct|| of the cross-entropy's
gradient at 16 random images.

    python bench/adjoint_gap.py
"""

from __future__ import annotations

import torch

from robustode.models import create


def gap(h: float) -> float:
    torch.manual_seed(0)
    direct = create(f"ode_net16_1(step_size={h})").eval()
    adjoint = create(f"ode_net16_1(step_size={h}, adjoint=True)").eval()
    adjoint.load_state_dict(direct.state_dict())
    x, y = torch.rand(16, 3, 32, 32), torch.arange(16) % 10
    grads = []
    for model in (direct, adjoint):
        u = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(model(u), y).backward()
        grads.append(u.grad)
    return ((grads[1] - grads[0]).norm() / grads[0].norm()).item()


if __name__ == "__main__":
    for h in (0.1, 0.05):
        print(f"h={h}: relative difference {gap(h):.1e}")
