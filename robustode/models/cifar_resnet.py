"""Pre-activation CIFAR ResNets (depth 6n + 2, widths 16/32/64) and the helper that registers depth families.

The ODE variants (LM-ResNet, mean-field, Heun, step-size) reuse ``cifar_resnet``
with their own stage, so a variant and the plain ResNet of the same depth have
the same blocks and state-dict keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import ConfigError
from .blocks import PreActResNet, Stage
from .zoo import register_model


def blocks_per_stage(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
    return (depth - 2) // 6


def cifar_resnet(
    depth: int, num_classes: int = 10, normalize: bool = True, stage: Callable = Stage, model_cls=PreActResNet
) -> PreActResNet:
    """ResNet-depth for CIFAR (He et al. 2016): stem conv 3->16, three stages of
    n = (depth - 2) / 6 pre-activation blocks at widths 16/32/64, strides 1/2/2;
    the downsampling shortcut is BN-ReLU-1x1 conv. ``stage`` combines a stage's blocks."""
    n = blocks_per_stage(depth)
    return model_cls(
        16, [16, 32, 64], [n] * 3, [1, 2, 2], num_classes=num_classes, normalize=normalize, stage=stage
    )


def register_depths(
    prefix: str, build: Callable, doc: str, params: Mapping[int, int], suffix: str = ""
) -> None:
    """Register ``prefix + str(depth) + suffix`` for every depth in ``params``.

    ``build(depth, num_classes=, normalize=)`` makes the model; ``doc`` is the
    factory docstring, formatted with name, depth, n (blocks per stage) and
    params (the count for 10 classes, checked by the tests).
    """
    for depth, count in params.items():
        name = f"{prefix}{depth}{suffix}"
        text = doc.format(name=name, depth=depth, n=blocks_per_stage(depth), params=f"{count:,}")
        register_model(name)(_depth_factory(name, depth, build, text))


def _depth_factory(name: str, depth: int, build: Callable, doc: str) -> Callable:
    def factory(num_classes: int = 10, normalize: bool = True) -> PreActResNet:
        return build(depth, num_classes=num_classes, normalize=normalize)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return factory


_PLAIN_DOC = """Pre-activation ResNet-{depth} for CIFAR (He, Zhang, Ren, Sun 2016), {params} parameters.

    Update rule (forward Euler, step 1): x[n+1] = x[n] + f[n](x[n]); {n} blocks
    per stage at widths 16/32/64; the downsampling block uses a BN-ReLU-1x1
    conv shortcut. Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        logits = model(torch.rand(8, 3, 32, 32))
    """

register_depths(
    "resnet", cifar_resnet, _PLAIN_DOC, {20: 272_282, 32: 466_714, 44: 661_146, 56: 855_578, 110: 1_730_522}
)
