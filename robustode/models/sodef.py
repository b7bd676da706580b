"""A SODEF-style stabilized neural ODE on features (after Kang, Song, Ding, Tay, NeurIPS 2021).

"Stable Neural ODE with Lyapunov-Stable Equilibrium Points for Defending Against Adversarial
Attacks", https://openreview.net/forum?id=9CPc4EIr2t1. What we take from the authors' code
(github.com/kangqiyu/SODEF, Rebuffi2021Fixing_70_16_cutmix_extra/model.py and train.py):

- the ODE layer acts on a feature vector of size 64: f(t, z) = sin(-(W [z, t] + b)) (their
  ``ODEfunc_mlp`` with a ``ConcatFC`` layer), integrated over [0, 5] by dopri5 with
  rtol = atol = 1e-3 through ``odeint_adjoint``;
- the regularizer (their ``df_dz_regularizer`` and ``f_regularizer``, weights 10, 0 and 0.1):
  at up to 16 points of the batch, mean(exp(diag(J) + 1)) with J = df/dz at t = 1 (pushes the
  Jacobian's diagonal negative: Lyapunov-stable equilibria), plus 0.1 * mean((50 |f(1, z)|)^2)
  (makes the features equilibria). Their off-diagonal term has weight 0 and is left out.

Where we differ: the authors train the feature extractor first, then the ODE layer on frozen
features with the regularizer alone, then the last layer; here the whole model trains in one
run, the defense adding the regularizer with ``aux_weight`` (docs/fidelity.md#sodef). Because
f is one linear map and a sine, J = -diag(cos(W [z, t] + b)) W_z exactly: no autograd Jacobian.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import conv_stem, init_weights
from .contract import LayerOneModel
from .ode_net import ODEBlock, Transition
from .solver import Solver, make_solver
from .zoo import register_model

FEATURES = 64  # the authors' ODE dimension
DIAG_SHIFT, F_SCALE, F_WEIGHT, POINTS, AT_TIME = 1.0, 50.0, 0.1, 16, 1.0  # train.py: trans, exponent_f, weight_f, numm, time_df
SODEF_SOLVER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "adjoint": True, "T": 5.0}


class SineField(nn.Module):
    """f(t, z) = sin(-(W [z, t] + b)): the authors' ODE function on a feature vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim + 1, dim)

    def pre(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([z, t.to(z.dtype).expand(z.shape[0], 1)], 1))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.sin(-self.pre(t, z))

    def jacobian(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """df/dz per point, (N, dim, dim): -cos(W [z, t] + b)_i W_ij."""
        return -torch.cos(self.pre(t, z)).unsqueeze(2) * self.fc.weight[:, :-1].unsqueeze(0)


class SODEFNet(LayerOneModel):
    """stem -> two stride-2 transitions (16x16, 8x8) -> BN-ReLU-pool -> Linear to 64 features -> ODE layer -> Linear."""

    def __init__(self, width: int, solver: Solver, num_classes: int = 10, normalize: bool = True):
        super().__init__()
        self.stem = conv_stem(width, normalize)
        self.features = nn.Sequential(Transition(width, width), Transition(width, 2 * width),
                                      nn.BatchNorm2d(2 * width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(2 * width, FEATURES))
        self.ode = ODEBlock(SineField(FEATURES), solver)
        self.fc = nn.Linear(FEATURES, num_classes)
        self.last_features: torch.Tensor | None = None
        init_weights(self)

    def rest(self, z: torch.Tensor) -> torch.Tensor:
        h = self.features(z)
        self.last_features = h if torch.is_grad_enabled() else None
        return self.fc(self.ode(h))

    def auxiliary_loss(self) -> torch.Tensor:
        """The stability regularizer at the ODE inputs of the latest forward with autograd on (16 points)."""
        h, self.last_features = self.last_features, None
        if h is None:
            raise ConfigError("SODEF's auxiliary loss needs a forward with autograd on before it")
        h = h[torch.randperm(h.shape[0], device=h.device)[:POINTS]]
        field = self.ode.field.field
        t = torch.tensor(AT_TIME, device=h.device)
        diagonal = torch.diagonal(field.jacobian(t, h), dim1=1, dim2=2)
        stability = torch.exp(diagonal + DIAG_SHIFT).mean()
        equilibrium = (F_SCALE * field(t, h).abs()).pow(2).mean()
        return stability + F_WEIGHT * equilibrium


@register_model("sodef_net16")
def sodef_net16(num_classes: int = 10, normalize: bool = True, **solver) -> SODEFNet:
    """SODEF-style stabilized ODE layer on 64 features (Kang et al. NeurIPS 2021), 14,458 parameters.

    Update rule: a small conv feature extractor (width 16) -> Linear to 64 features z ->
    dz/dt = sin(-(W [z, t] + b)) over [0, 5] (dopri5, rtol = atol = 1e-3, adjoint, as the
    authors) -> Linear. ``auxiliary_loss()`` is the authors' stability regularizer (Jacobian
    diagonal and equilibrium terms), added by a defense with ``aux_weight``; solver settings
    as keywords override the authors'. Parameters: 14,458 for 10 classes. Layer one = stem conv.

        model = robustode.models.create("sodef_net16")
        defense = robustode.defenses.create_defense("natural(aux_weight=1)")
    """
    return SODEFNet(16, make_solver({**SODEF_SOLVER, **solver}), num_classes, normalize)

