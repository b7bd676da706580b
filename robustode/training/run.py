"""The typed description of one training run: settings, model, defense, data and provenance.

A ``RunInfo`` is written to config.json and into every checkpoint (as plain JSON
types, so ``torch.load(weights_only=True)`` reads it back) and is what records are
built from. ``RunInfo.from_dict(run.to_dict()) == run``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
from torch import nn

from ..defenses import defenses
from ..errors import CheckpointError, ConfigError, RecordError, UnknownNameError
from ..models import count_parameters
from ..records.migrate import single_step_before_v3
from ..records.parts import ExtraInfo
from ..records.schema import DatasetInfo, Provenance
from ..records.validate import build
from ..utils import provenance
from .config import TRAJECTORY_KEYS, TrainConfig, TrainSettings


@dataclass(frozen=True)
class ModelSetup:
    name: str | None  # registry name when robustode.models.create built it (then a checkpoint rebuilds it)
    kwargs: dict  # create()'s arguments besides num_classes
    class_name: str  # type(model).__qualname__
    num_classes: int
    params: int | None = None  # trainable parameters (None in checkpoints written before it was stored)

    def conflicts(self, new: ModelSetup) -> list[str]:
        """Another model than the saved run's: another class, or the same class at another registered name,
        build or size (lm_resnet20 resumed as lm_resnet32 is one class with other shapes)."""
        mine, theirs = (self.class_name, self.name, self.kwargs), (new.class_name, new.name, new.kwargs)
        sized = None not in (self.params, new.params) and self.params != new.params
        if mine == theirs and not sized:
            return []
        return [f"model {self.name or self.class_name} ({self.params} parameters) -> "
                f"{new.name or new.class_name} ({new.params} parameters)"]

    @classmethod
    def of(cls, model: nn.Module, num_classes: int) -> ModelSetup:
        kwargs = _plain(getattr(model, "robustode_kwargs", {}))
        return cls(getattr(model, "robustode_name", None), kwargs, type(model).__qualname__, num_classes,
                   count_parameters(model))


@dataclass(frozen=True)
class DefenseSetup:
    spec: str  # as given, e.g. "yopo-5-3" or "pgd-10(alpha=2/255)"
    hyperparameters: dict  # every field of the defense, resolved (JSON types)
    passes_per_batch: float  # forward+backward passes over one minibatch per train_step
    replays: int  # optimizer steps per minibatch
    single_step: bool  # one attack step per batch (the class's single_step): records keep it for the report

    @classmethod
    def of(cls, defense) -> DefenseSetup:
        # A duck-typed defense (no Defense subclass) may lack single_step: as Defense's default, it is not.
        return cls(defense.spec, _plain(defense.hyperparameters()), float(defense.passes_per_batch),
                   int(defense.replays), bool(getattr(defense, "single_step", False)))

    @classmethod
    def from_dict(cls, d: dict) -> DefenseSetup:
        """A checkpoint written before robustode stored ``single_step`` gets the answer of its day."""
        return cls(**{"single_step": single_step_before_v3(d["spec"]), **d})


@dataclass(frozen=True)
class RunInfo:
    train: TrainSettings  # what the run used
    requested: TrainConfig  # what was asked for (resume re-resolves it)
    model: ModelSetup
    defense: DefenseSetup
    data: DatasetInfo  # the data trained on (its test split serves the held-out evaluations)
    provenance: Provenance  # versions, device, precision, date of the run's start

    @classmethod
    def describe(cls, settings: TrainSettings, requested: TrainConfig, model: nn.Module, defense,
                 data, extra=None) -> RunInfo:
        device = torch.device(settings.device)
        mixed = None if extra is None else ExtraInfo(**extra.describe(), fraction=settings.extra_fraction)
        return cls(settings, requested, ModelSetup.of(model, data.num_classes), DefenseSetup.of(defense),
                   DatasetInfo(**data.describe(), extra=mixed), Provenance(**provenance(device, settings.precision)))

    def to_dict(self) -> dict:
        """Plain JSON types, under the keys of the run_config dicts that checkpoints saved before RunInfo
        existed carry, so those still read."""
        model = dataclasses.asdict(self.model)
        model["class"] = model.pop("class_name")
        return {"train": self.train.to_dict(), "requested": self.requested.to_dict(), "model": model,
                "defense": dataclasses.asdict(self.defense), "data": dataclasses.asdict(self.data),
                "provenance": dataclasses.asdict(self.provenance)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "run description") -> RunInfo:
        try:
            model = dict(d["model"])
            model["class_name"] = model.pop("class")
            return cls(TrainSettings.from_dict(d["train"]), TrainConfig.from_dict(d["requested"]),
                       ModelSetup(**model), DefenseSetup.from_dict(d["defense"]),
                       build(DatasetInfo, d["data"], source, "data.", lenient=True),  # older ones lack source, extra
                       Provenance(**d["provenance"]))
        except (KeyError, TypeError, AttributeError, RecordError) as err:
            raise CheckpointError(f"{source}: malformed run description ({type(err).__name__}: {err})") from None

    def resume_conflicts(self, new: RunInfo, assumed: dict | None = None) -> list[str]:
        """What ``new`` changes that a resumed run must keep (empty when it may resume).

        ``assumed`` gives the value of each defense setting a run saved by an older robustode
        lacks (the defense's legacy or current default); settings missing from both are not compared.
        """
        changed = [f"{k} {getattr(self.train, k)!r} -> {getattr(new.train, k)!r}" for k in TRAJECTORY_KEYS
                   if getattr(self.train, k) != getattr(new.train, k)]
        if self.data != new.data:
            changed.append(f"data {dataclasses.asdict(self.data)} -> {dataclasses.asdict(new.data)}")
        # A setting the saved run lacks came with a later robustode: it ran as the defense's legacy
        # default says (or its current one). A derived key (YOPO's layer-one description) is in neither.
        saved = {**(assumed or {}), **self.defense.hyperparameters}
        now = new.defense.hyperparameters
        differ = {k: (saved[k], now[k]) for k in saved.keys() & now.keys() if saved[k] != now[k]}
        if normalized(self.defense.spec) != normalized(new.defense.spec):  # a spelling is no change
            changed.append(f"defense {self.defense.spec} -> {new.defense.spec}")
        changed += [f"{k} {a!r} -> {b!r}" for k, (a, b) in differ.items()]
        return changed + self.model.conflicts(new.model)


def normalized(spec: str) -> str:
    """A defense spec in its one spelling, so that a run saved before specs were canonical resumes."""
    try:
        return defenses.canonical(spec)
    except (ConfigError, UnknownNameError):  # a duck-typed defense's own text
        return spec


def _plain(values: dict) -> dict:
    """JSON types only (tuples become lists, other objects their text), as a checkpoint gives them back."""
    return json.loads(json.dumps(values, default=str))
