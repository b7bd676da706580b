"""WideResNet (the TRADES / YOPO definition) and the importer of reference checkpoints."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError, ConfigError
from .blocks import PreActResNet
from .contract import Normalize
from .zoo import register_model


def wide_resnet(depth: int, widen_factor: int, num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """WRN-depth-k (Zagoruyko & Komodakis 2016) as defined in the TRADES code.

    Stem 3x3 conv 3->16; three stages of n = (depth - 4) / 6 pre-activation
    basic blocks at widths 16k, 32k, 64k, strides 1, 2, 2 (the first block of
    every stage projects); head BN-ReLU-pool-Linear; no dropout.

    Layer one is the stem conv. For k >= 2 the first block projects (16 -> 16k,
    its 1x1 shortcut on the pre-activated input), so the model also supports
    YOPO's ``nonlinear_layer_one``: layer one = ReLU(BN(stem(x))) with that
    block's BN. For k = 1 that block's shortcut is the identity: no such split.
    """
    if (depth - 4) % 6 or depth < 10:
        raise ConfigError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 28, 34, ...), got {depth}")
    if widen_factor < 1:
        raise ConfigError(f"WideResNet widen factor must be >= 1, got {widen_factor}")
    n = (depth - 4) // 6
    widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    return PreActResNet(16, widths, [n] * 3, [1, 2, 2], num_classes=num_classes, normalize=normalize)


@register_model()
def wrn34_10(num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """WRN-34-10 (Zagoruyko & Komodakis 2016; the TRADES/YOPO definition), 46,160,474 parameters.

    Update rule: x <- shortcut(x) + f(x), 5 pre-activation blocks per stage at
    widths 160/320/640. Parameters: 46,160,474 for 10 classes. Layer one = stem conv (or, nonlinear, + BN-ReLU).

        model = robustode.models.create("wrn34_10")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return wide_resnet(34, 10, num_classes, normalize)


@register_model()
def wrn28_10(num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """WRN-28-10 (Zagoruyko & Komodakis 2016), 36,479,194 parameters.

    Update rule: x <- shortcut(x) + f(x), 4 pre-activation blocks per stage at
    widths 160/320/640. Parameters: 36,479,194 for 10 classes. Layer one = stem conv (or, nonlinear, + BN-ReLU).

        model = robustode.models.create("wrn28_10")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return wide_resnet(28, 10, num_classes, normalize)


@register_model()
def wrn16_1(num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """WRN-16-1 (Zagoruyko & Komodakis 2016), a tiny WideResNet for tests, 175,066 parameters.

    Update rule: x <- shortcut(x) + f(x), 2 pre-activation blocks per stage at
    widths 16/32/64. Parameters: 175,066 for 10 classes. Layer one = stem conv. Its
    first block keeps 16 channels (identity shortcut), so unlike wrn10_2 it has no
    nonlinear layer one for YOPO.

        model = robustode.models.create("wrn16_1")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return wide_resnet(16, 1, num_classes, normalize)


@register_model("wrnD_K", pattern=r"wrn(?P<depth>\d+)_(?P<widen_factor>\d+)")
def wrn_family(depth: int, widen_factor: int, num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """Any WRN-D-K by name: "wrn40_2" builds depth 40, widen factor 2 (depth = 6n + 4).

    model = robustode.models.create("wrn40_2")
    logits = model(torch.rand(8, 3, 32, 32))
    """
    return wide_resnet(depth, widen_factor, num_classes, normalize)


# Reference (TRADES / YOPO WideResNet) key prefix -> ours; applied in order.
_RENAMES = (
    (re.compile(r"^conv1\."), "stem.conv."),
    (re.compile(r"^block(\d)\.layer\.(\d+)\."), lambda m: f"stages.{int(m[1]) - 1}.blocks.{m[2]}."),
    (re.compile(r"\.convShortcut\."), ".shortcut."),
    (re.compile(r"^bn1\."), "head.bn."),
    (re.compile(r"^fc\."), "head.fc."),
)


def reference_key(key: str) -> str:
    """Our name for a reference WideResNet state-dict key ("block1.layer.0.convShortcut.weight" ...)."""
    key = key.removeprefix("module.")  # saved from nn.DataParallel
    for pattern, replacement in _RENAMES:
        key = pattern.sub(replacement, key)
    return key


def load_reference_state_dict(model: PreActResNet, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a TRADES / YOPO WideResNet state dict into a ``wide_resnet`` model.

    The reference code builds an unused ``sub_block1`` (2,102,112 parameters
    for WRN-34-10); its keys are dropped. Any other unknown or missing key
    raises CheckpointError. The reference networks took unnormalized [0, 1]
    inputs, so the model must be built with ``normalize=False``.

        model = robustode.models.create("wrn34_10", normalize=False)
        load_reference_state_dict(model, torch.load("model-wideres-epoch76.pt"))
    """
    if isinstance(model.stem.norm, Normalize):
        raise CheckpointError(
            "reference WideResNets were trained without input normalization; "
            "build the model with normalize=False"
        )
    names = {
        k: reference_key(k) for k in state_dict if not k.removeprefix("module.").startswith("sub_block1.")
    }
    mapped = {new: state_dict[old] for old, new in names.items()}
    ours = model.state_dict()
    missing = sorted(ours.keys() - mapped.keys())
    unexpected = sorted(old for old, new in names.items() if new not in ours)
    if missing or unexpected:
        raise CheckpointError(
            f"not a matching reference WideResNet state dict: unexpected keys {unexpected[:5]}, "
            f"missing (our names) {missing[:5]}"
        )
    bad = [k for k, v in mapped.items() if tuple(v.shape) != tuple(ours[k].shape)]
    if bad:
        raise CheckpointError(
            f"reference state dict has wrong shapes for {bad[:5]} (another depth or width?)"
        )
    model.load_state_dict(mapped)
