"""The corruptions threat model: accuracy per corruption and severity, and their mean, with intervals.

No adversary: each of the 15 corruptions at each of the 5 severities is a fixed copy of the test set
(robustode.data.corruptions). As RobustBench reports it, the figure is the mean accuracy over the 75
(corruption, severity) cells. Each cell has a 95% Wilson interval on its n images; the mean has a 95%
normal interval over the n test images of each image's accuracy across the 75 cells (the cells share their
images, so their counts are not independent draws and a pooled binomial interval would be too narrow).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..attacks.guards import preserved_mode
from ..data.corruptions import SEVERITIES, CorruptionSet
from ..errors import DataError
from ..progress import Progress
from ..stats import Z95, interval
from ..threat import CORRUPTIONS
from ..threat import corruption_cell as cell
from ..utils import check_positive_int, device_name, model_device, provenance, synchronize
from .attack_loop import load_batch
from .result import INTERVAL_METHOD, fraction

MEAN = CORRUPTIONS  # the mean's name among the accuracies and their intervals


@dataclass
class CorruptionResult:
    """What ``evaluate_corruptions`` returns; read by the record builder as an EvalResult is."""

    clean_acc: float
    robust: dict[str, float]  # MEAN and every cell "fog-3" -> accuracy
    worst_case: float  # correct clean and in all 75 cells
    n: int
    batch_size: int
    attack_settings: dict[str, dict]
    seconds: float
    device: str
    seed: int = 0
    norm: str = "corruptions"
    eps: float | None = None
    flags: dict = field(default_factory=lambda: {"fired": [], "messages": []})
    provenance: dict = field(default_factory=dict)
    per_point: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    interval_method: str = INTERVAL_METHOD
    randomized: bool = False
    escalation: list[dict] = field(default_factory=list)


def evaluate_corruptions(model, corrupted: CorruptionSet, clean, *, n: int | None = None, batch_size: int = 256,
                         device=None, quiet: bool = False) -> CorruptionResult:
    """Accuracy of ``model`` on the first ``n`` images of every corruption and severity, and on ``clean`` (a
    DataSet whose test split is the uncorrupted test set, for the clean accuracy)."""
    batch_size = check_positive_int(batch_size, "batch_size")
    n = corrupted.per_severity if n is None else check_positive_int(n, "n")
    if n > corrupted.per_severity or n > len(clean.test):
        raise DataError(f"asked for n={n} images, but {corrupted.title} has {corrupted.per_severity} per severity "
                        f"and {clean.name} {len(clean.test)} test images")
    if clean.num_classes != corrupted.num_classes:
        raise DataError(f"{clean.name} has {clean.num_classes} classes, {corrupted.title} {corrupted.num_classes}")
    device = model_device(model, device)
    start = time.perf_counter()
    points = {}
    with preserved_mode(model), torch.no_grad(), Progress(1 + len(corrupted.corruptions) * SEVERITIES,
                                                          f"{corrupted.title}, {n} images per cell", quiet=quiet,
                                                          unit="cells") as progress:
        model.eval().to(device)
        points["clean"] = _correct(model, clean.test.images[:n], clean.test.labels[:n], batch_size, device)
        done = 1
        progress.update(done)
        for corruption in corrupted.corruptions:
            for s in range(1, SEVERITIES + 1):
                points[cell(corruption, s)] = _correct(model, *corrupted.severity(corruption, s, n), batch_size, device)
                done += 1
                progress.update(done)  # the cells done so far
    synchronize(device)
    return _result(points, n, batch_size, device, corrupted, time.perf_counter() - start)


def _correct(model, x_all, y_all, batch_size, device) -> torch.Tensor:
    return torch.cat([model(x).argmax(1).eq(y).cpu() for x, y in
                      (load_batch(x_all, y_all, i, batch_size, device) for i in range(0, len(y_all), batch_size))])


def _result(points, n, batch_size, device, corrupted, seconds) -> CorruptionResult:
    cells = [k for k in points if k != "clean"]
    per_image = torch.stack([points[k] for k in cells]).float().mean(0)  # each image's accuracy over the cells
    mean, spread = per_image.mean().item(), per_image.std().item() / math.sqrt(n) if n > 1 else 0.0
    worst = points["clean"].clone()
    for k in cells:
        worst &= points[k]
    robust = {MEAN: mean, **{k: fraction(points[k]) for k in cells}}
    intervals = {k: interval(int(points[k].sum()), n) for k in ["clean", *cells]}
    intervals[MEAN] = (max(0.0, mean - Z95 * spread), min(1.0, mean + Z95 * spread))
    settings = {MEAN: {"data": corrupted.name, "corruptions": list(corrupted.corruptions), "severities": SEVERITIES,
                       "per_severity": corrupted.per_severity,
                       "mean_interval": "normal, over images of each image's accuracy across the cells"}}
    return CorruptionResult(clean_acc=fraction(points["clean"]), robust=robust, worst_case=fraction(worst), n=n,
                            batch_size=batch_size, attack_settings=settings, seconds=seconds,
                            device=device_name(device), provenance=provenance(device, "float32"),
                            per_point={**points, "worst_case": worst},  # the mean is no yes/no per point: none for it
                            intervals={**intervals, "worst_case": interval(int(worst.sum()), n)})
