"""Context managers that keep an attack from leaking state into the caller's world.

Third-party attacks (torchattacks) reseed the global RNG, switch the model to
eval mode and call ``.backward()``, which would accumulate into parameter
``.grad``. These guards undo all three.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def preserved_rng(seed: int | None = None):
    """Run the body with torch (CPU and CUDA), numpy and python RNG state restored afterwards.

    With ``seed`` the body runs from that seed. Without one it runs from a seed
    drawn from the caller's torch stream, so repeated calls still differ and stay
    reproducible under the caller's seed.
    """
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_state, py_state = np.random.get_state(), random.getstate()
    torch.manual_seed(seed)
    try:
        yield seed
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def preserved_mode(model: nn.Module):
    """Restore every submodule's train/eval flag afterwards (also on exceptions)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def frozen_parameters(model: nn.Module):
    """Turn off requires_grad on the model's parameters for the body.

    Then a ``.backward()`` inside the body computes input gradients only and
    leaves every parameter's ``.grad`` as it was.
    """
    frozen = [p for p in model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
