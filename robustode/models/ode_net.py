"""Continuous-depth classifiers: ODE-Net (Chen et al. NeurIPS 2018) and TisODE (Yan et al. ICLR 2020).

An ``ODENet`` is a conv stem (layer one) -> per stage a downsampling transition and one ODE
block dx/dt = f(x, t) over [0, T] -> the head. The field is a pre-activation residual function
with group norm (batch-independent, as in torchdiffeq's examples/odenet_mnist.py) whose convs
see t as an extra input channel. Solver settings are model settings (robustode.models.solver):

    model = robustode.models.create("ode_net16_1", method="dopri5", rtol=1e-3, atol=1e-3)
    model = robustode.models.create("ode_net16_1(method=rk4, step_size=0.1)")   # the same, as a spec
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..rules import POSITIVE
from .blocks import Head, conv_stem, init_weights
from .contract import LayerOneModel
from .solver import CountedField, Solver, integrate, make_solver
from .zoo import register_model


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ConcatConv(nn.Module):
    """3x3 conv of [x, t] (t as a constant extra channel): the field sees the time."""

    def __init__(self, channels: int, sees_time: bool):
        super().__init__()
        self.sees_time = sees_time
        self.conv = nn.Conv2d(channels + sees_time, channels, 3, 1, 1, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.sees_time:
            x = torch.cat([x, t.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])], 1)
        return self.conv(x)


class ConvField(nn.Module):
    """f(x, t) = conv2(t, ReLU(GN(conv1(t, ReLU(GN(x)))))): a pre-activation residual function."""

    def __init__(self, channels: int, sees_time: bool = True):
        super().__init__()
        self.norm1, self.norm2 = group_norm(channels), group_norm(channels)
        self.conv1, self.conv2 = ConcatConv(channels, sees_time), ConcatConv(channels, sees_time)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(t, F.relu(self.norm2(self.conv1(t, F.relu(self.norm1(x))))))


class ODEBlock(nn.Module):
    """x(T) of dx/dt = field(t, x), x(0) = x, solved by ``solver``; ``field`` counts its evaluations.

    ``last_state`` is x(T) of the latest forward with autograd on, for an auxiliary loss to read.
    """

    def __init__(self, field: nn.Module, solver: Solver):
        super().__init__()
        self.field = CountedField(field)
        self.solver = solver
        self.last_state: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = integrate(self.field, x, self.solver)
        self.last_state = out if torch.is_grad_enabled() else None
        return out

    def extra_repr(self) -> str:
        return self.solver.describe()


class Transition(nn.Module):
    """BN-ReLU-conv3x3, stride 2: halves the resolution between ODE blocks (an ODE keeps the shape)."""

    def __init__(self, in_planes: int, planes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, planes, 3, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class ODENet(LayerOneModel):
    """stem (layer one, 3 -> width) -> per block: transition (stride 2, width doubling after the first) and an
    ODE block -> BN-ReLU-pool-Linear head."""

    def __init__(self, width: int, blocks: int, solver: Solver, num_classes: int = 10, normalize: bool = True,
                 sees_time: bool = True):
        super().__init__()
        if blocks < 1 or blocks > 3:
            raise ConfigError(f"an ODE-Net has 1 to 3 ODE blocks (32x32 images halve at each), got {blocks}")
        self.stem = conv_stem(width, normalize)
        widths = [width * 2 ** i for i in range(blocks)]
        self.transitions = nn.ModuleList(Transition(w_in, w) for w_in, w in zip([width, *widths], widths))
        self.blocks = nn.ModuleList(ODEBlock(ConvField(w, sees_time), solver) for w in widths)
        self.head = Head(widths[-1], num_classes)
        init_weights(self)

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        for transition, block in zip(self.transitions, self.blocks):
            z = block(transition(z))
        return self.head(z)


class TisODENet(ODENet):
    """ODE-Net with a time-invariant field and the steady-state regularizer of Yan et al. (ICLR 2020).

    ``auxiliary_loss()``: the mean over points and features of the integral of |f(x(t))| over
    [T, T + steady_window], from the last block's x(T) of the latest forward with autograd on.
    """

    def __init__(self, width: int, blocks: int, solver: Solver, num_classes: int = 10, normalize: bool = True,
                 steady_window: float = 0.3):
        super().__init__(width, blocks, solver, num_classes, normalize, sees_time=False)
        self.steady_window = POSITIVE(steady_window, "steady_window")

    def auxiliary_loss(self) -> torch.Tensor:
        block = self.blocks[-1]
        state, block.last_state = block.last_state, None  # consumed: a stale graph is never reused
        if state is None:
            raise ConfigError("TisODE's auxiliary loss needs a forward with autograd on before it")
        solver = block.solver
        # d(x, a)/dt = (f(x), |f(x)|) from (x(T), 0): a(T + window) is the integral of |f| along the path.
        _, area = integrate(WithAbsolute(block.field), (state, torch.zeros_like(state)), solver, solver.T,
                            solver.T + self.steady_window, count=block.field)
        return area.mean()


class WithAbsolute(nn.Module):
    """(f(x), |f(x)|) of a counted field f: integrated, the second part is the integral of |f| along the path."""

    def __init__(self, field: CountedField):
        super().__init__()
        self.field = field

    def forward(self, t, state):
        f = self.field(t, state[0])
        return f, f.abs()


_FAMILY = re.compile(r"ode_net(?P<width>\d+)_(?P<blocks>\d+)")

_ODE_DOC = """ODE-Net, width {width}, {blocks} ODE block(s) (Chen et al. NeurIPS 2018), {params} parameters.

    Update rule: dx/dt = f(x, t) over [0, T] per block, solved by torchdiffeq; f is a
    pre-activation residual function (group norm, convs seeing t). Solver settings are model
    settings: method (euler, midpoint, rk4 | dopri5, bosh3, adaptive_heun), step_size, rtol,
    atol, max_steps, adjoint, T (default rk4, h = 0.25, T = 1; robustode.models.solver).
    Parameters: {params} for 10 classes. Layer one = stem conv.

        model = robustode.models.create("{name}")
        model = robustode.models.create("{name}(method=dopri5, rtol=1e-3, atol=1e-3)")
    """


def ode_net(width: int = 16, blocks: int = 1, num_classes: int = 10, normalize: bool = True, **solver) -> ODENet:
    """Any ODE-Net by name: "ode_net32_2" is width 32 with 2 ODE blocks; solver settings as keywords."""
    return ODENet(width, blocks, make_solver(solver), num_classes, normalize)


def _ode_factory(name: str, width: int, blocks: int, params: int):
    def factory(num_classes: int = 10, normalize: bool = True, **solver) -> ODENet:
        return ODENet(width, blocks, make_solver(solver), num_classes, normalize)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = _ODE_DOC.format(name=name, width=width, blocks=blocks, params=f"{params:,}")
    return factory


ODE_NETS = {(16, 1): 7_930, (32, 2): 123_690, (64, 2): 486_986}  # params for 10 classes (checked by the tests)
for (_w, _b), _count in ODE_NETS.items():
    register_model(f"ode_net{_w}_{_b}")(_ode_factory(f"ode_net{_w}_{_b}", _w, _b, _count))
register_model("ode_netW_B", pattern=_FAMILY.pattern)(ode_net)


@register_model("tisode16_1")
def tisode16_1(num_classes: int = 10, normalize: bool = True, steady_window: float = 0.3, **solver) -> TisODENet:
    """TisODE, width 16, one time-invariant ODE block (Yan et al. ICLR 2020), 7,642 parameters.

    Update rule: dx/dt = f(x) over [0, T] (f does not see t); ``auxiliary_loss()`` is the
    steady-state term, the mean of the integral of |f(x(t))| over [T, T + steady_window], which
    a defense adds with ``aux_weight``. The authors' settings (github.com/HanshuYAN/TisODE,
    mnist/options.py, mnist/networks.py, mnist/run_tisode_gaus.sh): w_steady 0.01 (our
    aux_weight), euler with step 0.1 (0.05 in the run script), prediction at T = 1, the |f|
    integral over [0.75, 1.05]; ours starts at T so the prediction's path is unchanged
    (docs/fidelity.md#tisode). Parameters: 7,642 for 10 classes. Layer one = stem conv.

        model = robustode.models.create("tisode16_1")
        defense = robustode.defenses.create_defense("natural(aux_weight=0.01)")
    """
    return TisODENet(16, 1, make_solver(solver), num_classes, normalize, steady_window)
