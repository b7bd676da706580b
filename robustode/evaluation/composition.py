"""The batch-dependence check: does a point's output change when its batchmates change?

A model whose forward couples the points of a batch is evaluated on compositions that an
attacker does not face, and its attacks see gradients of a function that is not the
deployed one. The known case: torchdiffeq's adaptive solvers take the error norm over the
whole batch tensor (``_rms_norm`` in torchdiffeq/_impl/misc.py), so every point of a batch
shares one step schedule (docs/fidelity.md#neural-odes). Train-mode batch norm is another,
but the evaluator runs in eval mode.

The check re-runs the same points in other compositions, each of the first ALONE points
alone and the whole subset in reverse order, and compares their logits with those of the
subset as one batch, relative to the logits' scale. The same batch run twice gives the
noise floor: a model whose two runs already differ is randomized (attacked with EOT), and
the check is then not judged. A flagged model is evaluated on fixed batches of the test
order (point i always in batch i // batch_size, with the same batchmates), and the record
says so (``flags["composition"]``).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..models.solver import solvers

ALONE = 16  # points re-run one at a time
# Logits may differ by this fraction of their scale: float32 rounding of other batch shapes is ~1e-7 (a
# fixed-grid ode_net16_1: 2.4e-7, resnet20: 2.1e-7); torchdiffeq's adaptive solvers at rtol = atol = 1e-3
# move them by 1.7e-4 (adaptive_heun) to 9.1e-4 (bosh3) at initialization (python bench/batch_dependence.py).
RELATIVE = 1e-5


def batch_dependence(model, x: torch.Tensor) -> dict:
    """{"batch_change": largest change of a point's logits under another composition, relative to the
    logits' scale, or None when two runs of the same batch already differ; "points_alone": how many
    points ran alone}."""
    k = min(len(x), ALONE)
    with torch.no_grad(), _no_tf32():  # TF32's rounding (1e-3) would hide the solver's coupling
        batched = model(x).float()
        again = model(x).float()
        alone = torch.cat([model(x[i:i + 1]).float() for i in range(k)])
        reversed_order = model(x.flip(0)).float().flip(0)
    scale = batched.abs().max().clamp_min(1e-12)
    if ((again - batched).abs().max() / scale).item() > RELATIVE:
        return {"batch_change": None, "points_alone": k}
    change = torch.maximum((alone - batched[:k]).abs().max(), (reversed_order - batched).abs().max()) / scale
    return {"batch_change": change.item(), "points_alone": k}


@contextmanager
def _no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def is_batch_dependent(checks: dict) -> bool:
    change = checks.get("batch_change")
    return change is not None and change > RELATIVE


def composition(batch_size: int) -> str:
    """How a batch-dependent model was evaluated, for the record."""
    return (f"fixed batches of the test order: point i is always evaluated and attacked in batch "
            f"i // {batch_size} with the same batchmates (escalation stages re-batch the points still robust)")


def ode_summary(model, evaluations: dict[str, dict]) -> dict | None:
    """The record's account of a model with ODE blocks: its solvers and the attacks' f-evaluations per batch."""
    own = solvers(model)
    if not own:
        return None
    return {"solvers": [s.describe() for s in own], "evaluations_per_batch": evaluations}
