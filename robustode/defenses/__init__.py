"""Defenses: how one minibatch is trained, built from a spec string.

    from robustode.defenses import create_defense, defenses
    defense = create_defense("yopo-5-3")        # or natural, pgd-10, free-8, fgsm-rs, trades-10, mart-10,
                                                # n-fgsm, grad-align; any with modifiers: "pgd-10(ema_decay=0.999)"
    defense.preset                              # the paper's optimizer and schedule
    defenses.names()                            # registered spec forms

A defense is a dataclass of the paper's hyperparameters with one
``train_step(model, x, y, optimizers, on_step)``; the shared loop in
robustode.training owns everything else. Register your own with
``@register_defense("name")`` (or ``pattern=`` for a family) on a Defense
subclass or a factory returning one.
"""

from __future__ import annotations

from ..errors import UnknownSpecError
from ..registry import Registry
from .base import Defense, EpochStop, Preset, StepOutput
from .fgsm_rs import FGSMRS
from .free import Free
from .gradalign import GradAlign
from .mart import MART
from .natural import Natural
from .nfgsm import NFGSM
from .pgd import PGDTraining
from .trades import TRADES
from .yopo import YOPO

def _valid_forms() -> str:
    forms = ", ".join(defenses.in_order())  # the built-in forms, then any you registered
    return f"valid forms: {forms} (K, M, N positive integers, e.g. pgd-10, free-8, yopo-5-3, trades-10, mart-10)"


defenses = Registry("defense", hint=_valid_forms)
register_defense = defenses.register

defenses.add("natural", Natural)
defenses.add("pgd-K", PGDTraining, pattern=r"pgd-(?P<steps>\d+)")
defenses.add("free-M", Free, pattern=r"free-(?P<m>\d+)")
defenses.add("yopo-M-N", YOPO, pattern=r"yopo-(?P<m>\d+)-(?P<n>\d+)")
defenses.add("fgsm-rs", FGSMRS)
defenses.add("trades-K", TRADES, pattern=r"trades-(?P<steps>\d+)")
defenses.add("mart-K", MART, pattern=r"mart-(?P<steps>\d+)")
defenses.add("n-fgsm", NFGSM)
defenses.add("grad-align", GradAlign)

DefenseSpecError = UnknownSpecError  # a spec of no registered form: an unknown name and a bad setting at once


def create_defense(spec: str, **overrides) -> Defense:
    """Build the defense ``spec``: "pgd-10", "yopo-5-3", "pgd-10(alpha=2/255)"; keyword overrides set fields.

    The spec grammar is the registry's (robustode.specs.parse_spec), so the same
    string works from Python, the CLI and a record. Raises DefenseSpecError for a
    spec of no known form and ConfigError for out-of-range values (``yopo-0-3``),
    unknown fields or a field set twice; every message lists the valid forms. ``defense.spec`` is the
    canonical spelling (``registry.Registry.canonical``): "pgd-10(alpha=2/255)" is "pgd-10".
    """
    defense = defenses.create(spec, **overrides)
    defense.spec = defenses.canonical(spec)  # one spelling per meaning: names, records and tables use it
    return defense



__all__ = [
    "FGSMRS",
    "MART",
    "NFGSM",
    "TRADES",
    "YOPO",
    "Defense",
    "DefenseSpecError",
    "EpochStop",
    "Free",
    "GradAlign",
    "Natural",
    "PGDTraining",
    "Preset",
    "StepOutput",
    "create_defense",
    "defenses",
    "register_defense",
]
