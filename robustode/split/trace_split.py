"""Find layer one by tracing the forward with torch.fx.

Layer one is the first node of the traced graph whose value depends on the
input and that is a module with trainable parameters or takes a weight: a value
computed from trainable parameters and not from the input (a conv, a linear
layer, the conv of a patch embedding, F.conv2d(x, standardize(self.weight)),
``x @ self.w.t()``). It comes with everything it depends on: the preprocessing
in front of it (normalization by buffers or frozen parameters, a rescale) and
the operations on its weight. The rest is the graph from there to the
output, fed by layer one's output. The cut holds only when nothing in the rest
reads the input or the preprocessing: otherwise the input feeds more than one
layer (parallel stems, a skip connection from the input) and there is no single
layer one. Reading the batch size or the device of the input is fine: the rest
reads them from layer one's output instead. Reading the input's other sizes,
its dtype or its number of dimensions after layer one (torchvision's ViT:
``n, c, h, w = x.shape`` and ``h // p`` after the patch conv) is fine too: the
rest reads them as the constants of the batch the split was made for, which
is sound because layer one refuses any input whose shape (but the batch size)
or dtype differs, and the rest only ever runs on layer one's output. The same
reads of the preprocessing are refused (their sizes are not recorded).

The forward is traced twice, in train and in eval mode: Python code that reads
``self.training`` (``F.dropout(h, training=self.training)``, stochastic depth)
is fixed at trace time, so each mode gets its own graph.
"""

from __future__ import annotations

import functools
import inspect
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

from ..errors import ConfigError, first_line
from ..modes import bn_mode
from .layer_split import ADVICE, LayerSplit, trains
from .trace_graph import Tracer, copy_layer_one, copy_rest, guard_input, part

_META_ATTRIBUTES = ("shape", "device", "dtype", "ndim")  # reading them does not read the input's values
_META_METHODS = ("size", "dim")
_OP_NAMES = {"truediv": "div"}
_OPS = ("call_function", "call_method", "call_module")


class TraceFailure(Exception):
    """fx cannot trace the forward (control flow on values, a call fx cannot follow)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Cut:
    name: str  # layer one's own layer, e.g. "conv1"
    preprocessing: list[str]  # the operations in front of it, in order
    layer_one: fx.Graph
    rest: fx.Graph
    reads_input: bool  # the rest reads the input's shape or dtype (constants, held by layer one's guard)


def trace_split(model: nn.Module, example: torch.Tensor) -> LayerSplit:
    """The automatic split of ``model`` for batches shaped like ``example``. Raises TraceFailure when
    fx cannot trace it, and ConfigError when the traced graph has no single layer one."""
    train, evaluate = (_cut(model, _trace(model, mode), example) for mode in ("train", "eval"))
    if train.name != evaluate.name:
        raise ConfigError(f"{type(model).__name__}'s layer one differs between train mode ({train.name}) and "
                          f"eval mode ({evaluate.name}): {ADVICE}")
    layer_one = part(model, train.layer_one, evaluate.layer_one, "LayerOne")
    rest = part(model, train.rest, evaluate.rest, "Rest")
    if train.reads_input or evaluate.reads_input:
        guard_input(layer_one, type(model).__name__, tuple(example.shape), example.dtype)
    extra = f" (+ preprocessing: {', '.join(train.preprocessing)})" if train.preprocessing else ""
    return LayerSplit(layer_one, rest, list(layer_one.parameters()), f"layer one: {train.name}{extra}", layer_one)


def preprocessing(module: nn.Module, label: str | None = None) -> tuple[str, list[str]] | None:
    """(first layer with parameters, the operations on the input in front of it) of ``module``; None if
    fx cannot trace it.

    ``label`` names ``module`` itself when it is one torch.nn layer (then nothing is in front of it).
    """
    if fx.Tracer().is_leaf_module(module, "") and trains(module):
        return label or type(module).__name__, []
    try:
        graph = Tracer().trace(module)
    except Exception:  # any failure to trace means "cannot tell", which the caller reports
        return None
    found = _first_layer(module, list(graph.nodes))
    if found is None:
        return None
    layer, values, weighted = found
    ahead = _ancestors([layer])
    return _layer_name(module, layer, weighted), [_name(module, n) for n in graph.nodes
                                                  if n in ahead and n in values and n is not layer and _is_op(module, n)]


def _first_layer(root: nn.Module, nodes: list[fx.Node]):
    """(layer one's own node, the nodes that depend on the input's values, the weights) or None."""
    x = next((n for n in nodes if n.op == "placeholder"), None)
    if x is None:
        return None
    values = _depends_on(nodes, x)
    weighted = _weighted(root, nodes, values)
    layer = next((n for n in nodes if n in values and _parametric(root, n, weighted)), None)
    return None if layer is None else (layer, values, weighted)


def _trace(model: nn.Module, mode: str) -> fx.Graph:
    with bn_mode(model, mode):
        try:
            return Tracer().trace(model, concrete_args=_defaults(model))
        except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ... for what it cannot follow
            raise TraceFailure(first_line(err)) from err


def _defaults(model: nn.Module) -> dict | None:
    """forward's arguments after the input that have defaults are traced at their default (forward(x, feats=False))."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    found = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    return found or None


def _cut(model: nn.Module, graph: fx.Graph, example: torch.Tensor) -> _Cut:
    nodes = list(graph.nodes)
    who = type(model).__name__
    found = _first_layer(model, nodes)
    if found is None:
        raise ConfigError(f"{who} has no layer with parameters that its input passes through, so YOPO has no "
                          f"layer one: {ADVICE}")
    layer, values, weighted = found
    one = _ancestors([layer])
    # the input and its preprocessing; the rest of `one` computes layer one's weights (a standardized conv's)
    inner = {n for n in one if n in values and n is not layer}
    output = next(n for n in reversed(nodes) if n.op == "output")
    rest, reads = _rest_nodes(output, layer, inner)
    name = _layer_name(model, layer, weighted)
    _refuse_reads(model, name, reads)
    meta = {n: (*_meta_read(n), tuple(example.shape), example.dtype) for n, _ in reads}  # reads of x's metadata
    ops = [_name(model, n) for n in nodes if n in inner and _is_op(model, n)]
    return _Cut(name, ops, copy_layer_one(nodes, one, layer), copy_rest(nodes, rest, layer, output, meta),
                bool(meta))


def _depends_on(nodes: list[fx.Node], x: fx.Node) -> set[fx.Node]:
    """The nodes whose values depend on x's values (x.shape or x.device alone does not count)."""
    found = {x}
    for n in nodes:
        if not _reads_meta(n) and any(a in found for a in n.all_input_nodes):
            found.add(n)
    return found


def _ancestors(start: list[fx.Node]) -> set[fx.Node]:
    seen, stack = set(), list(start)
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _rest_nodes(output: fx.Node, layer: fx.Node, inner: set[fx.Node]):
    """The nodes the output needs behind layer one, and (reader, read) for each of them that reads the
    input or its preprocessing beyond the batch size and device."""
    live = _ancestors([output])
    seen, stack, reads = set(), [output], []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n is layer:
            continue
        for a in n.all_input_nodes:
            if a not in inner:
                stack.append(a)
            elif not _batch_read(n, live):
                reads.append((n, a))
    return seen, reads


def _refuse_reads(model: nn.Module, layer: str, reads: list) -> None:
    """The rest may read the input's metadata (replaced by constants, see trace_graph.input_meta), nothing else."""
    who = type(model).__name__
    values = [n for n, _ in reads if not _reads_meta(n)]
    if values:
        names = ", ".join(dict.fromkeys(_name(model, n) for n in values))
        raise ConfigError(f"{who} has no single layer one: its input reaches {layer} and also {names}: {ADVICE}")
    ahead = [(n, a) for n, a in reads if a.op != "placeholder"]
    if ahead:
        n, a = ahead[0]
        raise ConfigError(f"{who} reads the {_meta_read(n)[0]} of {_name(model, a)} (in front of layer one) after "
                          f"layer one, where only layer one's output is: read it from the input or from layer "
                          f"one's output, or {ADVICE}")


def _meta_read(n: fx.Node) -> tuple[str, int | None]:
    """(what, index): ("shape", None) for x.shape, ("size", 2) for x.size(2), ("dtype", None), ..."""
    if n.op == "call_function":
        return n.args[1], None
    index = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
    return str(n.target), index


def _owns_weights(root: nn.Module, n: fx.Node) -> bool:
    if n.op == "get_attr":
        value = _attr(root, n.target)
        return isinstance(value, nn.Parameter) and value.requires_grad
    return n.op == "call_module" and trains(root.get_submodule(n.target))


def _weighted(root: nn.Module, nodes: list[fx.Node], values: set[fx.Node]) -> set[fx.Node]:
    """The nodes computed from trainable parameters and not from the input: a weight, the standardized
    weight of a weight-standardized conv (timm's StdConv2d), ``self.w.t()``, a weight times a buffer mask."""
    found = set()
    for n in nodes:
        if n not in values and (_owns_weights(root, n) or any(a in found for a in n.all_input_nodes)):
            found.add(n)
    return found


def _parametric(root: nn.Module, n: fx.Node, weighted: set[fx.Node]) -> bool:
    """A module with trainable parameters, or an operation taking a weight (F.conv2d(x, standardize(w)))."""
    if n.op == "call_module" and trains(root.get_submodule(n.target)):
        return True
    return n.op in _OPS and any(a in weighted for a in n.all_input_nodes)


def _layer_name(root: nn.Module, n: fx.Node, weighted: set[fx.Node]) -> str:
    """Layer one's own layer: a module's name, or the operation and the parameters its weights come from."""
    if n.op == "call_module":
        return str(n.target)
    weights = [a.target for a in _ancestors([a for a in n.all_input_nodes if a in weighted])
               if a.op == "get_attr" and _owns_weights(root, a)]
    return f"{_op_name(n) if n.op == 'call_function' else n.target}({', '.join(sorted(weights))})"


def _attr(root: nn.Module, target: str):
    return functools.reduce(getattr, target.split("."), root)


def _reads_meta(n: fx.Node) -> bool:
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] in _META_ATTRIBUTES
    return n.op == "call_method" and n.target in _META_METHODS


def _batch_read(n: fx.Node, live: set[fx.Node]) -> bool:
    """x.device, x.size(0), or x.shape used only as x.shape[0] (by the nodes the output needs: in
    ``b, c, h, w = x.shape`` an unused h is no use): the same for layer one's output."""
    if n.op == "call_function" and n.target is getattr and n.args[1] == "device":
        return True
    if n.op == "call_method" and n.target == "size":
        return n.args[1:] == (0,)
    shape = n.op == "call_function" and n.target is getattr and n.args[1] == "shape"
    return shape and all(u.target is operator.getitem and u.args[1] == 0 for u in n.users if u in live)


def _is_op(root: nn.Module, n: fx.Node) -> bool:
    if n.op not in _OPS or _reads_meta(n):
        return False
    return not (n.op == "call_module" and isinstance(root.get_submodule(n.target), nn.Identity))


def _name(root: nn.Module, n: fx.Node) -> str:
    if n.op == "call_module":
        return str(n.target)
    if n.op == "output":
        return "the output"
    if n.op == "call_method":
        return str(n.target)
    name = _op_name(n)
    weights = [a.target for a in n.all_input_nodes if a.op == "get_attr" and _owns_weights(root, a)]
    return f"{name}({', '.join(weights)})" if weights else name


def _op_name(n: fx.Node) -> str:
    function = getattr(n.target, "function", None)  # a custom autograd Function (trace_graph.applier)
    if function is not None:
        return f"{function.__name__}.apply"
    name = getattr(n.target, "__name__", str(n.target))
    return _OP_NAMES.get(name, name)
