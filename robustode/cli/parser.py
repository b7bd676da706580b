"""Argument parsing for the ``robustode`` command (one function per subcommand)."""

from __future__ import annotations

import argparse
import re
import sys

from ..data import datasets
from ..defenses import defenses
from ..recipes import recipes
from ..threat import DEFAULT_EPS
from ..training.config import PRECISIONS
from ..training.loggers import LOGGERS
from ..training.schedules import SCHEDULES
from .types import (_checked, attack_list, below_one, budget, count, fraction, gigabytes,  # noqa: F401
                    logger_list, positive_int, positive_number, run_folder, seed_list)  # (re-exported)

EPILOG = "Budgets and step sizes accept fractions: --eps 8/255, --defense 'pgd-10(alpha=2/255)'."


def defense_help() -> str:
    """The defense forms, from the registry (a defense you registered is listed too)."""
    *forms, last = defenses.in_order()
    return (f"{', '.join(forms)} or {last}, optionally with settings in parentheses: 'pgd-10(alpha=2/255)' "
            "(see `robustode list defenses`)")


def dataset_help(default_text: str) -> str:
    names = [name + ("PATH" if name.endswith(":") else "") for name in datasets.names()]
    return f"{', '.join(names[:-1])} or {names[-1]} (default: {default_text})"


# Options that may be given more than once: they add up rather than replace each other.
REPEATABLE = (argparse._SubParsersAction, argparse._AppendAction, argparse._CountAction)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with status 2, an option
    given twice (``--cycle-momentum --no-cycle-momentum``) is refused rather than the last one taken, and
    ``--eps -8/255`` reads as a (refused) negative value rather than as an option."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\d*\.?\d+(/\d*\.?\d+)?$")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        given = {}
        for arg in (sys.argv[1:] if args is None else args):
            if arg == "--":
                break
            action = self._option_action(arg)
            if action is not None and not isinstance(action, REPEATABLE):
                name, before = arg.split("=")[0], given.get(action.dest)
                if before is not None and action.dest != "help":
                    self.error(f"{name} given twice; give it once" if name == before else
                               f"{before} and {name} both set {action.dest}; give one")
                given[action.dest] = name
        return super().parse_known_args(args, namespace)

    def _option_action(self, arg: str):
        """The action an argument sets when it is an option (``--name``, ``--name=value``, an abbreviation)."""
        if not arg.startswith("-") or self._negative_number_matcher.match(arg):
            return None
        name = arg.split("=")[0]
        exact = self._option_string_actions.get(name)
        if exact is not None or not name.startswith("--"):
            return exact
        matches = {a for option, a in self._option_string_actions.items() if option.startswith(name)}
        return matches.pop() if len(matches) == 1 else None


def build_parser() -> Parser:
    from .._version import __version__
    from . import tool_parsers  # it builds on this module's helpers

    parser = Parser(prog="robustode", epilog=EPILOG,
                    formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=32),
                    description="Adversarial training and evaluation through the ODE view of deep networks. "
                                "Start with `robustode demo`; each command has its own --help.")
    parser.add_argument("--version", action="version", version=f"robustode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    _train(sub)
    _eval(sub)
    tool_parsers.add_all(sub)
    return parser


def _command(sub, name: str, summary: str, description: str, epilog: str | None = None) -> Parser:
    return sub.add_parser(name, help=summary, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _data_options(p: Parser, default: str | None, default_text: str) -> None:
    p.add_argument("--dataset", default=default, metavar="NAME", help=dataset_help(default_text))
    p.add_argument("--data-dir", metavar="DIR",
                   help="where data sets live (default: $ROBUSTODE_DATA, else ~/.cache/robustode)")


def _eval_options(p: Parser) -> None:
    p.add_argument("--attacks", type=attack_list, default=["pgd-20"], metavar="LIST",
                   help="comma-separated attacks, e.g. pgd-20,autoattack (default: pgd-20; "
                        "see `robustode list attacks`)")
    p.add_argument("--n", type=positive_int, metavar="N",
                   help="evaluate the first N test images (default: all)")
    p.add_argument("--eval-batch-size", type=positive_int, default=256, metavar="B",
                   help="evaluation minibatch (default: 256)")
    p.add_argument("--no-masking-checks", dest="masking_checks", action="store_false",
                   help="skip the gradient-masking checks (PGD-50 and PGD-20 at 2*eps on up to 256 images)")
    p.add_argument("--records", metavar="DIR", help="also save the record in DIR (e.g. leaderboard/records)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")


def _train(sub) -> None:
    from .commands import cmd_train

    p = _command(sub, "train", "train a model with a defense, then evaluate it",
                 "Train a model with a defense, evaluate it with the shared evaluator, and write\n"
                 "a run directory OUT/NAME: config.json, train.log, metrics.csv, checkpoints/last.pt\n"
                 "and record.json. An existing run directory is never overwritten: continue an\n"
                 "interrupted run with the same command plus --resume.\n\n"
                 "  robustode train --model lm_resnet20 --defense yopo-5-3 --dataset cifar10 --n 1000",
                 EPILOG)
    p.add_argument("--recipe", metavar="NAME",
                   help=f"a published setup in one word: {', '.join(recipes.names())} (see `robustode list "
                        "recipes`); the flags you give win over its values, and the log says where")
    p.add_argument("--model", help="model name (see `robustode list models`; required unless the recipe names one)")
    p.add_argument("--defense", metavar="SPEC", help=defense_help() + "; required unless the recipe names one")
    _data_options(p, "cifar10", "cifar10")
    p.add_argument("--train-subset", type=positive_int, metavar="N",
                   help="train on the first N training images")
    _extra_options(p)
    p.add_argument("--epochs", type=positive_int, help="nominal epochs (default: the defense's paper preset)")
    p.add_argument("--batch-size", type=positive_int, metavar="B",
                   help="minibatch size (default: the preset)")
    p.add_argument("--lr", type=positive_number, help="peak learning rate (default: the preset)")
    p.add_argument("--schedule", choices=list(SCHEDULES),
                   help="learning-rate schedule (default: the preset)")
    p.add_argument("--eps", type=budget,
                   help="budget of the defense and the final evaluation, e.g. 8/255 (default: the "
                        "defense's own; evaluation at 8/255)")
    _modifier_options(p)
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=count, default=0, help="random seed (default: 0)")
    seeds.add_argument("--seeds", type=seed_list, metavar="LIST",
                       help="one run per seed, e.g. 0,1,2 (the leaderboard groups them: mean +- std)")
    p.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on CUDA, float32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    _held_out_options(p)
    p.add_argument("--max-seconds", type=positive_number, metavar="S", help="stop training after S seconds")
    p.add_argument("--log", type=logger_list, metavar="LIST",
                   help=f"experiment logs in the run directory each epoch: {', '.join(LOGGERS)} (W&B offline; "
                        "each an optional extra: pip install 'robustode[tensorboard]')")
    p.add_argument("--out", default="runs", metavar="DIR", help="parent of run directories (default: runs)")
    p.add_argument("--name", type=run_folder, help="run directory name (default: DATASET-MODEL-DEFENSE[-MODIFIERS]-sSEED)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run directory from its last checkpoint (repeat the run's own options)")
    _eval_options(p)
    p.set_defaults(run=cmd_train)


def _held_out_options(p: Parser) -> None:
    p.add_argument("--eval-every", type=count, default=0, metavar="E",
                   help="held-out PGD-20 every E data epochs (default: 0, only the final evaluation)")
    p.add_argument("--eval-n", type=positive_int, default=1000, metavar="N",
                   help="test images for those held-out evaluations (default: 1000)")
    p.add_argument("--holdout", type=count, default=0, metavar="N",
                   help="keep the last N training images out of training for those held-out evaluations and "
                        "--keep-best (default: 0, the first --eval-n test images)")
    p.add_argument("--keep-best", action="store_true",
                   help="keep checkpoints/best.pt, the epoch with the best held-out PGD-20 "
                        "(needs --eval-every)")


def _extra_options(p: Parser) -> None:
    g = p.add_argument_group("extra data (e.g. generated images, Wang et al. 2023)")
    g.add_argument("--extra-data", nargs="+", metavar="PATH",
                   help="extra training images: released .npz parts (image uint8 NxHxWxC, label) or a directory "
                        "from `robustode data convert`")
    g.add_argument("--extra-fraction", type=fraction, metavar="F",
                   help="share of extra images in every minibatch, floor(F x batch) (default: 0.7, or the recipe's)")
    g.add_argument("--data-budget", dest="data_budget_gb", type=gigabytes, metavar="GIB",
                   help="device memory the extra images may take; above it they are streamed from host memory "
                        "(default: a quarter of the device's memory)")


def _modifier_options(p: Parser) -> None:
    g = p.add_argument_group("modifiers (any defense; each sets the defense field named, e.g. pgd-10(ema_decay=...))")
    g.add_argument("--ema", type=below_one, metavar="DECAY",
                   help="evaluate and save an exponential moving average of the weights (ema_decay), e.g. 0.999")
    g.add_argument("--label-smoothing", type=below_one, metavar="F",
                   help="label smoothing of the training loss (label_smoothing), e.g. 0.1")
    g.add_argument("--awp", type=positive_number, metavar="GAMMA",
                   help="adversarial weight perturbation of relative size GAMMA (awp_gamma; pgd-K, trades-K, "
                        "mart-K), e.g. 0.01")
    g.add_argument("--awp-warmup", type=count, metavar="E",
                   help="data epochs before AWP starts (awp_warmup; needs --awp)")
    g.add_argument("--cycle-momentum", action=argparse.BooleanOptionalAction, default=None,
                   help="momentum moving against the lr (0.9 -> 0.8 at its peak), per step (default: the preset; "
                        "on for fgsm-rs and n-fgsm, only under the cyclic schedule)")


def _eval(sub) -> None:
    from .commands import cmd_eval

    p = _command(sub, "eval", "evaluate a saved checkpoint and write a record",
                 "Evaluate a checkpoint written by `robustode train` on the data set it was\n"
                 "trained on (or --dataset), print the summary and write a record (default:\n"
                 "eval-record.json in the run directory). With --robustbench NAME the\n"
                 "checkpoint is a RobustBench entry's .pt (docs/robustbench.md); with\n"
                 "--corruptions cifar10c:PATH, the common corruptions instead of attacks.\n\n"
                 "  robustode eval --checkpoint runs/NAME/checkpoints/last.pt \\\n"
                 "                 --attacks pgd-20,autoattack --n 1000",
                 EPILOG)
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="e.g. runs/NAME/checkpoints/last.pt")
    p.add_argument("--robustbench", metavar="NAME",
                   help="the checkpoint is RobustBench entry NAME's .pt (e.g. Wang2023Better_WRN-28-10; "
                        "docs/robustbench.md lists the entries robustode builds)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="with --robustbench: load a file holding pickled objects (this runs code from it)")
    p.add_argument("--published", metavar="PATH",
                   help="with --robustbench: the entry's model_info JSON (or a model_info folder); its clean, "
                        "AutoAttack and external figures are shown and recorded beside robustode's")
    p.add_argument("--corruptions", metavar="DATA",
                   help="the corruptions threat model instead of attacks: accuracy per corruption and severity of "
                        "DATA (cifar10c:PATH or cifar100c:PATH, the released .npy layout) and the mean; --dataset "
                        "is the clean set (default: the one corrupted)")
    _data_options(p, None, "the one the model was trained on")
    p.add_argument("--eps", type=budget, default=DEFAULT_EPS, help="attack budget (default: 8/255)")
    p.add_argument("--out", metavar="FILE",
                   help="record file to write (default: RUN/eval-record.json, or eval-record__N.json when taken)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file (or RUN/eval-record.json)")
    _eval_options(p)
    p.set_defaults(run=cmd_eval)
