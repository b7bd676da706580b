"""The typed parts nested in a record's sections, all the way down.

    record.evaluation.attack_settings["pgd-20"].steps
    record.evaluation.flags.fired, record.evaluation.flags.checks.pgd_more
    record.evaluation.escalation[0].stage
    record.evaluation.ode.evaluations_per_batch["pgd-20"].forward
    record.dataset.extra.count, record.training.function_evaluations.backward

Each is written by one part of robustode (named in its docstring); every key such a writer stores has
a field here, and the attack settings no field names (a torchattacks attack's own arguments, a custom
attack's) are kept under ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from .validate import FRACTION, NONNEG, POSITIVE, fits, plain


@dataclass
class FunctionEvaluations:
    """An ODE model's evaluations of its fields f per minibatch (one evaluation takes the whole minibatch),
    summed over its ODE blocks (robustode.models.solver)."""

    forward: float = field(metadata=NONNEG)  # in the forward solves
    backward: float = field(metadata=NONNEG)  # in the adjoint's backward solves (0 without the adjoint)


@dataclass
class AttackSettings:
    """One attack's settings as it ran (its ``Attack.settings``); only those that apply are stored."""

    SPARSE: ClassVar[bool] = True
    # The family where the attack's name does not say it: "autoattack", "torchattacks.CW", "transfer", ...
    attack: str | None = None
    eps: float | None = field(default=None, metadata=NONNEG)  # the radius (pixel space)
    norm: str | None = None  # "linf" or "l2" (torchattacks spells them "Linf", "L2")
    steps: int | None = field(default=None, metadata=POSITIVE)
    alpha: float | None = field(default=None, metadata=NONNEG)  # the step size
    restarts: int | None = field(default=None, metadata=POSITIVE)
    random_start: bool | None = None
    early_stop: bool | None = None
    autocast_dtype: str | None = None  # e.g. "bfloat16"; None: float32
    eot: int | None = field(default=None, metadata=POSITIVE)  # draws per gradient against a randomized model
    seed: int | None = None
    note: str | None = None  # what a reader of its number must know (e.g. "non-standard AutoAttack ...")
    # AutoAttack (robustode.attacks.autoattack.AutoAttackConfig)
    standard: bool | None = None  # the reference version: only then is its number AutoAttack's
    version: str | None = field(default=None, metadata={"choices": ("standard", "rand")})
    apgd_steps: int | None = field(default=None, metadata=POSITIVE)
    apgdt_targets: int | None = field(default=None, metadata=POSITIVE)
    apgdt_steps: int | None = field(default=None, metadata=POSITIVE)
    fab_targets: int | None = field(default=None, metadata=POSITIVE)
    fab_steps: int | None = field(default=None, metadata=POSITIVE)
    square_queries: int | None = field(default=None, metadata=POSITIVE)
    eot_iter: int | None = field(default=None, metadata=POSITIVE)  # rand: draws per step and per verdict
    precision: str | None = field(default=None, metadata={"choices": ("float32", "bf16")})
    # Square (robustode.attacks.adapter.square, as standard AutoAttack runs it)
    n_queries: int | None = field(default=None, metadata=POSITIVE)
    n_restarts: int | None = field(default=None, metadata=POSITIVE)
    p_init: float | None = field(default=None, metadata=NONNEG)
    resc_schedule: bool | None = None
    # Escalation's transfer and solver-swap stages (robustode.evaluation.escalation)
    base: str | None = None  # the attack run on the surrogate or through the swapped solver
    surrogate: str | None = None  # the surrogate model's class
    attack_solver: list[str] | None = None  # per ODE block, the solver the attack differentiated through
    test_solver: list[str] | None = None  # per ODE block, the model's own solver that judged the points
    # The corruptions threat model (robustode.evaluation.corruptions): no attack, a fixed set of copies
    data: str | None = None
    corruptions: list[str] | None = None
    severities: int | None = field(default=None, metadata=POSITIVE)
    per_severity: int | None = field(default=None, metadata=POSITIVE)
    mean_interval: str | None = None  # how the mean's interval was made
    other: dict = field(default_factory=dict)  # every other setting, under its own name

    @classmethod
    def stored(cls, settings: dict) -> dict:
        """An attack's settings dict as the record stores it: each key with a field of that type in it, the
        rest (a torchattacks attack's own arguments, a custom attack's) under ``other``."""
        named = {f.name for f in fields(cls) if f.name != "other"}
        typed = {k: v for k, v in settings.items() if k in named and fits(cls, k, v)}
        rest = {k: v for k, v in settings.items() if k not in typed}
        return {**typed, "other": rest} if rest else typed

    def __repr__(self) -> str:
        return _sparse_repr(self)


@dataclass
class SubsetChecks:
    """The masking checks run on the first points (robustode.evaluation.masking.subset_checks)."""

    subset: int = field(metadata=POSITIVE)  # points checked
    zero_grad_fraction: float = field(metadata=FRACTION)  # with an exactly zero input gradient
    more_steps: int = field(metadata=POSITIVE)  # the steps PGD-20 is compared with
    pgd20: float = field(metadata=FRACTION)  # PGD-20 accuracy on the subset
    pgd_more: float = field(metadata=FRACTION)  # PGD-more_steps accuracy
    pgd20_2eps: float = field(metadata=FRACTION)  # PGD-20 accuracy at twice the eps
    ascent_fraction: float | None = field(default=None, metadata=FRACTION)  # None: too few points judged
    # Largest change of a point's logits when its batchmates change, relative to their scale (None: the
    # model is randomized, so not judged), and how many points ran alone (composition.batch_dependence).
    batch_change: float | None = field(default=None, metadata=NONNEG)
    points_alone: int | None = field(default=None, metadata=NONNEG)


@dataclass
class MaskingFlags:
    """The gradient-masking checks of an evaluation (robustode.evaluation.masking.flags); a check that could
    not run reads None, never False."""

    fired: list[str] = field(default_factory=list)  # the flags that call for a closer look, by name
    messages: list[str] = field(default_factory=list)  # one sentence per fired flag
    zero_grad_fraction: float | None = field(default=None, metadata=FRACTION)
    ascent_fraction: float | None = field(default=None, metadata=FRACTION)  # a gradient step raised the loss
    steps_monotone: bool | None = None  # PGD did not gain accuracy with more steps
    eps_monotone: bool | None = None  # nor with a larger eps
    blackbox_beats_whitebox: bool | None = None
    blackbox_only_fraction: float | None = field(default=None, metadata=FRACTION)  # broken by black-box only
    loose_acc: float | None = field(default=None, metadata=FRACTION)  # any point correct after the attack
    pgd_autoattack_gap: float | None = field(default=None, metadata={"range": (-1.0, 1.0)})  # PGD-20 minus AA
    outside_threat_model: list[str] = field(default_factory=list)  # attacks that left [0, 1] or their ball
    non_finite: dict[str, int] = field(default_factory=dict, metadata=NONNEG)  # per attack: NaN or inf points
    batch_dependent: bool | None = None  # a point's logits depend on its batchmates
    composition: str | None = None  # how a batch-dependent model's batches were fixed
    checks: SubsetChecks | None = None  # None: the subset checks were skipped


@dataclass
class EscalationStage:
    """One stage of escalation (robustode.evaluation.escalation), run on the points still robust."""

    stage: str  # "solver-swap", "square", "transfer" or "autoattack-rand"
    why: list[str]  # the reasons the evaluation escalated (fired flags, "randomized", ...)
    skipped: str | None = None  # why the stage did not run (then the fields below are None)
    attack: str | None = None  # the attack's name
    settings: AttackSettings | None = None
    surrogate: str | None = None  # how the transfer stage's surrogate was made
    points: int | None = field(default=None, metadata=NONNEG)  # the points still robust it attacked
    broken: int | None = field(default=None, metadata=NONNEG)  # of them, broken by it
    worst_case_after: float | None = field(default=None, metadata=FRACTION)
    seconds: float | None = field(default=None, metadata=NONNEG)


@dataclass
class ExtraInfo:
    """The extra training set mixed into every minibatch (robustode.data.extra.ExtraSet.describe)."""

    source: str  # the paths as given
    count: int = field(metadata=POSITIVE)  # images
    shape: list[int] = field(metadata=POSITIVE)  # one image's (H, W, C)
    histogram: list[int] = field(metadata=NONNEG)  # images per class
    digest: str  # SHA-256 of what digest_of says
    digest_of: str = field(metadata={"choices": ("files", "labels and shapes")})
    fraction: float = field(metadata=FRACTION)  # the share of extra images in every minibatch


@dataclass
class ProbeRow:
    """One test-time setting of robustode probe (robustode.probing); only the settings it changes are stored."""

    SPARSE: ClassVar[bool] = True
    setting: str  # the setting described, e.g. "rk4 h=0.0625 T=1"
    own: bool  # the model's own setting
    clean: float = field(metadata=FRACTION)
    pgd20: float = field(metadata=FRACTION)
    clean_interval: list[float] = field(default_factory=list, metadata=FRACTION)  # 95%
    pgd20_interval: list[float] = field(default_factory=list, metadata=FRACTION)
    evals_per_forward: float | None = field(default=None, metadata=NONNEG)  # f per batch; None: no ODE block
    seconds: float | None = field(default=None, metadata=NONNEG)
    # What it changes: an ODE block's solver (robustode.models.solver.Solver), a small-step ResNet's h, or
    # the scheme of a discrete ODE ResNet (small-step, LM, RK2).
    method: str | None = None
    step_size: float | None = field(default=None, metadata=NONNEG)
    rtol: float | None = field(default=None, metadata=NONNEG)
    atol: float | None = field(default=None, metadata=NONNEG)
    max_steps: int | None = field(default=None, metadata=POSITIVE)
    adjoint: bool | None = None
    T: float | None = field(default=None, metadata=NONNEG)
    h: float | None = field(default=None, metadata=NONNEG)
    scheme: str | None = None

    def __repr__(self) -> str:
        return _sparse_repr(self)


@dataclass
class LipschitzRow:
    """One residual step or ODE time of robustode probe's Lipschitz profile (robustode.lipschitz.profile)."""

    block: str  # the module's name in the model
    t: float | None  # time along an ODE block; None: a discrete residual step
    depth: int = field(metadata=NONNEG)  # position along the model's depth
    mean: float = field(metadata=NONNEG)  # over the points
    max: float = field(metadata=NONNEG)
    iterations: int = field(metadata=NONNEG)  # Lanczos iterations (robustode.lipschitz)
    converged: bool | None = None  # every point's residual within the tolerance; None: not recorded


@dataclass
class ProbeInfo:
    """robustode probe's sweep of test-time settings and its Lipschitz profile: what ro.probe returns (as
    robustode.probing.ProbeResult, the same type) and a record keeps."""

    n: int = field(metadata=POSITIVE)  # the first n test points
    eps: float = field(metadata=NONNEG)
    rows: list[ProbeRow] = field(default_factory=list)  # the model's own setting first
    lipschitz: list[LipschitzRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        """As the record (and ``robustode probe --out``) stores it."""
        return plain(self)


@dataclass
class OdeInfo:
    """A model with ODE blocks, or a probed one: its solvers, the attacks' f-evaluations, the probe."""

    solvers: list[str] = field(default_factory=list)  # each block's, described: "dopri5 rtol=0.001 atol=0.001 T=1"
    evaluations_per_batch: dict[str, FunctionEvaluations] = field(default_factory=dict)  # per attack
    probe: ProbeInfo | None = None  # None: robustode probe did not run on it


def _sparse_repr(part) -> str:
    """The fields that apply only, as the record stores them."""
    return f"{type(part).__name__}({', '.join(f'{k}={v!r}' for k, v in plain(part).items())})"
