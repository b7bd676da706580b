"""How much a point's logits move when its batchmates change (robustode.evaluation.composition), relative to
the logits' scale: fixed-grid and adaptive ode_net16_1 (rtol = atol = 1e-3) and resnet20, untrained, seeded,
64 random images (16 of them re-run alone and the batch reversed).

    python bench/batch_dependence.py
"""

from __future__ import annotations

import torch

from robustode.evaluation.composition import RELATIVE, batch_dependence
from robustode.models import create

MODELS = ("resnet20", "ode_net16_1", *(f"ode_net16_1(method={m}, rtol=1e-3, atol=1e-3)"
                                       for m in ("adaptive_heun", "bosh3", "dopri5")))

if __name__ == "__main__":
    print(f"flagged above {RELATIVE:g}")
    for name in MODELS:
        torch.manual_seed(0)
        model = create(name).eval()
        print(f"{name}: {batch_dependence(model, torch.rand(64, 3, 32, 32))['batch_change']:.1e}")
