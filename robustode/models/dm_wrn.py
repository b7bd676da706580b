"""The Swish WideResNets of DeepMind's robustness papers, with RobustBench's module names.

Gowal et al. 2020 ("Uncovering the Limits of Adversarial Training against Norm-Bounded
Adversarial Examples"), Rebuffi et al. 2021 ("Fixing Data Augmentation to Improve Adversarial
Robustness") and Wang et al. 2023 ("Better Diffusion Models Further Improve Adversarial
Training") train this WideResNet with SiLU (Swish) activations. Its modules carry the names of
RobustBench's ``DMWideResNet`` (robustbench/model_zoo/architectures/dm_wide_resnet.py):
``init_conv``, ``layer.G.block.B.{batchnorm_0, conv_0, batchnorm_1, conv_1, shortcut}``,
``batchnorm``, ``logits``. Its normalization buffers stay out of the state dict, as theirs do, so
a RobustBench checkpoint loads strictly as it is and ours loads into their constructor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import init_weights
from .contract import LayerOneModel, Normalize, check_input
from .zoo import register_model

BN_MOMENTUM = 0.01  # Wang et al.'s training code (decay 0.99 in DeepMind's); PyTorch's default is 0.1


def same_padding(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding for a 3x3 conv: one pixel all round at stride 1, right and bottom at 2."""
    return F.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class DMBlock(nn.Module):
    """BN-SiLU, conv3x3(stride, SAME), BN-SiLU, conv3x3, plus a shortcut.

    The shortcut is the identity when the width is kept, else a 1x1 conv (stride) on the
    pre-activated input.
    """

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"DMBlock supports strides 1 and 2, got {stride}")
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.relu_0 = nn.SiLU()  # RobustBench's name; the activation is SiLU
        self.conv_0 = nn.Conv2d(in_planes, planes, 3, stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu_1 = nn.SiLU()
        self.conv_1 = nn.Conv2d(planes, planes, 3, 1, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False) if in_planes != planes else None
        self.stride = stride

    def preactivate(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_0(self.batchnorm_0(x))

    def from_preactivated(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The block's output from its input x and a = preactivate(x); a projecting block needs only a."""
        out = self.conv_1(self.relu_1(self.batchnorm_1(self.conv_0(same_padding(a, self.stride)))))
        return (x if self.shortcut is None else self.shortcut(a)) + out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_preactivated(x, self.preactivate(x))


class DMBlockGroup(nn.Module):
    """n blocks in ``self.block``; only the first changes width and stride."""

    def __init__(self, n: int, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(*(DMBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                                     for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DMWideResNet(LayerOneModel):
    """WRN-depth-width with SiLU: stem conv 3->16, three groups at 16k/32k/64k (strides 1, 2, 2),
    BN-SiLU, 8x8 average pool, Linear. Layer one (``stem``) is normalization then ``init_conv``."""

    def __init__(self, depth: int, width: int, num_classes: int = 10, normalize: bool = True):
        super().__init__()
        if (depth - 4) % 6 or depth < 10:
            raise ConfigError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 28, 34, 70, ...), got {depth}")
        if width < 1:
            raise ConfigError(f"WideResNet width must be >= 1, got {width}")
        n, planes = (depth - 4) // 6, [16, 16 * width, 32 * width, 64 * width]
        self.norm = Normalize(persistent=False) if normalize else nn.Identity()
        self.init_conv = nn.Conv2d(3, planes[0], 3, 1, padding=1, bias=False)
        self.layer = nn.Sequential(*(DMBlockGroup(n, planes[i], planes[i + 1], 1 if i == 0 else 2) for i in range(3)))
        self.batchnorm = nn.BatchNorm2d(planes[3], momentum=BN_MOMENTUM)
        self.relu = nn.SiLU()
        self.logits = nn.Linear(planes[3], num_classes)
        init_weights(self)

    @property
    def stem(self) -> nn.Sequential:
        """Layer one, built from the model's own modules (it owns no parameters, so the keys stay RobustBench's)."""
        return nn.Sequential(self.norm, self.init_conv)

    def layer_one(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's two modules called directly: no Sequential built on every forward and attack step."""
        check_input(x, self.input_shape, type(self).__name__)
        return self.init_conv(self.norm(x))

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        return self._head(self.layer(z))

    # YOPO's nonlinear_layer_one: layer one ends with the first block's BN-SiLU, which both its
    # convs and its 1x1 shortcut read (the first block projects when width >= 2).
    def layer_one_nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        return self._entry_block().preactivate(self.layer_one(x))

    def rest_nonlinear(self, a: torch.Tensor) -> torch.Tensor:
        z = self._entry_block().from_preactivated(None, a)
        return self._head(self.layer[2](self.layer[1](self.layer[0].block[1:](z))))

    def layer_one_nonlinear_parameters(self) -> list[nn.Parameter]:
        return [*self.init_conv.parameters(), *self._entry_block().batchnorm_0.parameters()]

    def _head(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(F.avg_pool2d(self.relu(self.batchnorm(z)), 8).flatten(1))

    def _entry_block(self) -> DMBlock:
        block = self.layer[0].block[0]
        if block.shortcut is None:
            raise ConfigError("nonlinear_layer_one is not available for a DMWideResNet of width 1: its first block "
                              "keeps 16 channels, so its identity shortcut carries stem(x) past the nonlinearity")
        return block


@register_model()
def dm_wrn28_10(num_classes: int = 10, normalize: bool = True) -> DMWideResNet:
    """WRN-28-10 with SiLU (Rebuffi et al. 2021, Wang et al. 2023), 36,479,194 parameters.

    Update rule: x <- shortcut(x) + f(x), 4 pre-activation BN-SiLU blocks per group at widths
    160/320/640, SAME padding. Parameters: 36,479,194 for 10 classes (as RobustBench's DMWideResNet
    depth 28, width 10). Layer one = normalization + init_conv. Loads RobustBench's checkpoints
    (e.g. Wang2023Better_WRN-28-10) strictly.

        model = robustode.models.create("dm_wrn28_10")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return DMWideResNet(28, 10, num_classes, normalize)


@register_model()
def dm_wrn70_16(num_classes: int = 10, normalize: bool = True) -> DMWideResNet:
    """WRN-70-16 with SiLU (Gowal et al. 2020, Rebuffi et al. 2021, Wang et al. 2023), 266,796,506 parameters.

    Update rule: x <- shortcut(x) + f(x), 11 pre-activation BN-SiLU blocks per group at widths
    256/512/1024, SAME padding. Parameters: 266,796,506 for 10 classes (as RobustBench's DMWideResNet
    depth 70, width 16). Layer one = normalization + init_conv. Loads RobustBench's checkpoints
    (e.g. Wang2023Better_WRN-70-16) strictly.

        model = robustode.models.create("dm_wrn70_16")
        logits = model(torch.rand(8, 3, 32, 32))
    """
    return DMWideResNet(70, 16, num_classes, normalize)


@register_model("dm_wrnD_K", pattern=r"dm_wrn(?P<depth>\d+)_(?P<width>\d+)")
def dm_wrn_family(depth: int, width: int, num_classes: int = 10, normalize: bool = True) -> DMWideResNet:
    """Any Swish WRN-D-K by name: "dm_wrn106_16" (Rebuffi et al. 2021), "dm_wrn10_1" (tests).

    model = robustode.models.create("dm_wrn34_20")
    logits = model(torch.rand(8, 3, 32, 32))
    """
    return DMWideResNet(depth, width, num_classes, normalize)
