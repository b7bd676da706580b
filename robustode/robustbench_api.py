"""RobustBench in and out, beside the API (api.py): its checkpoints as robustode models, evaluated by robustode's
evaluator into records, and robustode's records and weights in its format.

    model = ro.load_robustbench("Wang2023Better_WRN-28-10", "Wang2023Better_WRN-28-10.pt")
    run = ro.evaluate_robustbench("Wang2023Better_WRN-28-10", "Wang2023Better_WRN-28-10.pt", attacks=["autoattack"])
    ro.export_robustbench("runs/x/record.json", "runs/x/checkpoints/last.pt", "rb", name="Me2026_WRN-28-10")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from .data import DataSet
from .entrance import (
    DEFAULT_ATTACKS,
    build_attacks,
    build_robustbench,
    build_threat,
    evaluate_loaded,
    load_data,
)
from .errors import ConfigError
from .files import content_digest, sha256_file
from .interop.robustbench_export import THREAT_FOLDERS, export, export_paths, model_info
from .interop.robustbench_published import read_published
from .records import DatasetInfo, Evaluated, Record, checkpoint_record, load_record
from .threat import DEFAULT_EPS
from .training import load_checkpoint
from .training.checkpoint import model_from_state
from .utils import resolve_device


def load_robustbench(name: str, checkpoint: str | Path, *, trust_pickle: bool = False, device="cpu") -> nn.Module:
    """A RobustBench CIFAR-10 checkpoint as a robustode model, loaded strictly, in eval mode.

    ``name`` is a RobustBench entry ("Wang2023Better_WRN-28-10"; docs/robustbench.md lists those robustode
    builds) or a robustode model with RobustBench's layout ("dm_wrn28_10", for a file ``ro.export_robustbench``
    wrote). A file holding pickled objects is refused unless ``trust_pickle`` (loading it runs its code).

        model = ro.load_robustbench("Wang2023Better_WRN-28-10", "models/cifar10/Linf/Wang2023Better_WRN-28-10.pt")
    """
    return build_robustbench(name, checkpoint, trust_pickle).to(device)


def evaluate_robustbench(name: str, checkpoint: str | Path, data: str | DataSet = "cifar10", *,
                         attacks: Sequence[str] | str = DEFAULT_ATTACKS, n: int | None = None,
                         eps: float | str = DEFAULT_EPS, trust_pickle: bool = False, batch_size: int = 256,
                         device=None, data_dir=None, masking_checks: bool = True, quiet: bool = False,
                         label: str | None = None, command: str | None = None,
                         published: str | Path | None = None, state: str | Path | None = None) -> Evaluated:
    """Evaluate a RobustBench checkpoint with robustode's evaluator; return its record and per-point results.

    ``published``: the entry's model_info JSON (or a model_info folder): its clean, AutoAttack and external
    figures go into the record beside robustode's (robustode.interop.robustbench_published.comparison).
    ``state``: a folder that keeps the evaluation's per-point progress, as in ``evaluate_checkpoint``.

        run = ro.evaluate_robustbench("Wang2023Better_WRN-28-10", "Wang2023Better_WRN-28-10.pt",
                                      attacks=["pgd-20", "autoattack"], n=1000)
    """
    device = resolve_device(device)
    threat = build_threat(eps)
    built = build_attacks(attacks, threat)
    dataset = load_data(data, data_dir)

    def run(model: nn.Module):  # the entry's name beside its weights: the name decides the model they load into
        return evaluate_loaded(model, dataset, built, threat, lambda: content_digest([name, model.state_dict()]), n=n,
                               batch_size=batch_size, device=device, quiet=quiet, masking_checks=masking_checks,
                               state=state)

    return evaluate_entry(name, checkpoint, threat.norm, run, DatasetInfo(**dataset.describe()), device=device,
                          trust_pickle=trust_pickle, published=published, label=label, command=command)


def evaluate_entry(name: str, checkpoint: str | Path, norm: str, run: Callable[[nn.Module], object],
                   dataset: DatasetInfo, *, device, trust_pickle: bool, published, label: str | None,
                   command: str | None) -> Evaluated:
    """The record of RobustBench entry ``name``'s weights evaluated by ``run(model)`` on ``dataset``: its
    published figures for ``norm`` are read (and checked) first, then the model is built strictly."""
    figures = published_figures(published, name, norm)
    model = build_robustbench(name, checkpoint, trust_pickle).to(device)
    return checkpoint_record(*origin(name, checkpoint, model, figures), run(model), dataset, label=label,
                             command=command)


def origin(name: str, checkpoint: str | Path, model: nn.Module, published: dict | None = None) -> tuple[dict, dict]:
    """The record's model and defense sections for RobustBench entry ``name``'s weights: what was evaluated,
    where it came from (the file and its SHA-256) and, when given, RobustBench's published figures for it."""
    digest = sha256_file(checkpoint)
    entry = {"entry": name, "checkpoint": str(checkpoint), "sha256": digest}
    return ({"name": model.robustode_name, "params": sum(p.numel() for p in model.parameters())},
            {"spec": f"robustbench:{name}", "name": "robustbench", "single_step": False,
             "hyperparameters": {**entry, **({"published": published} if published else {})}})


def published_figures(published: str | Path | None, name: str, norm: str) -> dict | None:
    """RobustBench's figures for ``name`` from a model_info JSON or folder (checked before any evaluation)."""
    return None if published is None else read_published(published, name, THREAT_FOLDERS[norm])


def export_robustbench(record: str | Path | Record, checkpoint: str | Path, out: str | Path,
                       name: str | None = None, force: bool = False) -> tuple[Path, Path]:
    """Write ``record`` (which must include AutoAttack) and the weights of ``checkpoint`` in RobustBench's format:
    ``out/model_info/<dataset>/<threat>/<name>.json`` and ``out/models/<dataset>/<threat>/<name>.pt`` (a plain
    state dict its constructor loads), each atomically; an existing one is replaced only with ``force``.
    Returns the two paths.

        ro.export_robustbench("runs/x/record.json", "runs/x/checkpoints/last.pt", "rb", name="Me2026_WRN-28-10")
    """
    record = record if isinstance(record, Record) else load_record(record)
    name = name or record.label or f"robustode_{record.model.name}"
    model_info(record, name)  # a record without AutoAttack is refused before the weights are read
    export_paths(record, out, name, force)  # and so is an output that exists or cannot be written
    model = model_from_state(load_checkpoint(checkpoint), checkpoint)
    if model.robustode_name != record.model.name:
        raise ConfigError(f"checkpoint {checkpoint} holds a {model.robustode_name}, but the record evaluates a "
                          f"{record.model.name}")
    return export(record, model, out, name, force)
