"""``evaluate``: clean and robust accuracy with 95% intervals, the worst case per point, the
gradient-masking flags, EOT for randomized models and, when something looks wrong, escalation.

    threat = ThreatModel()                              # L-inf, eps 8/255
    result = evaluate(model, dataset, build_all(["pgd-20", "autoattack"], eps=threat.eps), threat, n=1000)
    result.clean_acc, result.robust["pgd-20"], result.intervals["pgd-20"], result.worst_case
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch
from rich.console import Console

from ..attacks.eot import EOT_DRAWS, is_randomized
from ..attacks.guards import preserved_mode, preserved_rng
from ..attacks.spec import Attack
from ..errors import ConfigError, DataError
from ..progress import Progress
from ..threat import ThreatModel
from ..utils import check_positive_int, device_name, model_device, provenance, synchronize
from . import escalation, masking
from .attack_loop import load_batch, run_attacks
from .composition import composition, ode_summary
from .result import EvalResult, fraction, set_intervals
from .state import EvalState

log = logging.getLogger("robustode")

def evaluate(model, data, attacks: Sequence[Attack], threat: ThreatModel, *, n=None, batch_size=256, device=None,
             quiet=False, masking_checks=True, seed=0, escalate=True, surrogate=None, state=None) -> EvalResult:
    """Clean and robust accuracy of ``model`` on the first ``n`` test images (unshuffled).

    The entrance ``robustode.evaluate`` takes names and specs; this takes them built.

    model: images in [0, 1] -> logits (B, num_classes); put in eval mode and restored after.
    data: a DataSet (its test split), a Split (uint8) or an (x, y) pair of tensors (x float in [0, 1]).
    attacks: built Attack objects (robustode.attacks.build_all). A point is robust only if it is
        correct clean and after the attack.
    threat: the threat model; the masking checks and escalation attack within its eps.
    n: number of test images (default: all).
    device: default, the model's own; a device given moves the model there.
    masking_checks: run the gradient-masking checks on the first 256 points (masking.py).
    seed: the attacks' random starts derive from it per attack and batch; the caller's RNG is restored.
    escalate: when a masking flag fires, the model is randomized, or it declares an adaptive or
        stochastic part, attack the points still robust further: Square, a transfer attack from
        ``surrogate`` (a module, or a callable that trains one; None: that stage is skipped, and says so)
        and, for randomized models, AutoAttack's rand version (escalation.py). Every stage is kept.
    state: a file to keep per-point progress in; an interrupted evaluation resumes from it.
    A randomized model (two eval-mode forwards differ) is attacked with EOT over 20 draws, and a
    point is robust only if correct on every draw. Runs in float32 without autocast. Flags that
    fire are logged as warnings, and escalations as they happen, unless ``quiet``.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    device = model_device(model, device)
    x_all, y_all, num_classes = _data(data, n)
    batch_size = min(batch_size, len(y_all))  # the batches evaluated, as the result and the record say
    start = time.perf_counter()
    console = Console(stderr=True, quiet=quiet)
    with preserved_mode(model), preserved_rng(seed), torch.autocast(device.type, enabled=False):
        model.eval()
        model.to(device)
        run_state, result = _attack(model, x_all, y_all, num_classes, list(attacks), threat, batch_size, device,
                                    seed, masking_checks, state, console)
        why = escalation.reasons(result, model) if escalate else []
        if why:
            escalation.escalate(model, x_all, y_all, result, why, data=data, batch_size=batch_size,
                                device=device, draws=EOT_DRAWS if result.randomized else 1, surrogate=surrogate,
                                console=console)
    synchronize(device)
    run_state.finish()
    result.seconds = run_state.seconds_before + time.perf_counter() - start  # a resumed one: the total
    if not quiet:
        for message in result.flags["messages"]:
            log.warning("possible gradient masking or attack failure: %s", message)
    return result


def _attack(model, x_all, y_all, num_classes, attacks, threat, batch_size, device, seed, masking_checks, state,
            console) -> tuple[EvalState, EvalResult]:
    """Clean pass, every attack (EOT for a randomized model), the masking checks: the result before escalation."""
    x0, y0 = load_batch(x_all, y_all, 0, batch_size, device)
    _check_model(model, x0, y0, num_classes)
    randomized = is_randomized(model, x0)
    draws = EOT_DRAWS if randomized else 1
    if randomized:
        console.print(f"randomized model: two eval-mode forwards differ; attacking with EOT over {draws} draws, "
                      "a point robust only if correct on every draw", highlight=False, markup=False)
        attacks = [attack.with_eot(draws) for attack in attacks]
    key = {"n": len(y_all), "eps": threat.eps, "seed": seed, "batch_size": batch_size, "draws": draws,
           "attacks": {a.name: a.settings for a in attacks}}
    run_state = EvalState(state, key, -(-len(y_all) // batch_size))
    if run_state.resumed:
        console.print(f"resuming the evaluation saved in {state}", highlight=False, markup=False)
    found = run_attacks(model, x_all, y_all, attacks, batch_size=batch_size, device=device, draws=draws, seed=seed,
                        state=run_state, quiet=console.quiet)
    checks = None
    if masking_checks:
        x, y = load_batch(x_all, y_all, 0, masking.SUBSET, device)
        with Progress(masking.CHECKS, f"gradient-masking checks on {len(y)} points", console=console,
                      unit="checks") as progress:
            checks = masking.subset_checks(model, x, y, eps=threat.eps, seed=seed, status=progress.update)
    flags = masking.flags(checks, found, attacks)
    if flags["batch_dependent"]:  # its batches were fixed by the test order all along: say so
        flags["composition"] = composition(batch_size)
    return run_state, _result(model, found, attacks, batch_size, threat, device, seed, flags, randomized)


def _result(model, found, attacks, batch_size, threat, device, seed, flags, randomized) -> EvalResult:
    n = len(found.clean)
    worst = found.clean.clone()
    for attack in attacks:
        worst &= found.robust[attack.name]
    per_point = {"clean": found.clean, **found.robust}
    tf32 = device.type == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    result = EvalResult(
        clean_acc=fraction(found.clean), robust={a.name: fraction(found.robust[a.name]) for a in attacks},
        worst_case=fraction(worst), n=n, batch_size=batch_size, eps=threat.eps, norm=threat.norm,
        attack_settings={a.name: dict(a.settings) for a in attacks}, seconds=0.0, device=device_name(device),
        tf32=tf32, seed=seed, flags=flags, provenance=provenance(device, "float32"),
        per_point={**per_point, "worst_case": worst}, randomized=randomized, attack_seconds=dict(found.seconds),
        ode=ode_summary(model, found.evaluations))
    set_intervals(result)
    return result


def _data(data, n):
    """(images, labels, num_classes or None) for the first n test points; images stay where they are."""
    num_classes = None
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


def _check_model(model, x, y, num_classes):
    with torch.no_grad():
        out = model(x)
    classes = num_classes or int(y.max()) + 1
    ok = isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == len(x)
    if not ok or (out.shape[1] != num_classes if num_classes else out.shape[1] < classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        want = num_classes if num_classes else f">= {classes}"
        raise ConfigError(f"the model returned output of shape {got} for {len(x)} images; "
                          f"expected ({len(x)}, {want}) logits")
