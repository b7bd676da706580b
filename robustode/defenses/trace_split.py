"""Find layer one by tracing the forward with torch.fx.

Layer one is the first node of the traced graph that uses parameters and whose
value depends on the input (a conv, a linear layer, the conv of a patch
embedding), with everything it depends on: the preprocessing in front of it
(normalization by buffers, a rescale). The rest is the graph from there to the
output, fed by layer one's output. The cut holds only when nothing in the rest
reads the input or the preprocessing: otherwise the input feeds more than one
layer (parallel stems, a skip connection from the input) and there is no single
layer one. Reading the batch size or the device of the input is fine: the rest
reads them from layer one's output instead.

The forward is traced twice, in train and in eval mode: Python code that reads
``self.training`` (``F.dropout(h, training=self.training)``, stochastic depth)
is fixed at trace time, so each mode gets its own graph.
"""

from __future__ import annotations

import functools
import inspect
import operator
from dataclasses import dataclass

from torch import fx, nn

from ..errors import ConfigError
from .common import bn_mode
from .split import ADVICE, LayerSplit, first_line

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


def trace_split(model: nn.Module) -> LayerSplit:
    """The automatic split of ``model``. Raises TraceFailure when fx cannot trace it, and
    ConfigError when the traced graph has no single layer one."""
    train, evaluate = (_cut(model, _trace(model, mode)) for mode in ("train", "eval"))
    if train.name != evaluate.name:
        raise ConfigError(f"{type(model).__name__}'s layer one differs between train mode ({train.name}) and "
                          f"eval mode ({evaluate.name}): {ADVICE}")
    layer_one = _part(model, train.layer_one, evaluate.layer_one, "LayerOne")
    rest = _part(model, train.rest, evaluate.rest, "Rest")
    extra = f" (+ preprocessing: {', '.join(train.preprocessing)})" if train.preprocessing else ""
    return LayerSplit(layer_one, rest, list(layer_one.parameters()), f"layer one: {train.name}{extra}", layer_one)


def preprocessing(module: nn.Module, label: str | None = None) -> tuple[str, list[str]] | None:
    """(first layer with parameters, the operations in front of it) of ``module``; None if fx cannot trace it.

    ``label`` names ``module`` itself when it is one torch.nn layer (then nothing is in front of it).
    """
    if fx.Tracer().is_leaf_module(module, "") and next(module.parameters(), None) is not None:
        return label or type(module).__name__, []
    try:
        graph = fx.Tracer().trace(module)
    except Exception:  # any failure to trace means "cannot tell", which the caller reports
        return None
    nodes = list(graph.nodes)
    layer = next((n for n in nodes if _parametric(module, n)), None)
    if layer is None:
        return None
    ahead = _ancestors([layer])
    return _name(module, layer), [_name(module, n) for n in nodes if n in ahead and n is not layer and _is_op(module, n)]


def _trace(model: nn.Module, mode: str) -> fx.Graph:
    with bn_mode(model, mode):
        try:
            return fx.Tracer().trace(model, concrete_args=_defaults(model))
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


def _cut(model: nn.Module, graph: fx.Graph) -> _Cut:
    nodes = list(graph.nodes)
    x = next(n for n in nodes if n.op == "placeholder")
    values = _depends_on(nodes, x)
    layer = next((n for n in nodes if n in values and _parametric(model, n)), None)
    who = type(model).__name__
    if layer is None:
        raise ConfigError(f"{who} has no layer with parameters that its input passes through, so YOPO has no "
                          f"layer one: {ADVICE}")
    one = _ancestors([layer])
    inner = {n for n in one if n in values and n is not layer}  # the input and its preprocessing
    output = next(n for n in reversed(nodes) if n.op == "output")
    rest, leaks = _rest_nodes(output, layer, inner)
    if leaks:
        names = ", ".join(dict.fromkeys(_name(model, n) for n in leaks))
        raise ConfigError(f"{who} has no single layer one: its input reaches {_name(model, layer)} and also "
                          f"{names}: {ADVICE}")
    ops = [_name(model, n) for n in nodes if n in one and n is not layer and _is_op(model, n)]
    return _Cut(_name(model, layer), ops, _copy(nodes, one, layer), _copy_rest(nodes, rest, layer, output))


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


def _rest_nodes(output: fx.Node, layer: fx.Node, inner: set[fx.Node]) -> tuple[set[fx.Node], list[fx.Node]]:
    """The nodes the output needs behind layer one, and those that read the input or its preprocessing."""
    seen, stack, leaks = set(), [output], []
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
            elif not _batch_read(n):
                leaks.append(n)
    return seen, leaks


def _copy(nodes: list[fx.Node], keep: set[fx.Node], last: fx.Node) -> fx.Graph:
    graph, env = fx.Graph(), {}
    for n in nodes:
        if n in keep:
            env[n] = graph.node_copy(n, env.__getitem__)
    graph.output(env[last])
    return graph


def _copy_rest(nodes: list[fx.Node], keep: set[fx.Node], layer: fx.Node, output: fx.Node) -> fx.Graph:
    graph = fx.Graph()
    z = graph.placeholder("z")
    env = {layer: z}
    for n in nodes:
        if n in keep and n not in env and n is not output:
            # Only batch and device reads of the input get here with inputs outside env (_rest_nodes
            # refused every other reader): they read layer one's output instead.
            env[n] = graph.node_copy(n, lambda a: env.get(a, z))
    graph.output(fx.map_arg(output.args[0], env.__getitem__))
    return graph


def _part(model: nn.Module, train: fx.Graph, evaluate: fx.Graph, name: str) -> nn.Module:
    in_train = _live(fx.GraphModule(model, train, class_name=name), model)
    in_eval = fx.GraphModule(model, evaluate, class_name=name)
    if in_train.code == in_eval.code:
        return in_train
    return ModeSwitch(model, in_train, _live(in_eval, model))


class ModeSwitch(nn.Module):
    """A traced part that differs between modes: runs the graph of the model's current mode."""

    def __init__(self, model: nn.Module, train: fx.GraphModule, evaluate: fx.GraphModule):
        super().__init__()
        self.train_graph, self.eval_graph = train, evaluate
        self._model = (model,)  # in a tuple, so not registered: the part's parameters are its graphs'

    def forward(self, *args):
        return (self.train_graph if self._model[0].training else self.eval_graph)(*args)


def _live(gm: fx.GraphModule, model: nn.Module) -> fx.GraphModule:
    """Make ``gm`` read the model's tensors as they are at each call.

    A GraphModule holds its own references to the tensors its graph reads by name;
    model.to(device) and model.double() replace buffers by new tensors, which those
    references would miss. Submodules called by the graph are the model's own.
    """
    links = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            path, _, attr = node.target.rpartition(".")
            holder, source = gm.get_submodule(path), model.get_submodule(path)
            if holder is not source:
                links.append((holder, source, attr))
    if links:
        gm.register_forward_pre_hook(functools.partial(_relink, links))
    return gm


def _relink(links, module, args) -> None:
    for holder, source, attr in links:
        setattr(holder, attr, getattr(source, attr))


def _parametric(root: nn.Module, n: fx.Node) -> bool:
    if n.op == "call_module":
        return next(root.get_submodule(n.target).parameters(), None) is not None
    if n.op in ("call_function", "call_method"):
        return any(a.op == "get_attr" and isinstance(_attr(root, a.target), nn.Parameter) for a in n.all_input_nodes)
    return False


def _attr(root: nn.Module, target: str):
    return functools.reduce(getattr, target.split("."), root)


def _reads_meta(n: fx.Node) -> bool:
    if n.op == "call_function" and n.target is getattr:
        return n.args[1] in _META_ATTRIBUTES
    return n.op == "call_method" and n.target in _META_METHODS


def _batch_read(n: fx.Node) -> bool:
    """x.device, x.size(0), or x.shape used only as x.shape[0]: the same for layer one's output."""
    if n.op == "call_function" and n.target is getattr and n.args[1] == "device":
        return True
    if n.op == "call_method" and n.target == "size":
        return n.args[1:] == (0,)
    shape = n.op == "call_function" and n.target is getattr and n.args[1] == "shape"
    return shape and all(u.target is operator.getitem and u.args[1] == 0 for u in n.users)


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
    name = getattr(n.target, "__name__", str(n.target))
    name = _OP_NAMES.get(name, name)
    weights = [a.target for a in n.all_input_nodes
               if a.op == "get_attr" and isinstance(_attr(root, a.target), nn.Parameter)]
    return f"{name}({', '.join(weights)})" if weights else name
