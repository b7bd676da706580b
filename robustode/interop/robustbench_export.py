"""robustode results in RobustBench's format: the model-info JSON and a plain state dict in its key layout.

The JSON has the fields of RobustBench's model_info files, in their order, with accuracies as strings
with two decimals ("92.44") as those files write them, and ``unreliable: true`` when a gradient-masking
flag fired or escalation broke points AutoAttack left standing. The checkpoint goes where RobustBench's
``load_model`` looks: ``models/<dataset>/<threat>/<Name>.pt``; the JSON beside it in
``model_info/<dataset>/<threat>/<Name>.json``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, RecordError
from ..files import check_output_file, write_atomic
from ..records import Record
from ..threat import eps_text
from .robustbench_keys import to_robustbench
from .robustbench_zoo import layout_of

THREAT_FOLDERS = {"linf": "Linf", "l2": "L2", "corruptions": "corruptions"}  # a record's norm -> RobustBench's
ARCHITECTURES = {"dm": "WideResNet-{d}-{k} (SiLU)", "wrn": "WideResNet-{d}-{k}", "preact": "PreActResNet-18"}


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def unreliable(record: Record) -> bool:
    """A masking flag fired, or an escalation stage broke points the attacks had left robust."""
    ev = record.evaluation
    return bool(ev.flags.fired) or any((stage.broken or 0) > 0 for stage in ev.escalation)


def model_info(record: Record, name: str) -> dict:
    """The model-info dict of ``record`` (RobustBench ranks by AutoAttack: a record without it is refused)."""
    ev = record.evaluation
    if ev.autoattack_acc is None:
        raise RecordError(f"record {record.path or record.model.name} has no AutoAttack accuracy, and RobustBench "
                          "ranks entries by AutoAttack: evaluate it with --attacks autoattack first")
    layout, arch = layout_of(record.model.name), record.model.name
    depth_width = arch.rsplit("wrn", 1)[-1].split("_") if layout != "preact" else ["18", "0"]
    notes = [(f"Evaluated by robustode {record.provenance.robustode_version} on the first {ev.n} test images of "
              f"{record.dataset.name}; trained with {record.defense.spec} for {record.training.epochs} epochs.")]
    if not ev.autoattack_standard:
        notes.append("Not the standard AutoAttack.")
    if ev.worst_case_acc is not None and ev.worst_case_acc < ev.autoattack_acc:
        notes.append(f"Worst case over all robustode attacks: {percent(ev.worst_case_acc)}%.")
    return {"link": None, "name": name, "authors": None, "additional_data": False, "number_forward_passes": 1,
            "dataset": record.dataset.name, "venue": None,
            "architecture": ARCHITECTURES[layout].format(d=depth_width[0], k=depth_width[-1]),
            "eps": eps_text(ev.eps), "clean_acc": percent(ev.clean_acc), "reported": None,
            "autoattack_acc": percent(ev.autoattack_acc), "footnote": " ".join(notes),
            "unreliable": unreliable(record)}


def export_paths(record: Record, out: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Where ``export`` writes (the model-info JSON, the weights), each checked: refused if it exists (unless
    ``force``) or cannot be written, before any work."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"export name must be a plain file name, got {name!r}")
    folder = Path(record.dataset.name) / THREAT_FOLDERS[record.evaluation.norm]
    return (check_output_file(Path(out) / "model_info" / folder / f"{name}.json", force=force, what="model info"),
            check_output_file(Path(out) / "models" / folder / f"{name}.pt", force=force, what="weights"))


def export(record: Record, model: nn.Module, out: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write ``out/model_info/<dataset>/<threat>/<name>.json`` and ``out/models/<dataset>/<threat>/<name>.pt``,
    each atomically; an existing one is replaced only with ``force``."""
    json_path, pt_path = export_paths(record, out, name, force)
    info = model_info(record, name)
    layout, state = layout_of(record.model.name), model.state_dict()
    if layout == "wrn" and any(k.startswith("stem.norm.") for k in state):
        raise ConfigError(f"RobustBench's WideResNet takes unnormalized images, but this {record.model.name} "
                          "normalizes inside; only models built with normalize=False export to that layout")
    weights = io.BytesIO()
    torch.save(to_robustbench(layout, state), weights)
    write_atomic(pt_path, weights.getvalue())
    write_atomic(json_path, json.dumps(info, indent=2) + "\n")
    return json_path, pt_path
