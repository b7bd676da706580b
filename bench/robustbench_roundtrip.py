"""The README's RobustBench round trip, checked on logits: a robustode run's weights, the same weights exported
in RobustBench's format and loaded back by robustode, and loaded strictly into RobustBench's own DMWideResNet
(its file, given by path: robustode does not ship it or import the robustbench package).

    python bench/robustbench_roundtrip.py runs/cifar10-jpeg-dm_wrn10_2-fgsm-rs-s0 \\
        rb/models/cifar10-jpeg/Linf/Robustode2026_dm_wrn10_2.pt robustbench/model_zoo/architectures/dm_wide_resnet.py

Measured (README, this CPU): largest |logit difference| 0 and 0 on the first 100 cifar10-jpeg test images.
"""

from __future__ import annotations

import importlib.util
import sys

import torch
from torch import nn

import robustode as ro


def main(run: str, exported: str, dm_wide_resnet: str, n: int = 100) -> None:
    spec = importlib.util.spec_from_file_location("robustbench_dm_wide_resnet", dm_wide_resnet)
    theirs_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(theirs_module)
    ours = ro.load_model(f"{run}/checkpoints/last.pt").eval()
    depth, width = (int(v) for v in ours.robustode_name.removeprefix("dm_wrn").split("_"))
    back = ro.load_robustbench(ours.robustode_name, exported).eval()
    theirs = theirs_module.DMWideResNet(num_classes=10, depth=depth, width=width, activation_fn=nn.SiLU).eval()
    theirs.load_state_dict(torch.load(exported, weights_only=True), strict=True)
    x = ro.load_dataset("cifar10-jpeg").test.images[:n].float() / 255
    with torch.no_grad():
        a, b, c = ours(x), back(x), theirs(x)
    print(f"largest |logit difference| on {n} test images: robustode vs loaded back {(a - b).abs().max().item():.3g}, "
          f"vs RobustBench's DMWideResNet {(a - c).abs().max().item():.3g}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
