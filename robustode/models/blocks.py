"""Pre-activation residual building blocks shared by every convolutional model.

One generic ``PreActResNet`` (stem conv -> stages -> BN-ReLU-pool-Linear head)
covers WideResNet, PreActResNet-18 and the CIFAR ResNets; the ODE variants
differ only in the *stage*: the module that decides how the blocks' residual
functions f_i are combined (plain Euler steps, linear multi-step, sorted
mean-field steps, Heun steps ...). Every stage holds its blocks in
``self.blocks`` so that the state-dict keys of all variants of one depth agree
and the weights of a plain ResNet load into its ODE twins.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..utils import check_positive_int
from .contract import LayerOneModel, normalization


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3 plus a shortcut.

    The shortcut is the identity when the shape is kept, else a 1x1 conv
    (stride) applied to the pre-activated input (the TRADES / fast-AT
    definition). ``branches(x)`` returns (shortcut, f(x)) separately, so that
    stages can scale, drop or re-weight the residual function f.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        projects = stride != 1 or in_planes != planes
        self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False) if projects else None

    @property
    def downsamples(self) -> bool:
        """True when the block changes the shape, i.e. it is not a step of an ODE in one space."""
        return self.shortcut is not None

    def branches(self, x: torch.Tensor, residual: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(shortcut(x), f(x)); f is None when ``residual`` is False (a dropped block skips its convs)."""
        if self.shortcut is None:
            return x, self._convs(self.preactivate(x)) if residual else None
        return self.projected_branches(self.preactivate(x), residual)

    def preactivate(self, x: torch.Tensor) -> torch.Tensor:
        """ReLU(BN1(x)): the input as the convs (and a projection shortcut) see it."""
        return F.relu(self.bn1(x))

    def projected_branches(self, a: torch.Tensor, residual: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(shortcut, f) of a projecting block from a = preactivate(x): it sees x only through a."""
        return self.shortcut(a), self._convs(a) if residual else None

    def _convs(self, a: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(a))))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) of a shape-keeping block, so that block(x) == x + f(x)."""
        return self.branches(x)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip, f = self.branches(x)
        return skip + f


def make_blocks(in_planes: int, planes: int, n: int, stride: int) -> list[PreActBlock]:
    """n blocks; only the first may change the shape."""
    return [PreActBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n)]


class Stage(nn.Module):
    """Plain residual stage: x <- shortcut(x) + f_i(x) for every block (forward Euler, step 1)."""

    def __init__(self, blocks: Sequence[PreActBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class Head(nn.Module):
    """Final BN-ReLU, global average pool, Linear."""

    def __init__(self, planes: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(planes)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.bn(x)), 1).flatten(1))


def conv_stem(planes: int, normalize: bool) -> nn.Sequential:
    """Layer one of the conv nets: normalization, then a 3x3 conv 3 -> planes (no bias, no BN/ReLU)."""
    return nn.Sequential(
        OrderedDict(norm=normalization(normalize), conv=nn.Conv2d(3, planes, 3, 1, 1, bias=False))
    )


class PreActResNet(LayerOneModel):
    """Generic pre-activation ResNet: ``stem`` -> ``stages`` -> ``head``.

    Args:
        stem_width: channels of the stem conv.
        widths, depths, strides: per stage, its width, number of blocks and
            the stride of its first block.
        num_classes: size of the output.
        normalize: normalize inside (CIFAR-10 mean/std) when True.
        stage: builds a stage from its list of blocks (default: plain ``Stage``).

    When the first block projects and its stage is a plain ``Stage`` (the
    WideResNets of widen factor >= 2), ``layer_one_nonlinear`` and
    ``rest_nonlinear`` split the model after that block's first BN-ReLU (YOPO's
    ``nonlinear_layer_one``); otherwise they raise ConfigError saying why.
    """

    def __init__(
        self,
        stem_width: int,
        widths: Sequence[int],
        depths: Sequence[int],
        strides: Sequence[int],
        num_classes: int = 10,
        normalize: bool = True,
        stage: Callable[[list[PreActBlock]], nn.Module] = Stage,
    ):
        super().__init__()
        check_positive_int(num_classes, "num_classes")
        self.stem = conv_stem(stem_width, normalize)
        stages, planes = [], stem_width
        for width, n, stride in zip(widths, depths, strides):
            stages.append(stage(make_blocks(planes, width, n, stride)))
            planes = width
        self.stages = nn.ModuleList(stages)
        self.head = Head(planes, num_classes)
        init_weights(self)

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        return self._run_stages(z, start=0)

    # YOPO's nonlinear_layer_one option: layer one ends with the first block's BN-ReLU. That split exists only
    # when the first block projects, since its 1x1 shortcut then also takes the pre-activated input; an
    # identity shortcut would carry stem(x) itself past the nonlinearity.
    def layer_one_nonlinear(self, x: torch.Tensor) -> torch.Tensor:
        """a = ReLU(BN(stem(x))), BN being the first block's first BN; the rest continues from a alone."""
        return self._entry_block().preactivate(self.layer_one(x))

    def rest_nonlinear(self, a: torch.Tensor) -> torch.Tensor:
        """The first block continued from its pre-activated input a, then everything after it."""
        skip, f = self._entry_block().projected_branches(a)
        z = skip + f
        for block in self.stages[0].blocks[1:]:
            z = block(z)
        return self._run_stages(z, start=1)

    def layer_one_nonlinear_parameters(self) -> list[nn.Parameter]:
        return [*self.stem.parameters(), *self._entry_block().bn1.parameters()]

    def _run_stages(self, z: torch.Tensor, start: int) -> torch.Tensor:
        for stage in self.stages[start:]:
            z = stage(z)
        return self.head(z)

    def _entry_block(self) -> PreActBlock:
        stage = self.stages[0]
        block = stage.blocks[0]
        if block.shortcut is None:
            why = (f"its first block keeps the shape ({block.conv1.in_channels} -> {block.conv1.out_channels} "
                   "channels, stride 1), so its identity shortcut passes stem(x) itself on and the rest cannot "
                   "continue from ReLU(BN(stem(x))) alone")
        elif type(stage) is not Stage:
            why = f"its first stage ({type(stage).__name__}) combines its blocks by its own rule"
        else:
            return block
        raise ConfigError(
            f"nonlinear_layer_one is not available for {type(self).__name__}: {why}; it works when the first "
            "block projects: the WideResNets of widen factor >= 2 (wrn34_10, wrn28_10, wrn10_2, any wrnD_K, K >= 2)"
        )


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out) convs, as in the WRN / TRADES code; zero Linear biases."""
    if next(model.parameters()).is_meta:
        return  # describe() counts parameters on the meta device: no values to fill, and filling is slow there
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
