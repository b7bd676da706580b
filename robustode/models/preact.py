"""PreActResNet-18, the standard model of the fast adversarial training papers."""

from __future__ import annotations

from .blocks import PreActResNet
from .zoo import register_model


@register_model()
def preact_resnet18(num_classes: int = 10, normalize: bool = True) -> PreActResNet:
    """PreActResNet-18 (He, Zhang, Ren, Sun 2016), 11,172,170 parameters.

    "Identity Mappings in Deep Residual Networks". Update rule: x <- shortcut(x) + f(x);
    stem 3x3 conv 3->64, pre-activation blocks [2, 2, 2, 2] at widths
    64/128/256/512, strides 1/2/2/2, 1x1 projection shortcuts, final BN-ReLU
    (as in the fast-AT code; copies without that BN have 11,171,146).
    Parameters: 11,172,170 for 10 classes. Layer one = stem conv.

        model = robustode.models.create("preact_resnet18")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return PreActResNet(
        64, [64, 128, 256, 512], [2, 2, 2, 2], [1, 2, 2, 2], num_classes=num_classes, normalize=normalize
    )
