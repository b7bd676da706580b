"""``evaluate``: clean and robust accuracy, worst case per point, and the gradient-masking flags.

    result = evaluate(model, dataset)                   # clean + PGD-20, all test images
    result = evaluate(model, "cifar10", attacks=("pgd-20", "autoattack"), n=1000)
    result.clean_acc, result.robust["pgd-20"], result.worst_case, result.flags["fired"]
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field, fields

import torch

from ..attacks.guards import preserved_mode, preserved_rng
from ..attacks.spec import Attack, build
from ..errors import ConfigError, DataError
from ..progress import Progress
from ..utils import check_eps, check_positive_int, device_name, provenance, resolve_device, synchronize
from . import masking

log = logging.getLogger(__name__)

BOUND_SLACK = 1e-5  # float rounding allowed beyond an attack's eps before the result is flagged


@dataclass
class EvalResult:
    clean_acc: float  # fractions in [0, 1]
    robust: dict[str, float]  # attack spec -> accuracy on its adversarial examples
    worst_case: float  # a point counts only if clean and every attack leave it correct
    n: int
    batch_size: int
    eps: float
    attack_settings: dict[str, dict]
    seconds: float  # wall-clock of the whole evaluation, masking checks included
    device: str
    precision: str = "float32"
    tf32: bool = False  # CUDA float32 convolutions/matmuls may run as TF32 (torch's setting, recorded)
    seed: int = 0
    flags: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    per_point: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # "clean" and each attack

    def to_dict(self) -> dict:
        """JSON-friendly dict (per-point tensors left out)."""
        return copy.deepcopy({f.name: getattr(self, f.name) for f in fields(self) if f.name != "per_point"})


def evaluate(model, data="cifar10", attacks=("pgd-20",), n=None, batch_size=256, device=None, eps=8 / 255,
             quiet=False, masking_checks=True, seed=0, data_dir=None) -> EvalResult:
    """Clean and robust accuracy of ``model`` on the first ``n`` test images (unshuffled).

    model: images in [0, 1] -> logits (B, num_classes); put in eval mode and restored after.
    data: a registered data set name ("cifar10", see ``ro.list_datasets()``; found in ``data_dir``),
        a DataSet (its test split), a Split (uint8) or an (x, y) pair of tensors (x float in [0, 1]).
    attacks: a spec string or a list of them ("pgd-20", "pgd-50(restarts=5)", "autoattack",
        "torchattacks:CW(c=1)") or Attack objects; ``eps`` applies to every attack whose spec
        does not set its own.
    n: number of test images (default: all).
    device: default, the model's own; a device given moves the model there.
    masking_checks: run the gradient-masking checks on the first 256 points (masking.py).
    seed: torch is seeded with it for the run; the caller's RNG state is restored afterwards.
    Runs in float32 without autocast. Flags that fire are logged as warnings unless ``quiet``.
    """
    eps, batch_size = check_eps(eps), check_positive_int(batch_size, "batch_size")
    built = _build_attacks(attacks, eps)
    device = _device(model, device)
    x_all, y_all, num_classes = _data(data, n, data_dir)
    n = len(y_all)
    start = time.perf_counter()
    with preserved_mode(model), preserved_rng(seed), torch.autocast(device.type, enabled=False):
        model.eval()
        model.to(device)
        _check_model(model, x_all[:batch_size], y_all[:batch_size], num_classes, device)
        per_point, blackbox_only, excess = _run(model, x_all, y_all, built, batch_size, device, quiet)
        checks = None
        if masking_checks:
            x, y = _batch(x_all, y_all, 0, masking.SUBSET, device)
            checks = masking.subset_checks(model, x, y, eps=eps, seed=seed)
    synchronize(device)
    flags = masking.flags(checks, blackbox_only)
    _bound_flags(flags, excess)
    result = _result(per_point, built, n, batch_size, eps, device, seed, flags, time.perf_counter() - start)
    if not quiet:
        for message in flags["messages"]:
            log.warning("possible gradient masking or attack failure: %s", message)
    return result


def _build_attacks(attacks, eps) -> list[Attack]:
    if isinstance(attacks, (str, Attack)):
        attacks = (attacks,)
    built = [build(a, eps=eps) for a in attacks]
    names = [a.name for a in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"attack names must be unique, got {names}")
    return built


def _device(model, device) -> torch.device:
    if device is not None:
        return resolve_device(device)
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _data(data, n, data_dir=None):
    """(images, labels, num_classes or None) for the first n test points; images stay where they are."""
    num_classes = None
    if isinstance(data, str):
        from ..data import load_dataset

        data = load_dataset(data, data_dir=data_dir)
    if hasattr(data, "test") and hasattr(data, "num_classes"):
        data, num_classes = data.test, data.num_classes
    if hasattr(data, "images") and hasattr(data, "labels"):
        x, y = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        _check_pair(x, y)
    else:
        raise DataError(f"evaluate needs a DataSet, a Split or an (x, y) pair, got {type(data).__name__}")
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"n must be a positive integer, got {n!r}")
        if n > len(y):
            raise DataError(f"asked for n={n} test images, but the test set has only {len(y)}")
        x, y = x[:n], y[:n]
    return x, y, num_classes


def _check_pair(x, y):
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise DataError("an (x, y) pair must hold two tensors")
    if not x.is_floating_point() or y.dtype != torch.int64 or len(x) != len(y) or len(y) == 0:
        raise DataError(f"expected x float (N, ...) and y int64 (N,), got {x.dtype} {tuple(x.shape)} "
                        f"and {y.dtype} {tuple(y.shape)}")
    if x.min() < 0 or x.max() > 1:
        raise DataError("images must lie in [0, 1]; normalization belongs inside the model")


def _batch(x_all, y_all, i, size, device):
    x, y = x_all[i:i + size].to(device, non_blocking=True), y_all[i:i + size].to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x, y


def _check_model(model, x, y, num_classes, device):
    x, y = _batch(x, y, 0, len(y), device)
    with torch.no_grad():
        out = model(x)
    classes = num_classes or int(y.max()) + 1
    ok = isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == len(x)
    if not ok or (out.shape[1] != num_classes if num_classes else out.shape[1] < classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        want = num_classes if num_classes else f">= {classes}"
        raise ConfigError(f"the model returned output of shape {got} for {len(x)} images; "
                          f"expected ({len(x)}, {want}) logits")


def _run(model, x_all, y_all, attacks, batch_size, device, quiet):
    """Per-point correctness (clean and per attack), black-box-only fraction, and bound excess."""
    n = len(y_all)
    clean, robust = [], {a.name: [] for a in attacks}
    whitebox_robust, blackbox_fooled, has_blackbox, has_whitebox = [], [], False, False
    excess = {a.name: torch.zeros((), device=device) for a in attacks}
    batches = (n + batch_size - 1) // batch_size
    with Progress(batches, f"evaluating {', '.join(robust)} on {n} points", quiet=quiet,
                  every=max(1, batches // 10)) as progress:
        for b, i in enumerate(range(0, n, batch_size), 1):
            x, y = _batch(x_all, y_all, i, batch_size, device)
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            clean.append(correct)
            wb, bb = correct.clone(), torch.zeros_like(correct)
            for attack in attacks:
                x_adv, only_blackbox = attack.run(model, x, y)
                with torch.no_grad():
                    ok = model(x_adv).argmax(1) == y
                robust[attack.name].append(ok)
                excess[attack.name] = torch.maximum(excess[attack.name], _excess(attack, x, x_adv))
                if only_blackbox is not None:  # made of parts: white-box ones, then black-box ones
                    wb &= ok | only_blackbox
                    bb |= only_blackbox
                    has_blackbox = has_whitebox = True
                elif attack.blackbox:
                    bb |= ~ok
                    has_blackbox = True
                else:
                    wb &= ok
                    has_whitebox = True
            whitebox_robust.append(wb)
            blackbox_fooled.append(bb)
            stats = _so_far(clean, robust) if progress.wants_line else ""  # a host sync: only for a line
            progress.update(b, stats)
    per_point = {"clean": torch.cat(clean).cpu(), **{k: torch.cat(v).cpu() for k, v in robust.items()}}
    blackbox_only = None
    if has_blackbox and has_whitebox:
        blackbox_only = masking.blackbox_only_fraction(torch.cat(whitebox_robust), torch.cat(blackbox_fooled))
    return per_point, blackbox_only, {k: float(v) for k, v in excess.items()}


def _so_far(clean: list, robust: dict) -> str:
    """Accuracies on the points evaluated so far: clean, then each attack."""
    parts = {"clean": clean, **robust}
    return "  ".join(f"{name} {torch.cat(v).float().mean().item():.1%}" for name, v in parts.items())


def _excess(attack, x, x_adv) -> torch.Tensor:
    """How far x_adv leaves [0, 1] and the attack's eps-ball (0 when inside), without a host sync."""
    outside_box = torch.maximum(-x_adv.min(), x_adv.max() - 1).clamp_min(0)
    eps, norm = attack.settings.get("eps"), str(attack.settings.get("norm", "linf")).lower()
    if not isinstance(eps, float) or norm not in ("linf", "l2"):
        return outside_box
    diff = (x_adv - x).flatten(1)
    size = diff.abs().amax(1) if norm == "linf" else diff.norm(dim=1)
    return torch.maximum(outside_box, (size - eps).max().clamp_min(0))


def _bound_flags(flags: dict, excess: dict[str, float]) -> None:
    outside = sorted(name for name, value in excess.items() if value > BOUND_SLACK)
    flags["outside_threat_model"] = outside
    if outside:
        flags["fired"].append("outside_threat_model")
        flags["messages"].append(f"attack(s) {', '.join(outside)} returned points outside [0, 1] or their eps-ball")


def _result(per_point, attacks, n, batch_size, eps, device, seed, flags, seconds) -> EvalResult:
    clean = per_point["clean"]
    worst = clean.clone()
    for attack in attacks:
        worst &= per_point[attack.name]
    tf32 = device.type == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return EvalResult(
        clean_acc=_fraction(clean), robust={a.name: _fraction(per_point[a.name]) for a in attacks},
        worst_case=_fraction(worst), n=n, batch_size=batch_size, eps=eps,
        attack_settings={a.name: dict(a.settings) for a in attacks}, seconds=seconds,
        device=device_name(device), tf32=tf32, seed=seed, flags=flags,
        provenance=provenance(device, "float32"), per_point=per_point)


def _fraction(mask: torch.Tensor) -> float:
    return int(mask.sum()) / len(mask)
