"""Per-block Lipschitz estimates of the residual functions, at data points, along depth.

For a residual step x + f(x) (a shape-keeping block of a ResNet-family model) and for an ODE
block's field f(t, x) at points x(t) of its trajectory, the local Lipschitz constant of f at x
is the largest singular value of its input Jacobian J, estimated per point by Lanczos iteration on
J^T J (the Krylov refinement of power iteration: the same products, faster convergence). One forward
builds the graph; each iteration is two backward passes through it (J v by the double-backward trick,
then J^T J v). The iteration stops when every point's estimate moved by less than TOLERANCE (relative),
at most MAX_ITERATIONS times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models.blocks import PreActBlock
from .models.solver import integrate, ode_blocks

TOLERANCE = 0.01  # relative change of every point's estimate between two iterations
MAX_ITERATIONS = 20
DEPTH_POINTS = 4  # times t = k T / DEPTH_POINTS, k = 0 .. DEPTH_POINTS - 1, along an ODE block


@dataclass
class Estimate:
    block: str  # the module's name in the model
    t: float | None  # time along an ODE block (None: a discrete residual step)
    depth: int  # position along the model's depth (residual steps and ODE times in order)
    mean: float  # over the points
    max: float
    iterations: int  # Lanczos iterations until every point's estimate moved < TOLERANCE

    def to_dict(self) -> dict:
        return dict(vars(self))


def spectral_norm(f, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(per point the estimated largest singular value of df/dx at x, iterations used).

    Lanczos on A = J^T J, every point its own Krylov space (batched): iteration k applies A once and the
    largest eigenvalue of the k x k tridiagonal matrix (the Ritz value) estimates sigma^2 from below. With the
    same products as power iteration (one J v, one J^T w per iteration) it converges much faster: power
    iteration's estimate is the Rayleigh quotient of its last vector, Lanczos's the best one over the
    whole Krylov space, which contains that vector."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = f(x)  # one forward; every iteration reuses its graph
        u = torch.zeros_like(y, requires_grad=True)
        (pullback,) = torch.autograd.grad(y, x, u, create_graph=True)  # J^T u, linear in u

        def apply(q: torch.Tensor) -> torch.Tensor:  # J^T J q, per point
            (jv,) = torch.autograd.grad(pullback, u, q.to(x.dtype).view_as(x), retain_graph=True)  # J q: double backward
            (jtjv,) = torch.autograd.grad(y, x, jv, retain_graph=True)
            return jtjv.detach().flatten(1).double()

        return _lanczos(apply, x.detach().flatten(1).double())


def _lanczos(apply, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Batched Lanczos with full reorthogonalization (rows: points); (sqrt of the top Ritz values, iterations)."""
    q = torch.randn_like(like)
    basis = [q / q.norm(dim=1, keepdim=True)]
    alphas, betas, sigma = [], [], None
    for i in range(1, MAX_ITERATIONS + 1):
        w = apply(basis[-1])
        alphas.append((w * basis[-1]).sum(1))
        for b in basis:  # full reorthogonalization (twice is enough): the basis stays orthonormal in floats
            w = w - (w * b).sum(1, keepdim=True) * b
        for b in basis:
            w = w - (w * b).sum(1, keepdim=True) * b
        betas.append(w.norm(dim=1))
        t = torch.diag_embed(torch.stack(alphas, 1))
        if i > 1:
            off = torch.diag_embed(torch.stack(betas[:-1], 1), offset=1)
            t = t + off + off.transpose(1, 2)
        new = torch.linalg.eigvalsh(t)[:, -1].clamp_min(0).sqrt()
        exhausted = bool((betas[-1] <= 1e-12 * new.clamp_min(1e-30) ** 2).all())  # the Krylov space is whole
        if exhausted or (sigma is not None and ((new - sigma).abs() <= TOLERANCE * sigma.clamp_min(1e-30)).all()):
            return new.float(), i
        sigma = new
        basis.append(w / betas[-1].clamp_min(1e-300).unsqueeze(1))
    return sigma.float(), MAX_ITERATIONS


def block_inputs(model: nn.Module, x: torch.Tensor, blocks: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The input each of ``blocks`` receives when the model runs on ``x`` (a residual block's: the input of its
    first batch norm, which every stage's way of calling it passes through)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [(block.bn1 if isinstance(block, PreActBlock) else block).register_forward_pre_hook(
        lambda m, args, name=name: seen.setdefault(name, args[0].detach())) for name, block in blocks.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def profile(model: nn.Module, x: torch.Tensor) -> list[Estimate]:
    """Lipschitz estimates of every residual step and every ODE block (at DEPTH_POINTS times), in depth order."""
    steps = {n: m for n, m in model.named_modules() if isinstance(m, PreActBlock) and not m.downsamples}
    odes = {n: m for n, m in model.named_modules() if m in ode_blocks(model)}
    inputs = block_inputs(model, x, {**steps, **odes})
    rows: list[Estimate] = []
    for name, block in {**steps, **odes}.items():
        if name not in inputs:
            continue
        if name in steps:
            rows.append(_estimate(block.residual, inputs[name], name, None, len(rows)))
            continue
        solver, field = block.solver, block.field.field
        for k in range(DEPTH_POINTS):
            t = solver.T * k / DEPTH_POINTS
            with torch.no_grad():
                state = inputs[name] if k == 0 else integrate(block.field, inputs[name], solver, 0.0, t)
            at = torch.tensor(t, dtype=state.dtype, device=state.device)
            rows.append(_estimate(lambda u, at=at, f=field: f(at, u), state, name, t, len(rows)))
    return rows


def _estimate(f, x, name, t, depth) -> Estimate:
    sigma, iterations = spectral_norm(f, x)
    return Estimate(name, t, depth, sigma.mean().item(), sigma.max().item(), iterations)
