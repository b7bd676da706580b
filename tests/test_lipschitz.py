"""The Lipschitz estimates: the largest singular value of a block's input Jacobian, from below, to 1%."""

from __future__ import annotations

import pytest
import torch

from robustode.lipschitz import MAX_ITERATIONS, spectral_norm
from robustode.models import create

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_linear_maps_estimate_is_its_largest_singular_value():
    torch.manual_seed(0)
    a = torch.randn(6, 9)
    sigma, iterations = spectral_norm(lambda x: x @ a.T, torch.randn(3, 9))
    exact = torch.linalg.matrix_norm(a, 2)
    assert torch.allclose(sigma, exact.expand(3), rtol=1e-4) and iterations <= 9  # Krylov space whole by 9


def test_an_ode_fields_estimate_reaches_its_jacobians_norm_from_below():
    torch.manual_seed(0)
    field = create("ode_net4_1").blocks[0].field.field.eval()
    t, x = torch.tensor(0.5), torch.randn(3, 4, 16, 16)
    sigma, iterations = spectral_norm(lambda u: field(t, u), x)
    exact = torch.stack([torch.linalg.matrix_norm(torch.autograd.functional.jacobian(
        lambda v: field(t, v[None])[0], x[i]).reshape(x[0].numel(), -1), 2) for i in range(3)])
    assert iterations < MAX_ITERATIONS
    assert (sigma <= exact * (1 + 1e-4)).all() and (sigma >= 0.99 * exact).all(), (sigma, exact)
