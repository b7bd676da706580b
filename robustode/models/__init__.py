"""robustode's model zoo: ODE-architecture classifiers for 32x32 images, built by name.

    import torch, robustode.models as models
    model = models.create("lm_resnet56", num_classes=10)
    logits = model(torch.rand(8, 3, 32, 32))          # images in [0, 1]
    models.list("*resnet56*")                          # names
    models.describe("wrn*")                            # name, params, summary

The contract (robustode.models.contract): every model takes images in [0, 1]
(NCHW float) and normalizes them itself (CIFAR-10 mean/std as buffers;
``normalize=False`` on any factory switches this off, as in the YOPO
reference runs). Every built-in model is a ``LayerOneModel``:

- ``model.stem`` is layer one: normalization, then the first conv (conv nets)
  or the patch embedding plus position embedding (transformers);
- ``model.layer_one(x)`` checks the input shape (ConfigError if wrong) and
  runs the stem; ``model.rest(z)`` runs everything after it;
- ``model(x) == model.rest(model.layer_one(x))``;
- ``model.layer_one_parameters()`` are the stem's parameters (YOPO updates
  layer one with its own adjoint).

Optional hooks the training loop honours: ``no_weight_decay_parameters()``
(mean-field tau) and ``after_optimizer_step()`` (clamping LM-ResNet k and
mean-field tau). Register your own model with ``@register_model("name")`` on
a factory ``f(num_classes=10, normalize=True, ...)``.

Families: WideResNet (wrn34_10, wrn28_10, wrn16_1, any "wrnD_K"), Swish WideResNet with
RobustBench's module names (dm_wrn28_10, dm_wrn70_16, any "dm_wrnD_K"),
preact_resnet18, plain CIFAR ResNets (resnet20 ... resnet110), LM-ResNet
(lm_resnet20 ... lm_resnet110, lm_resnet56_sd, lm_resnet110_sd), mean-field
ResNet (meanfield_resnet20 ... meanfield_resnet110), Heun ResNet (rk2_resnet20,
rk2_resnet56), small-step ResNet (stepsize_resnet20, stepsize_resnet56),
Macaron ViT and its plain twin (macaron_vit, vit, macaron_vit_tiny, vit_tiny); continuous depth
(robustode.models.solver: solver settings are model settings): ODE-Net (ode_net16_1, any
"ode_netW_B"), TisODE (tisode16_1), SODEF-style (sodef_net16).
"""

from . import cifar_resnet, dm_wrn, lm_resnet, meanfield, ode_net, preact, rk_resnet, sodef, vit, wrn  # noqa: F401
from .contract import LayerOneModel, Normalize, SelectOutput, follows_contract, normalization, select_output
from .wrn import load_reference_state_dict, wide_resnet
from .zoo import count_parameters, create, describe, register_model, registry
from .zoo import list_models as list

__all__ = [
    "LayerOneModel",
    "Normalize",
    "SelectOutput",
    "count_parameters",
    "create",
    "describe",
    "follows_contract",
    "list",
    "load_reference_state_dict",
    "normalization",
    "register_model",
    "registry",
    "select_output",
    "wide_resnet",
]
