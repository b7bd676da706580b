"""Any torchattacks attack by name: ``"torchattacks:CW(c=1, steps=50)"``; and Square."""

from __future__ import annotations

import inspect

import torchattacks
from torchattacks.attack import Attack as Base

from ..errors import ConfigError, UnknownNameError
from ..rules import BUDGET
from ..threat import DEFAULT_EPS
from .guards import frozen_parameters, preserved_mode, preserved_rng
from .spec import Attack, attacks

_WRAPPERS = ("MultiAttack", "LGV")  # they wrap other attacks or need training data, not (model, x, y)
_NOTES = {"AutoAttack": "torchattacks' AutoAttack runs its components with 10 iterations: "
                        "weaker than the standard AutoAttack ('autoattack'); never report it as AA"}


def torchattacks_class(name: str):
    """The torchattacks attack class called ``name`` (any case: "CW", "cw")."""

    classes = {n: getattr(torchattacks, n) for n in torchattacks.__all__ if n not in _WRAPPERS}
    known = {n.lower(): n for n, c in classes.items() if inspect.isclass(c) and issubclass(c, Base)}
    if name.lower() not in known:
        raise UnknownNameError(f"torchattacks has no attack {name!r} (known: {', '.join(sorted(known.values()))})")
    return getattr(torchattacks, known[name.lower()])


class TorchAttack(Attack):
    r"""Adapter running a torchattacks attack as a robustode attack.

    Threat model and arguments: those of the torchattacks class (see its docstring);
    ``eps`` is passed on when the class takes one. Input range [0, 1]: robustode
    models normalize inside, so torchattacks' own normalization stays off.

    torchattacks switches the model to eval mode, reseeds the global RNG and may call
    ``.backward()``; here every submodule's mode, the caller's RNG state and every
    parameter's ``.grad`` are restored or kept as they were.

    Examples::
        >>> cw = attacks.get("torchattacks:CW", c=1, steps=50)
        >>> x_adv = cw(model, x, y)
    """

    def __init__(self, class_name: str, eps=DEFAULT_EPS, blackbox: bool = False, **kwargs):
        self.cls = torchattacks_class(class_name)
        params = inspect.signature(self.cls.__init__).parameters
        unknown = sorted(set(kwargs) - set(params) - {"self"})
        if unknown or "model" in kwargs:
            accepted = ", ".join(p for p in params if p not in ("self", "model"))
            raise ConfigError(f"torchattacks.{self.cls.__name__} takes no setting {', '.join(unknown or ['model'])} "
                              f"(it takes: {accepted})")
        if "eps" in params:
            kwargs["eps"] = BUDGET(kwargs.get("eps", eps), "eps")
        for key, value in kwargs.items():
            _check_type(self.cls.__name__, key, value, params[key].default)
        self.kwargs = kwargs
        self.blackbox = blackbox
        name = self.cls.__name__
        settings = {"attack": f"torchattacks.{name}", **kwargs}
        if name in _NOTES:
            settings["note"] = _NOTES[name]
        super().__init__(f"torchattacks:{name}", settings)

    def __call__(self, model, x, y):
        with frozen_parameters(model), preserved_mode(model), preserved_rng():
            attack = self.cls(model, **self.kwargs)
            attack.set_device(x.device)
            x_adv = attack(x.detach(), y)
        return x_adv.detach()


def _check_type(cls: str, key: str, value, default) -> None:
    """A setting must have its default's kind (torchattacks checks none and fails mid-attack)."""
    if isinstance(default, bool):
        kind, ok = "true or false", isinstance(value, bool)
    elif isinstance(default, (int, float)):
        kind, ok = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        kind, ok = "a string", isinstance(value, str)
    else:
        return
    if not ok:
        raise ConfigError(f"torchattacks.{cls}'s {key} must be {kind} (its default is {default!r}), got {value!r}")


@attacks.register("torchattacks:")
def torchattacks_attack(class_name: str, eps=DEFAULT_EPS, **kwargs):
    """Any torchattacks attack class, e.g. torchattacks:CW(c=1, steps=50)."""
    return TorchAttack(class_name, eps=eps, **kwargs)


@attacks.register("square")
def square(eps=DEFAULT_EPS, norm="Linf", n_queries=5000, n_restarts=1, p_init=0.8, seed=0, resc_schedule=False):
    """Square Attack (black-box, score-based; 5,000 queries, p_init 0.8, seed 0, as in standard AutoAttack)."""
    return TorchAttack("Square", eps=eps, blackbox=True, norm=_torchattacks_norm(norm), n_queries=n_queries,
                       n_restarts=n_restarts, p_init=p_init, seed=seed, resc_schedule=resc_schedule)


def _torchattacks_norm(norm: str) -> str:
    spelled = {"linf": "Linf", "l2": "L2"}.get(str(norm).lower())
    if spelled is None:
        raise ConfigError(f"norm must be linf or l2, got {norm!r}")
    return spelled
