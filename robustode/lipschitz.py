"""Per-block Lipschitz estimates of the residual functions, at data points, along depth.

For a residual step x + f(x) (a shape-keeping block of a ResNet-family model) and for an ODE
block's field f(t, x) at points x(t) of its trajectory, the local Lipschitz constant of f at x
is the largest singular value of its input Jacobian J, estimated per point by Lanczos iteration on
J^T J (the Krylov refinement of power iteration: the same products, faster convergence). One forward
builds the graph; each iteration is two backward passes through it (J v by the double-backward trick,
then J^T J v). The iteration stops when every point's top Ritz pair's relative residual is at most
TOLERANCE (see spectral_norm), at most MAX_ITERATIONS times.
"""

from __future__ import annotations

import torch
from torch import nn

from .models.blocks import PreActBlock
from .models.solver import integrate, ode_blocks
from .records.parts import LipschitzRow

TOLERANCE = 0.01  # every point's top Ritz pair of J^T J: residual <= TOLERANCE x its value
MAX_ITERATIONS = 30  # a cap on the cost: each iteration ~1.5 forward-backwards in FLOPs (bench/lipschitz_cost.py)
DEPTH_POINTS = 4  # times t = k T / DEPTH_POINTS, k = 0 .. DEPTH_POINTS - 1, along an ODE block


def spectral_norm(f, x: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """(per point the estimated largest singular value of df/dx at x, iterations used, whether every point
    reached the tolerance: False when MAX_ITERATIONS ran out first).

    Lanczos on A = J^T J, every point its own Krylov space (batched): iteration k applies A once and the
    largest eigenvalue theta of the k x k tridiagonal matrix (the top Ritz value) estimates sigma^2 from
    below; power iteration with the same products (one J v, one J^T w per iteration) takes the Rayleigh
    quotient of its last vector, which the Krylov space contains, so it is never closer. The iteration stops
    when every point's top Ritz pair has a residual ||A s - theta s|| (= beta_k |last entry of s|) of at most
    TOLERANCE x theta: then A has an eigenvalue within 1% of theta, so J a singular value within ~0.5% of the
    estimate (a change between iterations says less: it stops a slowly rising estimate several % short)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = f(x)  # one forward; every iteration reuses its graph
        u = torch.zeros_like(y, requires_grad=True)
        (pullback,) = torch.autograd.grad(y, x, u, create_graph=True)  # J^T u, linear in u

        def apply(q: torch.Tensor) -> torch.Tensor:  # J^T J q, per point
            (jv,) = torch.autograd.grad(pullback, u, q.to(x.dtype).view_as(x), retain_graph=True)  # double backward
            (jtjv,) = torch.autograd.grad(y, x, jv, retain_graph=True)
            return jtjv.detach().flatten(1)

        sigma, iterations, converged = _lanczos(apply, x.detach().flatten(1))
        return sigma.to(x.dtype), iterations, converged


def _lanczos(apply, like: torch.Tensor) -> tuple[torch.Tensor, int, bool]:
    """Batched Lanczos with full reorthogonalization (rows: points); (sqrt of the top Ritz values, iterations,
    converged). The vectors stay in the input's dtype (float32: orthogonal to ~1e-6, far below the 1% asked
    for); the tridiagonal matrix and its eigenvalues are float64."""
    q = torch.randn_like(like)
    basis = like.new_empty(len(like), MAX_ITERATIONS, like.shape[1])  # per point its Lanczos vectors, as rows
    basis[:, 0] = q / q.norm(dim=1, keepdim=True)
    alphas, betas = [], []
    for i in range(1, MAX_ITERATIONS + 1):
        w = apply(basis[:, i - 1])
        alphas.append((w * basis[:, i - 1]).sum(1).double())
        for _ in range(2):  # full reorthogonalization, twice: the basis stays orthonormal in floats
            w = w - torch.bmm(torch.bmm(basis[:, :i], w.unsqueeze(2)).transpose(1, 2), basis[:, :i]).squeeze(1)
        betas.append(w.norm(dim=1).double())
        t = torch.diag_embed(torch.stack(alphas, 1))
        if i > 1:
            off = torch.diag_embed(torch.stack(betas[:-1], 1), offset=1)
            t = t + off + off.transpose(1, 2)
        values, vectors = torch.linalg.eigh(t)
        theta = values[:, -1].clamp_min(0)
        residual = betas[-1] * vectors[:, -1, -1].abs()  # of the top Ritz pair; 0 once the Krylov space is whole
        converged = bool((residual <= TOLERANCE * theta).all())
        if converged:
            break
        if i < MAX_ITERATIONS:
            # A point whose Krylov space is whole (beta 0, converged) gets a zero vector, which changes nothing.
            basis[:, i] = w / betas[-1].to(w.dtype).clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(1)
    return theta.sqrt(), i, converged


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


def profile(model: nn.Module, x: torch.Tensor) -> list[LipschitzRow]:
    """Lipschitz estimates of every residual step and every ODE block (at DEPTH_POINTS times), in depth order:
    the rows robustode probe shows and a record keeps (block, t, depth, mean and max over the points, Lanczos
    iterations, whether every point converged)."""
    steps = {n: m for n, m in model.named_modules() if isinstance(m, PreActBlock) and not m.downsamples}
    blocks = set(ode_blocks(model))
    odes = {n: m for n, m in model.named_modules() if m in blocks}
    inputs = block_inputs(model, x, {**steps, **odes})
    rows: list[LipschitzRow] = []
    for name, block in {**steps, **odes}.items():
        if name not in inputs:
            continue
        if name in steps:
            rows.append(_estimate(block.residual, inputs[name], name, None, len(rows)))
            continue
        solver, field, state, t = block.solver, block.field.field, inputs[name], 0.0
        for k in range(DEPTH_POINTS):
            if k:  # on from the last time point, not again from 0
                with torch.no_grad():
                    state = integrate(block.field, state, solver, t, solver.T * k / DEPTH_POINTS)
                t = solver.T * k / DEPTH_POINTS
            at = torch.tensor(t, dtype=state.dtype, device=state.device)
            rows.append(_estimate(lambda u, at=at, f=field: f(at, u), state, name, t, len(rows)))
    return rows


def _estimate(f, x, name, t, depth) -> LipschitzRow:
    sigma, iterations, converged = spectral_norm(f, x)
    return LipschitzRow(block=name, t=t, depth=depth, mean=sigma.mean().item(), max=sigma.max().item(),
                        iterations=iterations, converged=converged)
