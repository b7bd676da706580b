"""Build layer one and the rest as modules from the graph robustode.split.trace_split cut."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
from torch import fx, nn

from ..errors import ConfigError


class Tracer(fx.Tracer):
    """torch.fx's tracer, keeping each call of a custom autograd Function whole.

    fx would trace into the Function's forward and drop its backward: a straight-through
    estimator's (input quantization as a defense) or a hand-written conv's. The call becomes one
    node instead, which runs ``Function.apply`` itself.
    """

    def trace(self, root, concrete_args=None) -> fx.Graph:
        function = torch.autograd.Function
        original = function.__dict__["apply"]
        # Patched for the length of the trace, as fx patches nn.Module.__call__ while it traces.
        function.apply = classmethod(functools.partial(_apply, self, original))
        try:
            with warnings.catch_warnings():
                # torch warns that a traced module's backward hooks will not run; split.verify's gradient
                # check refuses the split if that changes anything
                warnings.filterwarnings("ignore", "For backward hooks to be called", UserWarning)
                return super().trace(root, concrete_args)
        finally:
            function.apply = original


def _apply(tracer: Tracer, original, cls, *args, **kwargs):
    traced = []
    fx.node.map_aggregate((args, kwargs), lambda a: traced.append(isinstance(a, fx.Proxy)))
    if any(traced):
        return tracer.create_proxy("call_function", applier(cls), args, kwargs)
    return original.__get__(None, cls)(*args, **kwargs)


@functools.cache
def applier(function: type) -> Callable:
    """``function.apply`` as a plain function fx can name in a graph; ``.function`` is the Function."""

    def apply(*args, **kwargs):
        return function.apply(*args, **kwargs)

    apply.__name__ = apply.__qualname__ = f"{function.__name__}_apply"
    apply.function = function
    return apply


def copy_layer_one(nodes: list[fx.Node], keep: set[fx.Node], last: fx.Node) -> fx.Graph:
    """The graph of the nodes in ``keep``, returning ``last``."""
    graph, env = fx.Graph(), {}
    for n in nodes:
        if n in keep:
            env[n] = graph.node_copy(n, env.__getitem__)
    graph.output(env[last])
    return graph


def copy_rest(nodes: list[fx.Node], keep: set[fx.Node], layer: fx.Node, output: fx.Node, meta: dict) -> fx.Graph:
    """The graph of the nodes in ``keep`` up to ``output``, with layer one's node as its input z; the
    reads of the input's metadata in ``meta`` (node: input_meta's arguments after z) become input_meta."""
    graph = fx.Graph()
    z = graph.placeholder("z")
    env = {layer: z}
    for n in nodes:
        if n in meta:
            env[n] = graph.call_function(input_meta, (z, *meta[n]))
        elif n in keep and n not in env and n is not output:
            # Only batch and device reads of the input get here with inputs outside env (trace_split
            # refused every other reader): they read layer one's output instead.
            env[n] = graph.node_copy(n, lambda a: env.get(a, z))
    graph.output(fx.map_arg(output.args[0], env.__getitem__))
    return graph


def part(model: nn.Module, train: fx.Graph, evaluate: fx.Graph, name: str) -> nn.Module:
    """A module running ``train`` in train mode and ``evaluate`` in eval mode (one graph if they agree)."""
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


def input_meta(z: torch.Tensor, what: str, index: int | None, shape: tuple, dtype: torch.dtype):
    """The rest's read ``what`` of the input (x.shape, x.size(index), x.dtype, x.dim(), x.ndim): the batch
    size from layer one's output z, everything else as in the batch traced for (guard_input holds it)."""
    size = torch.Size((z.shape[0], *shape[1:]))
    if what == "dtype":
        return dtype
    if what in ("dim", "ndim"):
        return len(size)
    return size if index is None else size[index]


def guard_input(layer_one: nn.Module, who: str, shape: tuple, dtype: torch.dtype) -> None:
    """Make layer one refuse inputs whose shape (but the batch size) or dtype differs from the traced batch's."""
    layer_one.register_forward_pre_hook(functools.partial(_check_input, who, tuple(shape[1:]), dtype))


def _check_input(who: str, shape: tuple, dtype: torch.dtype, module: nn.Module, args: tuple) -> None:
    x = args[0]
    if tuple(x.shape[1:]) != shape or x.dtype != dtype:
        raise ConfigError(f"{who} was split for {dtype} inputs of shape (N, {', '.join(map(str, shape))}) (its rest "
                          f"reads them as constants), got {x.dtype} {tuple(x.shape)}: feed that shape and dtype, "
                          "or define layer_one and rest on the model")
