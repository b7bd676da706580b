"""Attacks: functions of (model, x, y, settings) returning x_adv, and their registry.

    from robustode.attacks import pgd, fgsm, attacks, build
    x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=20)
    attack = build("pgd-20")            # or "autoattack", "torchattacks:CW(c=1)"
    x_adv = attack(model, x, y)
"""

# Importing each attack module registers its entries.
from .adapter import TorchAttack
from .autoattack import AutoAttack, AutoAttackConfig
from .eot import EOT_DRAWS, correct_on_draws
from .fgsm import fgsm
from .pgd import pgd, project, run_pgd
from .spec import Attack, FunctionAttack, Outcome, attacks, build, build_all, parse_spec, split_specs

__all__ = ["EOT_DRAWS", "Attack", "AutoAttack", "AutoAttackConfig", "FunctionAttack", "Outcome", "TorchAttack",
           "attacks", "build", "build_all", "correct_on_draws", "fgsm", "parse_spec", "pgd", "project", "run_pgd",
           "split_specs"]
