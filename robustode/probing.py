"""The ODE probe: how a model's accuracy depends on its discretization, and its blocks' Lipschitz profile.

    result = ro.probe(model, data, n=200)
    print(probe_table(result))

- A continuous model (ODE blocks, robustode.models.solver) is evaluated under other test-time
  solver settings (method, step size, tolerances, T): clean and PGD-20 accuracy with 95%
  intervals, the evaluations of f per batch of one forward, and the seconds, per setting; the
  attack runs through the setting it is evaluated with.
- A discrete ODE ResNet is swept over its step size h (a stage with an ``h``: the small-step
  ResNet) and its scheme: LM-ResNet's learned k against k = 0 (forward Euler), the RK2 ResNet's Heun
  steps against its blocks as Euler steps (the plain ResNet), the small-step ResNet's Euler steps
  against Heun steps with the same f (a stage's ``schemes``, robustode.models.rk_resnet).
- Every model gets per-block Lipschitz estimates of its residual functions along depth
  (robustode.lipschitz).
A setting the model does not have is a ConfigError before any work.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager

import torch
from torch import nn

from .attacks import build
from .attacks.guards import preserved_mode
from .errors import ConfigError
from .evaluation import evaluate
from .evaluation.attack_loop import load_batch
from .lipschitz import profile
from .models.solver import function_evaluations, reset_evaluations, solver_override, solvers, swapped
from .progress import Progress
from .records.parts import ProbeInfo, ProbeRow
from .text import interval_text
from .threat import DEFAULT_EPS, ThreatModel

LIPSCHITZ_POINTS = 16  # the first points of the test set


# What the probe returns is what a record stores (evaluation.ode.probe): one type, typed rows
# (robustode.records.parts: ProbeRow per setting, LipschitzRow per residual step or ODE time).
ProbeResult = ProbeInfo


def default_settings(model: nn.Module) -> list[dict]:
    """The sweep of a model: its own setting first, then the others worth comparing."""
    own = solvers(model)
    if own:
        s = own[0]
        steps = [{"method": m, "step_size": h} for m in ("euler", "rk4") for h in (s.T / 4, s.T / 16)]
        tolerances = [{"method": "dopri5", "rtol": tol, "atol": tol} for tol in (1e-2, 1e-4)]
        return [{}, *steps, *tolerances, {"T": s.T / 2}, {"T": 2 * s.T}]
    h_stages = _stages_with_h(model)
    sizes = [{"h": h_stages[0].h * f} for f in (0.25, 0.5, 2.0, 4.0)] if h_stages else []
    return [{}, *sizes, *({"scheme": scheme} for scheme in _schemes(model)[1:])]


def check_settings(model: nn.Module, settings: list[dict]) -> None:
    """A setting the model does not have: ConfigError, before any work."""
    own = solvers(model)
    for setting in settings:
        if not setting:
            continue
        if own:
            swapped(own[0], **setting)
            continue
        h_stages, schemes = _stages_with_h(model), _schemes(model)
        if set(setting) - {"h", "scheme"} or ("h" in setting and not h_stages) or \
                ("scheme" in setting and setting["scheme"] not in schemes):
            takes = [*(["h=..."] if h_stages else []), *([f"scheme={'|'.join(schemes)}"] if schemes else [])]
            raise ConfigError(f"probe setting {setting} does not fit {type(model).__name__}: it has no ODE block "
                              f"and takes {' or '.join(takes) if takes else 'no test-time setting'} (a model "
                              "with ODE blocks takes its solver's settings)")
        if "h" in setting and not setting["h"] > 0:
            raise ConfigError(f"probe setting h must be > 0, got {setting['h']}")


def probe(model: nn.Module, data, *, n: int = 100, eps: float = DEFAULT_EPS, settings: list[dict] | None = None,
          batch_size: int = 100, lipschitz: bool = True, quiet: bool = True) -> ProbeResult:
    """Sweep ``settings`` (default: ``default_settings(model)``) and estimate the blocks' Lipschitz profile."""
    settings = default_settings(model) if settings is None else [{}, *settings]
    check_settings(model, settings)
    threat = ThreatModel(eps=eps)
    attack = build("pgd-20", eps=threat.eps)
    result = ProbeInfo(n=n, eps=threat.eps)
    with preserved_mode(model), Progress(len(settings), "probe: test-time settings", quiet=quiet,
                                         unit="settings") as progress:
        model.eval()
        for i, setting in enumerate(settings):
            progress.update(i, describe(model, setting))
            _probe_one(model, data, setting, attack, threat, n, batch_size, quiet, result)
        if lipschitz:
            result.lipschitz = profile(model, _first_images(data, LIPSCHITZ_POINTS, next(model.parameters()).device))
    return result


def _probe_one(model, data, setting: dict, attack, threat: ThreatModel, n: int, batch_size: int, quiet: bool,
               result: ProbeResult) -> None:
    """One setting's clean and PGD-20 accuracy, function evaluations and time, as a row of ``result``."""
    with applied(model, setting):
        start = time.perf_counter()
        ev = evaluate(model, data, [attack], threat, n=n, batch_size=batch_size, quiet=quiet,
                      masking_checks=False, escalate=False)
        result.rows.append(ProbeRow(
            setting=describe(model, setting), own=not setting, **setting, clean=ev.clean_acc,
            clean_interval=list(ev.intervals["clean"]), pgd20=ev.robust[attack.name],
            pgd20_interval=list(ev.intervals[attack.name]), evals_per_forward=_forward_evals(model, data, batch_size),
            seconds=time.perf_counter() - start))


def describe(model: nn.Module, setting: dict) -> str:
    own = solvers(model)
    if own:
        return swapped(own[0], **setting).describe()
    h_stages, schemes = _stages_with_h(model), _schemes(model)
    parts = [f"h={setting.get('h', h_stages[0].h):g}"] if h_stages else []
    if schemes and (not h_stages or "scheme" in setting):
        parts.append(f"scheme={setting.get('scheme', schemes[0])}")
    return " ".join(parts) or "as trained"


@contextmanager
def applied(model: nn.Module, setting: dict):
    """The model under one probe setting, restored afterwards."""
    if solvers(model) and setting:
        with solver_override(model, **setting):
            yield
        return
    with ExitStack() as stack:
        if "h" in setting:
            stack.enter_context(_attribute(_stages_with_h(model), "h", setting["h"]))
        if "scheme" in setting:
            stack.enter_context(_attribute(_scheme_stages(model), "scheme", setting["scheme"]))
        yield


def _schemes(model: nn.Module) -> tuple[str, ...]:
    """A discrete ODE ResNet's test-time schemes, the trained one first (empty: nothing to swap)."""
    stages = _scheme_stages(model)
    return tuple(stages[0].schemes) if stages else ()


def _scheme_stages(model: nn.Module) -> list[nn.Module]:
    """The stages that declare ``schemes`` and read their ``scheme`` in forward (robustode.models.lm_resnet,
    rk_resnet)."""
    return [m for m in model.modules() if isinstance(getattr(m, "schemes", None), tuple)]


@contextmanager
def _attribute(modules, name, value):
    saved = [getattr(m, name) for m in modules]
    for m in modules:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, v in zip(modules, saved):
            setattr(m, name, v)


def _stages_with_h(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(getattr(m, "h", None), float)]


def _first_images(data, k: int, device) -> torch.Tensor:
    """The first ``k`` test images of the DataSet ``data``, as the evaluation feeds them."""
    return load_batch(data.test.images, data.test.labels, 0, k, device)[0]


def _forward_evals(model: nn.Module, data, batch_size: int) -> float | None:
    """Evaluations of f in one forward of a batch (None for a model without ODE blocks)."""
    if not solvers(model):
        return None
    reset_evaluations(model)
    with torch.no_grad():
        model(_first_images(data, batch_size, next(model.parameters()).device))
    return float(function_evaluations(model)["forward"])


def probe_table(result: ProbeResult) -> str:
    """The probe as Markdown: the sweep, then the Lipschitz profile."""
    lines = [f"| setting | clean | PGD-20 (eps {result.eps * 255:.0f}/255) | f-evals/forward | seconds |",
             "|---|---|---|---|---|"]
    for r in result.rows:
        evals = "" if r.evals_per_forward is None else f"{r.evals_per_forward:.0f}"
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        own = " (own)" if r.own else ""
        lines.append(f"| {r.setting}{own} | {_pct(r.clean, r.clean_interval)} | {_pct(r.pgd20, r.pgd20_interval)} | "
                     f"{evals} | {seconds} |")
    if result.lipschitz:
        lines += ["", "| block | t | Lipschitz mean | max | iterations |", "|---|---|---|---|---|"]
        for r in result.lipschitz:
            t = "" if r.t is None else f"{r.t:g}"
            capped = " (cap: not converged)" if r.converged is False else ""
            lines.append(f"| {r.block} | {t} | {r.mean:.3f} | {r.max:.3f} | {r.iterations}{capped} |")
    return "\n".join(lines)


def _pct(value: float, interval) -> str:
    return f"{value:.1%} {interval_text(*interval)}"
