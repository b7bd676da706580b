"""The corruptions threat model's entrance, beside the API (api.py): a model, a robustode checkpoint or a
RobustBench checkpoint evaluated on CIFAR-10-C / CIFAR-100-C (robustode.evaluation.corruptions).

    result = ro.evaluate(model, "cifar10c:/data/CIFAR-10-C", threat="corruptions")    # a CorruptionResult
    run = ro.evaluate_corruptions("runs/x/checkpoints/last.pt", "cifar10c:/data/CIFAR-10-C")   # a record
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .data import DataSet
from .data.corruptions import CorruptionSet
from .entrance import load_corruption_data
from .errors import ConfigError
from .evaluation.corruptions import CorruptionResult, evaluate_corruptions
from .records import DatasetInfo, Evaluated, run_record
from .robustbench_api import evaluate_entry
from .threat import CORRUPTIONS, ThreatModel
from .training import TrainResult, load_checkpoint
from .training.checkpoint import model_from_state
from .utils import resolve_device


def is_corruptions(threat) -> bool:
    """Whether ``threat`` (a name or a ThreatModel) is the corruptions threat model."""
    return threat == CORRUPTIONS or (isinstance(threat, ThreatModel) and threat.norm == CORRUPTIONS)


def evaluate_model(model: nn.Module, data: str | CorruptionSet, clean: str | DataSet | None = None, *,
                   n: int | None = None, batch_size: int = 256, device=None, data_dir=None,
                   quiet: bool = False) -> CorruptionResult:
    """Accuracy of ``model`` per corruption and severity of ``data`` ("cifar10c:PATH"), their mean, and its clean
    accuracy on ``clean`` (default: the data set the corruptions were made from)."""
    corrupted, clean_set = load_corruption_data(data, clean, data_dir)
    return evaluate_corruptions(model, corrupted, clean_set, n=n, batch_size=batch_size,
                                device=None if device is None else resolve_device(device), quiet=quiet)


def evaluate_checkpoint_corruptions(checkpoint: str | Path, data: str | CorruptionSet, clean=None, *,
                                    robustbench: str | None = None, trust_pickle: bool = False, n: int | None = None,
                                    batch_size: int = 256, device=None, data_dir=None, quiet: bool = False,
                                    label: str | None = None, command: str | None = None,
                                    published=None) -> Evaluated:
    """The record of a robustode checkpoint (or, with ``robustbench=NAME``, a RobustBench one) on the corruptions
    of ``data`` ("cifar10c:PATH"); ``clean`` as for ``evaluate_model``; ``published`` the entry's model_info.

        run = ro.evaluate_corruptions("runs/x/checkpoints/last.pt", "cifar10c:/data/CIFAR-10-C", n=1000)
        run.record.evaluation.robust["corruptions"], run.record.evaluation.robust["fog-3"]
    """
    device = resolve_device(device)
    corrupted, clean_set = load_corruption_data(data, clean, data_dir)
    if robustbench is not None:
        trained_on = clean_set.describe()["n_train"]  # its clean training set (entries may add external data)
        return evaluate_entry(robustbench, checkpoint, CORRUPTIONS, lambda model: evaluate_corruptions(
            model, corrupted, clean_set, n=n, batch_size=batch_size, device=device, quiet=quiet),
            DatasetInfo(**corrupted.describe(trained_on)), device=device, trust_pickle=trust_pickle,
            published=published, label=label, command=command)
    if published is not None:
        raise ConfigError("published figures belong to a RobustBench entry: pass robustbench=NAME (--robustbench)")
    ckpt = load_checkpoint(checkpoint)
    trained = TrainResult.from_checkpoint(ckpt, model_from_state(ckpt, checkpoint, device))
    result = evaluate_corruptions(trained.model, corrupted, clean_set, n=n, batch_size=batch_size, device=device,
                                  quiet=quiet)
    evaluated = DatasetInfo(**corrupted.describe(trained.run.data.n_train))
    return run_record(trained, result, dataset=evaluated, label=label, command=command)
