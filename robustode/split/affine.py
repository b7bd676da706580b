"""Whether a layer one is affine in its input: then YOPO's inner steps have a closed form.

z = A x + b gives dH/deta = A^T p for every eta (H = sum(z * p), p fixed), so one
vector-Jacobian product per pass replaces the n autograd passes. Affinity is
proven from the module's structure, never assumed:

- the built-in affine pieces (``AFFINE_MODULES``: identity, convolutions,
  linear layers, flatten) are affine;
- any other module is traced with torch.fx (a GraphModule is read as it is)
  and is affine when every operation on the input is one of those modules,
  add/sub by anything constant or affine, mul/div by something constant
  (buffers, parameters, numbers), or a reshaping (flatten, reshape, view,
  transpose, permute, contiguous, neg, indexing). robustode's ``Normalize``
  and ``PatchEmbed`` pass this way.

A model may instead declare it: ``layer_one_is_affine`` (a bool or a method
returning one) on the model overrides the structural answer, e.g. for a layer
one that torch.fx cannot trace.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import fx, nn

from .layer_split import LayerSplit

AFFINE_MODULES = (nn.Identity, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Flatten, nn.Unflatten)

_SUM = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub}  # affine + affine
_SCALE = {operator.mul, operator.imul, torch.mul}  # affine * constant, either order
_DIVIDE = {operator.truediv, operator.itruediv, torch.div}  # affine / constant
_SHAPE = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.neg, operator.neg, operator.getitem}
_SHAPE_METHODS = {"flatten", "reshape", "view", "transpose", "permute", "contiguous", "neg"}
_METHODS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}  # x.add(c) as torch.add(x, c)


def _known(module: nn.Module) -> bool:
    """One of the affine pieces itself: a subclass may override forward with anything."""
    return type(module) in AFFINE_MODULES


class _Tracer(fx.Tracer):
    """Keeps the known affine pieces whole; traces through everything else, Sequential included."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _known(m) or super().is_leaf_module(m, qualname)


def is_affine(module: nn.Module) -> bool:
    """True when the module's output is proven affine in its (single) input; False when not proven."""
    if _known(module):
        return True
    if isinstance(module, fx.GraphModule):
        graph = module.graph
    else:
        try:
            graph = _Tracer().trace(module)
        except Exception:  # untraceable (data-dependent control flow, ...): not proven affine, so not used
            return False
    return _graph_is_affine(graph, module)


def layer_one_is_affine(model: nn.Module, split: LayerSplit, x: torch.Tensor) -> bool:
    """Whether YOPO may use the closed form for this split: declared by the model, else proven.

    The structural proof needs ``split.module`` and checks on the batch ``x``
    that the module computes what ``split.layer_one`` computes (a contract
    model may override ``layer_one``).
    """
    declared = getattr(model, "layer_one_is_affine", None)
    if declared is not None:
        return bool(declared() if callable(declared) else declared)
    if split.module is None or not is_affine(split.module):
        return False
    with torch.no_grad():  # an affine module has no state a forward could move
        split.module(x)  # a first call may pick its kernels (cuDNN benchmark); the two compared reuse them
        return torch.equal(split.layer_one(x), split.module(x))


def weight_gradient_product(module: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
    """For a convolution after parameter-free affine pieces (every built-in conv stem), a function
    ``add(u, cotangent)`` adding d<cotangent, module(u)>/dtheta to the parameters' gradients; else None.

    One conv2d_weight product instead of the module's forward and backward: the kernel the backward
    runs, in the dtype the forward ran in (the cotangent's: bf16 under autocast), and through
    autograd.backward on the parameters, so their gradient hooks still see it.
    """
    parts = _prefix_and_conv(module)
    if parts is None:
        return None
    prefix, conv = parts

    def add(u: torch.Tensor, cotangent: torch.Tensor) -> None:
        with torch.no_grad():
            v = prefix(u).to(cotangent.dtype)
        grads = {conv.weight: lambda: torch.nn.grad.conv2d_weight(v, conv.weight.shape, cotangent, conv.stride,
                                                                   conv.padding, conv.dilation, conv.groups),
                 conv.bias: lambda: cotangent.sum((0, 2, 3))}
        pairs = [(p, grad().to(p.dtype)) for p, grad in grads.items() if p is not None and p.requires_grad]
        if pairs:
            torch.autograd.backward([p for p, _ in pairs], [g for _, g in pairs])

    return add


def _prefix_and_conv(module: nn.Module) -> tuple[nn.Module, nn.Conv2d] | None:
    """(the pieces before, the conv) for Conv2d or Sequential(parameter-free affine pieces..., Conv2d)."""
    pieces = list(module) if type(module) is nn.Sequential else [module]
    conv, prefix = pieces[-1] if pieces else None, nn.Sequential(*pieces[:-1])
    plain = type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    if not plain or any(True for _ in prefix.parameters()) or not is_affine(prefix):
        return None
    return prefix, conv


def _graph_is_affine(graph: fx.Graph, root: nn.Module) -> bool:
    """Walk the graph marking nodes constant (no input in them) or affine; anything else fails."""
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        return False
    affine = {inputs[0]}
    for node in graph.nodes:
        if node.op == "output":
            return isinstance(node.args[0], fx.Node) and node.args[0] in affine
        if node.op == "get_attr" or not any(a in affine for a in node.all_input_nodes):
            continue  # a placeholder already marked, or a function of constants only: constant
        if any(_uses(v, affine) for v in node.kwargs.values()):
            return False  # the input passed by keyword (torch.add(c, other=x)): not one of the known forms
        if not _affine_op(node, [_uses(a, affine) for a in node.args], root):
            return False
        affine.add(node)
    return False


def _uses(arg, affine: set) -> bool:
    """Whether an argument (possibly a tuple or list of them) holds an affine node."""
    found = []
    fx.node.map_arg(arg, lambda n: found.append(n in affine))
    return any(found)


def _affine_op(node: fx.Node, affine_args: list[bool], root: nn.Module) -> bool:
    """Whether ``node`` is affine, given which of its positional arguments are affine (the rest constant).

    add/sub take any mix; mul needs exactly one affine factor; div an affine
    numerator over a constant; modules and reshapings their first argument only.
    """
    first_only = affine_args[:1] == [True] and not any(affine_args[1:])
    if node.op == "call_module":
        return first_only and is_affine(root.get_submodule(node.target))
    target = node.target
    if node.op == "call_method":
        if target in _SHAPE_METHODS:
            return first_only
        target = _METHODS.get(target)
    elif node.op != "call_function":
        return False
    if target in _SHAPE:
        return first_only
    if target in _SUM:
        return len(affine_args) == 2
    if target in _SCALE:
        return len(affine_args) == 2 and sum(affine_args) == 1
    # rounding_mode (floor or trunc division) is not affine
    return target in _DIVIDE and affine_args == [True, False] and node.kwargs.get("rounding_mode") is None
