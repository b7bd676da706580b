"""What to know about a model before spending GPU hours on it: ``check_model``.

    report = ro.check_model(torchvision.models.resnet18(num_classes=10), num_classes=10)
    print(report)       # one row per check: name, ok / warn / fail, detail
    report.ok           # no check failed

Training runs the checks that can fail (``check_for_training``) before its first step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attacks.eot import EOT_DRAWS
from .data import DataSet
from .errors import ConfigError, first_line
from .models.contract import select_output
from .modes import bn_mode
from .split import split_model
from .split.discovery import difference
from .split.trace_split import preprocessing
from .utils import forked_rng

ORDER = ("input", "output", "pixel range", "eval determinism", "normalization", "batch norm", "yopo split",
         "parameters", "cost")
_ARITHMETIC = ("sub", "add", "mul", "div", "rsub")
# Logits moving less than this (relative) between x and x / 255: the model barely sees [0, 1] pixels
# (check_model's docstring says what five untrained models gave).
_SCALE_BLIND = 0.02


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    detail: str


@dataclass(frozen=True)
class ModelReport:
    """The rows of ``check_model``; ``ok`` when none failed."""

    model: str  # the model's class name
    input_shape: tuple[int, ...]  # (C, H, W) checked
    rows: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        return [r for r in self.rows if r.status == "fail"]

    def __getitem__(self, name: str) -> Check:
        found = next((r for r in self.rows if r.name == name), None)
        if found is None:
            raise KeyError(f"no check {name!r} (checks: {', '.join(r.name for r in self.rows)})")
        return found

    def __str__(self) -> str:
        width = max(len(r.name) for r in self.rows)
        return "\n".join(f"{r.name:<{width}}  {r.status:<4}  {r.detail}" for r in self.rows)


def check_model(model: nn.Module, data=None, num_classes: int | None = None,
                output: int | str | None = None) -> ModelReport:
    """Check ``model`` the way robustode will use it, on two uniform random images in [0, 1].

    Args:
        model: an ``nn.Module`` taking images in [0, 1] (NCHW); it runs where its parameters are.
        data: a DataSet (its image shape and classes), an input shape (C, H, W), or None
            (the model's ``input_shape``, else (3, 32, 32)).
        num_classes: the logits expected per image (default: the data set's; None: any).
        output: the entry of a tuple / list / dict output that holds the logits (index or key).

    The checks (fail: no defense can train it; warn: worth knowing):

    - input: the model runs on a batch of shape (2, C, H, W) in [0, 1].
    - output: one finite floating tensor of shape (N, num_classes); a tuple or dict fails
      and says to name the logits with ``output=``.
    - parameters: the trainable parameter count (none: fail).
    - pixel range: ||f(x) - f(x / 255)|| / ||f(x)||; below 2% the logits barely react to
      [0, 1] pixels (warn: does the model expect pixels in [0, 255]?). A heuristic: five
      untrained models gave 9% to 155% as they are and, behind a division by 255, 0.1% to
      1.7% (four of them; the fifth stayed at 99.6%).
    - normalization: the arithmetic in front of the first layer with parameters, read from
      the traced layer one; none (warn) is right for a model trained on [0, 1] pixels,
      wrong for weights trained on normalized input.
    - eval determinism: two eval-mode forwards of one batch agree to 1e-5; else the model
      is randomized (warn: the evaluator attacks it with EOT and escalates, by itself).
    - batch norm: how many batch-norm layers (attacks during training use the defense's bn_mode).
    - yopo split: layer one found and ``rest(layer_one(x)) == model(x)`` verified
      (robustode.split); if not, warn with the reason (only YOPO needs it).
    - cost: FLOPs of one forward on one image (torch.utils.flop_counter: convolutions and
      matrix products, not elementwise operations).
    """
    who = type(model).__name__
    model = select_output(model, output)
    shape, num_classes = _shape_and_classes(model, data, num_classes)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)).to(_device(model))
    rows, out = _essentials(model, x, num_classes, output)
    if out is not None:
        with torch.no_grad(), bn_mode(model, "eval"), forked_rng(x.device):
            rows += [_guarded("pixel range", _pixel_range, model, x, out),
                     _guarded("eval determinism", _determinism, model, x, out)]
            cost = _guarded("cost", _cost, model, x[:1])
        split, split_row = _split(model, x)
        rows += [_guarded("normalization", _normalization, model, split), _batch_norm(model), split_row, cost]
    else:
        rows.append(_batch_norm(model))
    return ModelReport(who, shape, tuple(sorted(rows, key=lambda r: ORDER.index(r.name))))


def check_for_training(model: nn.Module, data) -> tuple[torch.Tensor, str | None]:
    """Stop a run before its first step when ``model`` cannot train on ``data``; returns the batch it ran and
    check_model's warning for a model that barely sees [0, 1] pixels (one expecting [0, 255]), or None.

    The checks of check_model that can fail, on the first two training images: the
    model runs, returns finite (N, data.num_classes) logits and has trainable
    parameters. Raises ConfigError with the failed check's detail, in one line.
    The model's mode and the RNG are left as they were.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
    example = data.train.images[:2].to(_device(model)).float().div(255)
    rows, out = _essentials(model, example, data.num_classes, None)
    failed = next((r for r in rows if r.status == "fail"), None)
    if failed is not None:
        raise ConfigError(f"{type(model).__name__} {failed.detail} (`robustode check-model` or "
                          "robustode.check_model shows every check)")
    with torch.no_grad(), bn_mode(model, "eval"), forked_rng(example.device):
        pixels = _pixel_range(model, example, out)  # the same forward's output, and its probes
    return example, (f"{type(model).__name__}: {pixels.detail}" if pixels.status == "warn" else None)


def _guarded(name: str, check: Callable[..., Check], *args) -> Check:
    """A probe of the model that raised is a failed check naming the error, not a traceback."""
    try:
        return check(*args)
    except Exception as err:  # the user's model raised inside this probe: that is the finding
        return Check(name, "fail", f"raises on this probe ({first_line(err)})")


def _essentials(model: nn.Module, x: torch.Tensor, num_classes: int | None, selector) -> tuple[list[Check], object]:
    """[input, output, parameters] and the model's output on x (None when it failed to run)."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counted = Check("parameters", "ok", f"{params:,} trainable") if params else \
        Check("parameters", "fail", "has no trainable parameters")
    try:
        with torch.no_grad(), bn_mode(model, "eval"), forked_rng(x.device):
            out = model(x)
    except Exception as err:  # whatever the model raises is the finding: the row reports it
        return [Check("input", "fail", f"fails on {tuple(x.shape)} in [0, 1] ({first_line(err)})"), counted], None
    ran = Check("input", "ok", f"runs on {tuple(x.shape)} in [0, 1]")
    return [ran, _output(out, num_classes, selector), counted], out


def _output(out, num_classes: int | None, selector) -> Check:
    if isinstance(out, (tuple, list)):
        shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__ for t in out)
        return Check("output", "fail", f"returns a {type(out).__name__} of {len(out)} ({shapes}), not logits: "
                                       "name the logits' index with output=")
    if isinstance(out, dict):
        return Check("output", "fail", f"returns a dict (keys {', '.join(map(str, out))}), not logits: "
                                       "name the logits' key with output=")
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        kind = f"a {out.dtype} tensor" if isinstance(out, torch.Tensor) else type(out).__name__
        return Check("output", "fail", f"returns {kind}, not floating-point logits")
    expected = f"(2, {num_classes or 'classes'})"
    if out.dim() != 2 or out.shape[0] != 2 or (num_classes and out.shape[1] != num_classes):
        return Check("output", "fail", f"returns shape {tuple(out.shape)} for 2 images, expected logits {expected}")
    if not torch.isfinite(out).all():
        return Check("output", "fail", "returns logits that are not finite")
    picked = f", output={selector!r}" if selector is not None else ""
    return Check("output", "ok", f"logits of shape (N, {out.shape[1]}){picked}")


def _pixel_range(model: nn.Module, x: torch.Tensor, out) -> Check:
    base = _flat(out)
    change = (base - _flat(model(x / 255))).norm() / base.norm().clamp_min(1e-12)
    said = f"logits change {change:.1%} from x to x / 255"
    if change < _SCALE_BLIND:
        return Check("pixel range", "warn", f"{said}: it barely sees [0, 1] pixels; does it expect [0, 255]? "
                                            "robustode feeds [0, 1]")
    return Check("pixel range", "ok", f"{said} (one expecting [0, 255] would barely react)")


def _determinism(model: nn.Module, x: torch.Tensor, out) -> Check:
    gap = difference(out, model(x))
    if gap is None:
        return Check("eval determinism", "ok", "two eval-mode forwards agree")
    return Check("eval determinism", "warn", f"randomized: two eval-mode forwards differ ({gap}); robustode's "
                                             f"evaluation will switch to EOT by itself (gradients averaged over "
                                             f"{EOT_DRAWS} draws, a point robust only if correct on every draw) "
                                             "and escalate to AutoAttack's rand version")


def _split(model: nn.Module, x: torch.Tensor):
    try:
        split = split_model(model, example=x)
    except ConfigError as err:
        return None, Check("yopo split", "warn", f"YOPO cannot train it: {err}")
    except Exception as err:  # the user's model raised while being traced or verified
        return None, Check("yopo split", "fail", f"raises on this probe ({first_line(err)})")
    return split, Check("yopo split", "ok", f"{split.description}; verified in eval and train mode")


def _normalization(model: nn.Module, split) -> Check:
    target = split.module if split is not None and split.module is not None else model
    found = preprocessing(target, next((n for n, m in model.named_modules() if m is target), None))
    if found is None:
        return Check("normalization", "warn", "unknown: fx cannot trace the model's first layer")
    layer, ops = found
    arithmetic = [op for op in ops if op.rstrip("_") in _ARITHMETIC]
    if arithmetic:
        return Check("normalization", "ok", f"{', '.join(ops)} in front of {layer}")
    return Check("normalization", "warn", f"none in front of {layer}: it takes [0, 1] pixels as they are "
                                          "(right if trained so; wrong for weights trained on normalized input)")


def _batch_norm(model: nn.Module) -> Check:
    count = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not count:
        return Check("batch norm", "ok", "none")
    return Check("batch norm", "ok", f"{count} layers (the attacks' bn_mode matters)")


def _cost(model: nn.Module, one: torch.Tensor) -> Check:
    with FlopCounterMode(display=False) as counter:
        model(one)
    flops = counter.get_total_flops()
    size = "x".join(map(str, one.shape[1:]))
    return Check("cost", "ok", f"{_si(flops)}FLOP per {size} image, one forward (conv and matmul "
                               "FLOPs, torch.utils.flop_counter)")


def _si(value: float) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}"
    return f"{value:.3g} "


def _flat(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.detach().flatten().float()
    items = out.values() if isinstance(out, dict) else out
    parts = [_flat(t) for t in items if isinstance(t, (torch.Tensor, tuple, list, dict))]
    return torch.cat(parts) if parts else torch.zeros(1)


def _shape_and_classes(model: nn.Module, data, num_classes) -> tuple[tuple[int, ...], int | None]:
    if isinstance(data, DataSet):
        return tuple(data.train.images.shape[1:]), num_classes or data.num_classes
    shape = getattr(model, "input_shape", (3, 32, 32)) if data is None else data
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise ConfigError(f"data must be a DataSet, an input shape (C, H, W) or None, got {data!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 2):
        raise ConfigError(f"num_classes must be an integer >= 2 (one class is no classification), "
                          f"got {num_classes!r}")
    return tuple(shape), num_classes


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
