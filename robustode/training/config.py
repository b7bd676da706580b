"""Training settings: what a user asks for (``TrainConfig``: ``None`` takes the defense's paper preset)
and what a run uses (``TrainSettings``: every field concrete and checked, frozen)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch

from ..dist import local_device
from ..errors import ConfigError
from ..rules import (BELOW_ONE, COUNT, COUNT0, FINITE_NONNEG, NONNEG, OPEN_UNIT, Choice, Each, Number,
                     check_fields, rule)
from ..utils import resolve_device
from .averaging import EMA_STYLES
from .loggers import LOGGERS
from .schedules import SCHEDULES

PRECISIONS = ("bf16", "float32")
SCHEDULE = Choice(tuple(SCHEDULES))
# Training settings come as Python values (the CLI parses its flags itself): no spec text to parse.
INT1, INT0, RATE, PEAK = COUNT.typed_(), COUNT0.typed_(), FINITE_NONNEG.typed_(), OPEN_UNIT.typed_()
BUDGET_SECONDS = Number(0.0, low_open=True, optional=True, from_text=False, says="be > 0 (or None for no budget)")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRESET_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "milestones", "gamma",
               "cyclic_peak", "cycle_momentum", "momentum_min")

# Settings that shape the training trajectory: a resumed run must keep them.
TRAJECTORY_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "milestones",
                   "gamma", "cyclic_peak", "cycle_momentum", "momentum_min", "nesterov", "no_wd_norms", "seed",
                   "augment", "drop_last", "extra_fraction", "ema_style")


@dataclass(frozen=True)
class TrainConfig:
    """The training settings asked for; a field left ``None`` takes the defense's paper preset."""

    # nominal epochs; Free-m passes over the data ceil(epochs / m) times
    epochs: int | None = rule(None, INT1)
    batch_size: int | None = rule(None, INT1)  # training minibatch size (the global one under torchrun)
    # peak learning rate (the defense may scale some groups, e.g. YOPO's layer one)
    lr: float | None = rule(None, RATE)
    momentum: float | None = rule(None, RATE)  # SGD momentum
    weight_decay: float | None = rule(None, RATE)  # L2 weight decay, except on the groups that get 0
    # multistep | cyclic | cosine | constant | onecycle, as a function of nominal epochs
    schedule: str | None = rule(None, SCHEDULE)
    milestones: tuple[float, ...] | None = None  # nominal epochs at which multistep multiplies lr by gamma
    gamma: float | None = rule(None, RATE)  # multistep factor
    # fraction of the run where cyclic and onecycle peak (Wong et al.'s train_fgsm.py: 0.5)
    cyclic_peak: float | None = rule(None, PEAK)
    # Momentum moving against the lr multiplier f: momentum - (momentum - momentum_min) * f, per optimizer
    # step, as torch CyclicLR's cycle_momentum (FGSM-RS's preset: 0.9 -> 0.8 at the lr peak -> 0.9);
    # only with the cyclic schedule (see _momentum_cycle).
    cycle_momentum: bool | None = None
    momentum_min: float | None = None  # the momentum at the lr peak when it cycles
    nesterov: bool = False  # Nesterov momentum (none of the reproduced papers used it)
    no_wd_norms: bool = False  # no weight decay on normalization layers and biases
    seed: int = 0  # seeds torch, numpy and random at the start (the model is built by the caller)
    device: str | None = None  # None or "auto": CUDA when available, else CPU
    # "bf16" (autocast) or "float32"; None: bf16 on CUDA, float32 on CPU
    precision: str | None = rule(None, Choice(PRECISIONS))
    channels_last: bool | None = None  # None: on for CUDA, off for CPU
    # torch.compile for training (the original module is saved); compiling counts in epoch 1. True, or a
    # mode: "max-autotune", "max-autotune-no-cudagraphs", "reduce-overhead" (CUDA graphs).
    compile: bool | str = False
    augment: bool = True  # random crop (pad 4) and horizontal flip, on the device
    drop_last: bool = False  # drop the last incomplete minibatch of each data epoch
    eval_every: int = rule(0, INT0)  # data epochs between held-out evaluations (and one at the end); 0: never
    eval_n: int = rule(1000, INT1)  # held-out test images for those evaluations (the first eval_n)
    eval_attack: str = "pgd-20"  # the attack of those evaluations
    eval_batch_size: int = rule(256, INT1)  # minibatch of those evaluations
    # The last N training images, kept out of training, are the held-out set of those evaluations and of
    # keep_best; 0: the first eval_n test images (then choosing the best checkpoint peeks at the test set).
    holdout: int = rule(0, INT0, label="holdout (training images kept out)")
    checkpoint_every: int = rule(1, INT1)  # data epochs between checkpoints (and one at the end)
    keep_best: bool = False  # keep checkpoints/best.pt by held-out robust accuracy (Rice et al. 2020)
    # training-time budget; the run stops cleanly once it is spent
    max_seconds: float | None = rule(None, BUDGET_SECONDS)
    deterministic: bool = False  # deterministic kernels (slower on CUDA); CPU runs are deterministic anyway
    # minibatches between progress updates (each one reads back from the device)
    log_every: int = rule(50, INT1)
    # Experiment logs written beside metrics.csv each data epoch: "tensorboard", "wandb" (training/loggers.py)
    log: tuple[str, ...] = rule((), Each(Choice(tuple(LOGGERS))))
    # With extra data (fit's extra=): its share of every minibatch, floor(F x batch_size) images
    # (Wang et al. 2023: 0.7); without extra data it is unused.
    extra_fraction: float = rule(0.7, BELOW_ONE.typed_(), label="extra_fraction (share of extra images)")
    # GiB of device memory the extra images may take there; above it they stay in host memory (or on disk,
    # memory-mapped) and are streamed. None: a quarter of the device's memory (of the host's RAM on the CPU).
    data_budget_gb: float | None = rule(None, NONNEG.typed_().optional_())
    # How the weight average (the defense's ema_decay) is kept, robustode.training.averaging: "robustode"
    # (warm-up from the first step, batch-norm statistics averaged), "wang2023" (their code's: the weights
    # for the first 2.5% of steps, then the warm-up; batch-norm statistics copied), "fixed" (FastAT's).
    ema_style: str = rule("robustode", Choice(EMA_STYLES))
    recipe: str | None = None  # the recipe the settings not given came from (`robustode list recipes`)

    def replace(self, **overrides):
        """A copy with some fields changed, each checked by its rule now (None: the defense's preset, checked
        when resolved): a bad setting fails at the entrance, before any data is loaded. An unknown name, or a
        value its rule refuses, raises ConfigError."""
        declared = {f.name: f for f in fields(self)}
        unknown = sorted(set(overrides) - set(declared))
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(declared))}")
        for name, value in overrides.items():
            check = declared[name].metadata.get("check")
            if check is not None and value is not None:
                overrides[name] = check(value, declared[name].metadata.get("label") or name)
        return replace(self, **overrides)

    def explicit(self) -> dict:
        """The fields set to something other than their default."""
        default = TrainConfig()
        return {f.name: getattr(self, f.name) for f in fields(TrainConfig)
                if getattr(self, f.name) != getattr(default, f.name)}

    def to_dict(self) -> dict:
        """Plain JSON types (milestones as a list), for checkpoints and config.json."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict):
        """The inverse of ``to_dict``; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)

    def resolve(self, defense, world_size: int = 1) -> TrainSettings:
        """Every setting made concrete for ``defense`` and this machine; ConfigError names a bad one."""
        if self.compile and not getattr(defense, "compiles", True):
            raise ConfigError(f"{type(defense).__name__} needs double backprop, which torch.compile does not "
                              "run; train it without compile")
        chosen = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        chosen.update({k: getattr(defense.preset, k) for k in PRESET_KEYS if chosen[k] is None})
        chosen.update(_scaled_milestones(self, defense.preset, chosen))
        chosen.update(_momentum_cycle(self, defense.preset, chosen))
        device = local_device(resolve_device(self.device))  # under torchrun: this rank's own GPU
        replays = int(defense.replays)
        epochs = chosen["epochs"]
        chosen.update(
            device=str(device),
            precision=self.precision or ("bf16" if device.type == "cuda" else "float32"),
            channels_last=device.type == "cuda" if self.channels_last is None else self.channels_last,
            replays=replays, world_size=world_size,
            data_epochs=math.ceil(epochs / replays) if _is_int(epochs) and epochs > 0 else 0)
        return TrainSettings(**chosen)


@dataclass(frozen=True)
class TrainSettings(TrainConfig):
    """The settings a run used: a TrainConfig with every preset filled in and the device and
    precision decided; built only through ``TrainConfig.resolve`` or ``from_dict``, checked on creation."""

    replays: int = 1  # optimizer steps per minibatch (Free-m: m); nominal epochs = data epochs * replays
    data_epochs: int = 1  # passes over the training data: ceil(epochs / replays)
    world_size: int = 1  # data-parallel processes sharing each global minibatch
    # When epochs were changed but not the milestones: the preset's milestones, scaled to the new length
    # (as timm's train.py users expect), and the preset's length they were meant for.
    milestones_scaled_from: tuple[float, ...] | None = None
    preset_epochs: int | None = None

    def __post_init__(self):
        for name in ("milestones", "milestones_scaled_from"):  # lists, when read back from JSON
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check(self)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """bf16 for an autocast run, None for plain float32."""
        return torch.bfloat16 if self.precision == "bf16" else None


def _scaled_milestones(asked: TrainConfig, preset, chosen: dict) -> dict:
    """The preset's multistep milestones stretched to the epochs asked for, when only epochs changed.

    Without this a 2-epoch run of a 105-epoch preset would keep its decays at 75, 90 and 100
    and never anneal.
    """
    epochs = chosen["epochs"]
    if (asked.epochs is None or asked.milestones is not None or chosen["schedule"] != "multistep"
            or preset.schedule != "multistep" or not preset.milestones or not _is_int(epochs)
            or epochs == preset.epochs):
        return {}
    return {"milestones": tuple(m * epochs / preset.epochs for m in preset.milestones),
            "milestones_scaled_from": tuple(preset.milestones), "preset_epochs": preset.epochs}


def _momentum_cycle(asked: TrainConfig, preset, chosen: dict) -> dict:
    """cycle_momentum and momentum_min as the run uses them.

    The preset's cycle (FGSM-RS, N-FGSM) is torch CyclicLR's: it belongs to the cyclic schedule and
    is dropped with any other one (under cosine it would run at 0.8 at full lr, under constant all run
    long). Asked for explicitly with another schedule, it is refused. A momentum asked for below the
    preset's momentum_min clamps momentum_min to it (the cycle goes flat at the momentum asked, e.g. 0
    stays 0) rather than scaling it: no momentum is used that the user did not ask for.
    """
    cyclic = chosen["schedule"] == "cyclic"
    if asked.cycle_momentum and not cyclic:
        raise ConfigError(f"cycle_momentum needs the cyclic schedule, got schedule={chosen['schedule']!r} "
                          "(drop cycle_momentum or use schedule='cyclic')")
    cycle = chosen["cycle_momentum"] if asked.cycle_momentum is not None else preset.cycle_momentum and cyclic
    low = chosen["momentum_min"]
    if asked.momentum_min is None and _is_number(low) and _is_number(chosen["momentum"]):
        low = min(low, chosen["momentum"])
    return {"cycle_momentum": cycle, "momentum_min": low}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(c: TrainSettings) -> None:
    """Every field by its rule (declared beside it, in TrainConfig), then the rules across fields."""
    check_fields(c)
    if c.nesterov and c.momentum == 0:
        raise ConfigError("nesterov needs momentum > 0")
    low = c.momentum_min
    if c.cycle_momentum and not (_is_number(low) and 0 <= low <= c.momentum):
        raise ConfigError(f"momentum_min must lie in [0, momentum={c.momentum:g}] when the momentum cycles, "
                          f"got {c.momentum_min!r} (or set cycle_momentum=False)")
    if any(m <= 0 for m in c.milestones):
        raise ConfigError(f"milestones are nominal epochs > 0, got {list(c.milestones)}")
    if not isinstance(c.compile, bool) and c.compile not in COMPILE_MODES:
        raise ConfigError(f"compile must be True, False or one of {', '.join(COMPILE_MODES)}, got {c.compile!r}")
    if c.keep_best and c.eval_every == 0:
        raise ConfigError("keep_best needs held-out evaluations: set eval_every to 1 or more")
