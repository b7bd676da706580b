"""The Lipschitz estimates: the largest singular value of a block's input Jacobian, from below, to 1%."""

from __future__ import annotations

import pytest
import torch

from robustode import lipschitz
from robustode.lipschitz import MAX_ITERATIONS, spectral_norm
from robustode.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_linear_maps_estimate_is_its_largest_singular_value():
    torch.manual_seed(0)
    a = torch.randn(6, 9)
    sigma, iterations, converged = spectral_norm(lambda x: x @ a.T, torch.randn(3, 9))
    exact = torch.linalg.matrix_norm(a, 2)
    # The Krylov space of A^T A (rank 6) and a random start has at most 7 dimensions: whole by then.
    assert torch.allclose(sigma, exact.expand(3), rtol=1e-4) and converged and iterations <= 7


def test_an_ode_fields_estimate_reaches_its_jacobians_norm_from_below():
    torch.manual_seed(0)
    field = create("ode_net4_1").blocks[0].field.field.eval()
    t, x = torch.tensor(0.5), torch.randn(3, 4, 16, 16)
    sigma, iterations, converged = spectral_norm(lambda u: field(t, u), x)
    exact = torch.stack([torch.linalg.matrix_norm(torch.autograd.functional.jacobian(
        lambda v: field(t, v[None])[0], x[i]).reshape(x[0].numel(), -1), 2) for i in range(3)])
    assert converged and iterations < MAX_ITERATIONS
    assert (sigma <= exact * (1 + 1e-4)).all() and (sigma >= 0.99 * exact).all(), (sigma, exact)


def test_a_rank_one_jacobians_norm_is_exact_after_two_iterations_in_float64():
    torch.manual_seed(0)
    u, v = torch.randn(5, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    sigma, iterations, converged = spectral_norm(lambda x: (x @ v)[:, None] * u, torch.randn(2, 7, dtype=torch.float64))
    assert sigma.dtype == torch.float64 and converged and iterations == 2  # the Krylov space is whole: residual 0
    assert torch.allclose(sigma, (u.norm() * v.norm()).expand(2), rtol=1e-10)


def test_a_residual_blocks_estimate_is_within_its_tolerance_of_a_converged_one(monkeypatch):
    """A conv block's J^T J has a crowded top of its spectrum: an estimate still rising by < 1% an iteration
    can be several % short; the residual rule must not be."""
    torch.manual_seed(0)
    block = create("stepsize_resnet20").eval().stages[0].blocks[1]
    x = torch.randn(4, 16, 32, 32)
    sigma, _, converged = spectral_norm(block.residual, x)
    monkeypatch.setattr(lipschitz, "TOLERANCE", 1e-9)
    monkeypatch.setattr(lipschitz, "MAX_ITERATIONS", 150)
    reference, _, _ = spectral_norm(block.residual, x)
    assert converged and (sigma <= reference * (1 + 1e-5)).all() and (sigma >= 0.99 * reference).all()
