"""``ro.probe`` and ``ro.probe_checkpoint``: the ODE probe's entrance (names become objects here)."""

from __future__ import annotations

import os

from torch import nn

from .entrance import load_data
from .probing import ProbeResult, check_settings
from .probing import probe as probe_built
from .threat import DEFAULT_EPS, ThreatModel
from .training import load_checkpoint
from .training.checkpoint import model_from_state
from .utils import check_positive_int


def probe(model: nn.Module, data="cifar10", *, n: int = 100, eps=DEFAULT_EPS, settings: list[dict] | None = None,
          batch_size: int = 100, lipschitz: bool = True, data_dir=None, quiet: bool = True) -> ProbeResult:
    """Sweep ``model``'s test-time solver settings (or step size h, or scheme) and estimate its blocks'
    Lipschitz profile on the first ``n`` test images of ``data`` (a name or a DataSet).

        result = ro.probe(ro.load_model("runs/x/checkpoints/last.pt"), "cifar10-jpeg", n=200)
        result = ro.probe(model, data, settings=[{"method": "dopri5", "rtol": 1e-4, "atol": 1e-4}])
        print(robustode.probing.probe_table(result))

    ``settings``: extra settings to sweep (default: robustode.probing.default_settings); a setting the model
    does not have is a ConfigError before any work. Returns a ProbeResult: the typed ProbeInfo a record keeps
    (``result.rows[0].clean``, ``result.lipschitz[0].mean``; ``to_dict()`` for JSON).
    """
    n, batch_size = check_positive_int(n, "n"), check_positive_int(batch_size, "batch_size")
    threat = ThreatModel(eps=eps)
    check_settings(model, [{}, *(settings or [])])  # before the data is loaded
    dataset = load_data(data, data_dir) if isinstance(data, str) else data
    return probe_built(model, dataset, n=n, eps=threat.eps, settings=settings, batch_size=batch_size,
                       lipschitz=lipschitz, quiet=quiet)


def probe_checkpoint(checkpoint: str | os.PathLike, data=None, **options) -> ProbeResult:
    """``probe`` of the registered model in a checkpoint of ``ro.train``, on its run's data set by default."""
    state = load_checkpoint(checkpoint)
    model = model_from_state(state, checkpoint)
    return probe(model, data if data is not None else state["config"]["data"]["name"], **options)
