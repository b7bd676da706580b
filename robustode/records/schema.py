"""The record schema: typed sections, each field's type and range.

A record is typed data: numbers are JSON numbers (never strings), accuracies are
fractions in [0, 1], and every field of the schema is present in every file (an
attack's settings and a probe row keep only those that apply). The parts nested in a
section are typed too, all the way down (robustode.records.parts). ``Record.from_dict``
checks all of it (robustode.records.validate) and raises :class:`RecordError` naming
the source and the field's path, so a report never silently drops or misreads a result.

A record stores all its rendering needs (whether its defense is single-step, too), so
an old record renders the same whatever is registered today. Records of schemas 1 to 3
still load: ``migrate`` says what each later version added and how it is filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RecordError
from ..threat import THREATS
from .consistency import check_consistent
from .migrate import from_v1, from_v2, from_v3
from .parts import AttackSettings, EscalationStage, ExtraInfo, FunctionEvaluations, MaskingFlags, OdeInfo
from .show import record_text
from .validate import FRACTION, NONNEG, POSITIVE, build, plain

SCHEMA_VERSION = 4
READS = (1, 2, 3, 4)
DATASET_KINDS = ("real", "jpeg-copy", "synthetic", "custom")
# Why training stopped early (training.Stop.kind): a non-finite loss, max_seconds spent, the defense's guard.
STOP_KINDS = ("diverged", "budget", "guard")


@dataclass
class ModelInfo:
    name: str  # registry name, e.g. "wrn34_10"
    params: int = field(metadata=POSITIVE)  # trainable parameter count


@dataclass
class DefenseInfo:
    spec: str  # as given on the command line, e.g. "yopo-5-3"
    name: str  # the defense family, e.g. "yopo"
    single_step: bool  # one attack step per batch (its class's ``single_step``): the report counts collapses
    hyperparameters: dict = field(default_factory=dict)  # every field of the defense, resolved


@dataclass
class DatasetInfo:
    name: str  # registry name, e.g. "cifar10" or "imagefolder:/data/cifar10-jpeg"
    kind: str = field(metadata={"choices": DATASET_KINDS})  # never mixed in one table
    n_train: int = field(metadata=POSITIVE)
    n_test: int = field(metadata=POSITIVE)
    num_classes: int = field(metadata=POSITIVE)
    source: str = ""  # where the data was read from
    extra: ExtraInfo | None = None  # the extra training set mixed into every minibatch; None: there was none


@dataclass
class OptimizerInfo:
    """The SGD settings a run used, as resolved (the defense's preset where the run set none)."""

    lr: float = field(metadata=NONNEG)  # peak learning rate
    momentum: float = field(metadata=NONNEG)
    weight_decay: float = field(metadata=NONNEG)
    schedule: str  # multistep, cyclic, cosine, constant, onecycle
    milestones: list[float] = field(default_factory=list)  # nominal epochs of multistep's decays
    gamma: float = 0.1  # multistep's factor
    momentum_min: float | None = None  # the momentum at the lr peak, when it cycled


@dataclass
class TrainingInfo:
    epochs: int = field(metadata=NONNEG)  # epochs completed (0 for an evaluated checkpoint)
    # The next four are None for a checkpoint robustode did not train (a RobustBench entry): unknown, not 0.
    batch_size: int | None = field(metadata=POSITIVE)
    seed: int
    seconds: float | None = field(metadata=NONNEG)  # training loop only, after synchronize
    images_per_second: float | None = field(metadata=NONNEG)  # training images per second
    passes_per_image: float | None = field(metadata=NONNEG)  # forward+backward passes per image per epoch
    optimizer: OptimizerInfo | None = None  # None for a checkpoint robustode did not train
    stopped_early: str | None = None  # the reason, when training stopped before its last epoch
    stop_kind: str | None = field(default=None, metadata={"choices": STOP_KINDS})
    # One row per data epoch: epoch, nominal_epoch, lr, loss, train_acc, eval_clean, eval_robust (held out).
    curve: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch of checkpoints/best.pt (keep_best), marked on the curve
    world_size: int = field(default=1, metadata=POSITIVE)  # data-parallel processes (GPUs): seconds x it = GPU-s
    peak_memory_bytes: int | None = field(default=None, metadata=NONNEG)  # CUDA peak allocated; None on CPU
    flops_per_image: float | None = field(default=None, metadata=NONNEG)  # counted, one training step
    # An ODE model's f-evaluations per training minibatch (all the defense's passes), averaged over the run's
    # epochs; None for a discrete model (and in a record of schema 3 or older, which did not keep them).
    function_evaluations: FunctionEvaluations | None = None


@dataclass
class EvaluationInfo:
    n: int = field(metadata=POSITIVE)  # the first n test images, unshuffled
    norm: str = field(metadata={"choices": THREATS})  # "corruptions": eps 0, robust holds each cell and the mean
    eps: float = field(metadata=NONNEG)  # pixel space
    clean_acc: float = field(metadata=FRACTION)
    pgd20_acc: float | None = field(metadata=FRACTION)  # None when PGD-20 was not run
    autoattack_acc: float | None = field(default=None, metadata=FRACTION)
    autoattack_standard: bool = False  # False: not the standard AA (e.g. torchattacks' 10-step version)
    robust: dict[str, float] = field(default_factory=dict, metadata=FRACTION)  # every attack run
    attack_settings: dict[str, AttackSettings] = field(default_factory=dict)  # per attack, as it ran
    seconds: float = field(default=0.0, metadata=NONNEG)
    flags: MaskingFlags = field(default_factory=MaskingFlags)  # gradient-masking checks
    worst_case_acc: float | None = field(default=None, metadata=FRACTION)  # correct under every attack
    # 95% interval [lo, hi] of "clean", every attack and "worst_case", by interval_method.
    intervals: dict[str, list[float]] = field(default_factory=dict, metadata=FRACTION)
    interval_method: str = field(default="wilson", metadata={"choices": ("wilson", "clopper-pearson")})
    per_example: dict | None = None  # {"file": name beside the record, "sha256": ...}: per-point results
    randomized: bool = False  # two eval-mode forwards of one batch differed: evaluated with EOT
    escalation: list[EscalationStage] = field(default_factory=list)  # stages run because a flag fired, in order
    # A model with ODE blocks: its solvers and per attack the evaluations of f per batch; robustode probe's
    # sweep when it ran (on a discrete ODE ResNet too). None otherwise.
    ode: OdeInfo | None = None

    @property
    def autoattack_spec(self) -> str | None:
        """The attack that is AutoAttack, under any spec ("autoattack", "autoattack-dev", ...), or None."""
        return next((k for k in self.robust if k in self.attack_settings
                     and self.attack_settings[k].attack == "autoattack"), None)


@dataclass
class Provenance:
    robustode_version: str
    git_commit: str | None
    torch_version: str
    device: str  # e.g. "NVIDIA H200"
    device_type: str  # "cuda" or "cpu"
    precision: str  # e.g. "bf16" or "fp32"
    date: str = field(metadata={"iso_date": True})


@dataclass
class Record:
    model: ModelInfo
    defense: DefenseInfo
    dataset: DatasetInfo
    training: TrainingInfo
    evaluation: EvaluationInfo
    provenance: Provenance
    label: str | None = None  # a short name for this run, shown beside the method
    notes: str | None = None
    command: str | None = None  # the command line that produced it
    schema_version: int = SCHEMA_VERSION
    # The file this record was read from (set by load_record, never written): its per-example results lie
    # beside it. Not part of the record's value: two equal records read from two files are equal.
    path: Path | None = field(default=None, compare=False, metadata={"stored": False})

    def __str__(self) -> str:
        return record_text(self)

    __repr__ = __str__

    def to_dict(self) -> dict:
        d = plain(self)
        return {"schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, d, source: str = "record") -> Record:
        """Check every field and its type; raise RecordError naming ``source``."""
        if not isinstance(d, dict):
            raise RecordError(f"{source}: a record must be a JSON object, got {type(d).__name__}")
        version = d.get("schema_version")
        if version not in READS or isinstance(version, bool):
            raise RecordError(f"{source}: schema version {version!r}, but this robustode reads "
                              f"versions {', '.join(map(str, READS))}")
        if version < 3:
            d = from_v2(d, version, source)
        if version < 4:
            d = from_v3(d)
        record = build(cls, d, source, "", lenient=version < SCHEMA_VERSION)  # older: later fields default
        if version < 2:
            from_v1(record)
        check_consistent(record, source)
        record.schema_version = SCHEMA_VERSION
        return record
