"""Argument parsing for the ``robustode`` command (one function per subcommand)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..utils import parse_fraction

EPILOG = "Eps and step sizes accept fractions: --eps 8/255. Docs: README.md"


def fraction(text: str) -> float:
    try:
        return parse_fraction(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def attack_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of attacks, e.g. pgd-20,autoattack")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustode", epilog=EPILOG,
        description="Adversarial training and evaluation through the ODE view of deep networks.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"robustode {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _train(sub)
    _eval(sub)
    _leaderboard(sub)
    _list(sub)
    _demo(sub)
    return parser


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="cifar10",
                   help="cifar10, cifar100, svhn, cifar10-jpeg, imagefolder:PATH or synthetic (default: cifar10)")
    p.add_argument("--data-dir", help="where data sets live (default: $ROBUSTODE_DATA, else ~/.cache/robustode)")


def _eval_options(p: argparse.ArgumentParser, n_help: str) -> None:
    p.add_argument("--attacks", type=attack_list, default=["pgd-20"],
                   help="comma-separated attacks for the final evaluation (default: pgd-20; e.g. "
                        "pgd-20,autoattack; see `robustode list attacks`)")
    p.add_argument("--n", type=positive_int, help=n_help)
    p.add_argument("--eval-batch-size", type=positive_int, default=256, help="evaluation minibatch (default: 256)")
    p.add_argument("--records", help="also save the record in this folder (e.g. leaderboard/records)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _train(sub) -> None:
    from .commands import cmd_train

    p = sub.add_parser("train", help="train a model with a defense, then evaluate it", epilog=EPILOG,
                       description="Train a model with a defense, evaluate it with the shared evaluator, and "
                                   "write a run directory (config, log, metrics.csv, checkpoints, record.json).")
    p.add_argument("--model", required=True, help="model name (see `robustode list models`)")
    p.add_argument("--defense", required=True,
                   help="natural, pgd-K, free-M, yopo-M-N, fgsm-rs or trades-K (see `robustode list defenses`)")
    _data_options(p)
    p.add_argument("--train-subset", type=positive_int, help="train on the first N training images only")
    p.add_argument("--epochs", type=positive_int, help="nominal epochs (default: the defense's paper preset)")
    p.add_argument("--batch-size", type=positive_int, help="minibatch size (default: the preset)")
    p.add_argument("--lr", type=fraction, help="peak learning rate (default: the preset)")
    p.add_argument("--schedule", choices=["multistep", "cyclic", "cosine", "constant"],
                   help="learning-rate schedule (default: the preset)")
    p.add_argument("--eps", type=fraction, help="training perturbation budget, e.g. 8/255 (default: the defense's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", choices=["bf16", "float32"], help="default: bf16 on CUDA, float32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    p.add_argument("--eval-every", type=int, default=0, metavar="EPOCHS",
                   help="held-out PGD-20 evaluation every EPOCHS data epochs (default: 0, only at the end)")
    p.add_argument("--eval-n", type=positive_int, default=1000, help="held-out images for those (default: 1000)")
    p.add_argument("--keep-best", action="store_true", help="keep the checkpoint with the best held-out PGD-20")
    p.add_argument("--max-seconds", type=float, help="stop training after this much training time")
    p.add_argument("--out", default="runs", help="parent folder of run directories (default: runs/)")
    p.add_argument("--name", help="run directory name (default: DATASET-MODEL-DEFENSE-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    _eval_options(p, "evaluate on the first N test images (default: all)")
    p.set_defaults(run=cmd_train)


def _eval(sub) -> None:
    from .commands import cmd_eval

    p = sub.add_parser("eval", help="evaluate a saved checkpoint and write a record", epilog=EPILOG,
                       description="Evaluate a checkpoint written by `robustode train` on its data set "
                                   "(or --dataset) and write a record beside it.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (runs/NAME/checkpoints/last.pt)")
    p.add_argument("--dataset", help="data set to evaluate on (default: the one the model was trained on)")
    p.add_argument("--data-dir", help="where data sets live")
    p.add_argument("--eps", type=fraction, default=8 / 255, help="attack budget (default: 8/255)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--out", help="record file to write (default: eval-record.json beside the run)")
    _eval_options(p, "evaluate on the first N test images (default: all)")
    p.set_defaults(run=cmd_eval)


def _leaderboard(sub) -> None:
    from .commands import cmd_leaderboard

    p = sub.add_parser("leaderboard", help="render the leaderboard from a folder of records",
                       description="Render records as Markdown (the seed's table shape), one self-contained "
                                   "HTML page with plots, JSON or CSV.")
    p.add_argument("--records", default="leaderboard/records", help="folder of record files")
    p.add_argument("--format", choices=["md", "html", "json", "csv"], default="md", help="default: md")
    p.add_argument("--out", help="file to write (default: print to the terminal)")
    p.set_defaults(run=cmd_leaderboard)


def _list(sub) -> None:
    from .commands import cmd_list

    p = sub.add_parser("list", help="list models, defenses, attacks or data sets")
    p.add_argument("what", nargs="?", choices=["models", "defenses", "attacks", "datasets"],
                   help="default: all four")
    p.add_argument("--pattern", default="*", help="glob over names, e.g. '*resnet56*'")
    p.set_defaults(run=cmd_list)


def _demo(sub) -> None:
    from .commands import cmd_demo

    p = sub.add_parser("demo", help="the quick start: natural vs yopo-5-3 on a small subset, then the leaderboard",
                       description="Train a small model with natural training and with YOPO-5-3 on a small subset "
                                   "(the CIFAR-10 JPEG copy when it can be found, else the synthetic set), "
                                   "evaluate both with PGD-20 and show the leaderboard. A few minutes on a CPU.")
    p.add_argument("--out", default="runs/demo", help="where the demo's runs and records go")
    p.add_argument("--dataset", help="data set (default: cifar10-jpeg when found, else synthetic)")
    p.add_argument("--data-dir", help="where data sets live")
    p.add_argument("--model", default="lm_resnet20", help="model (default: lm_resnet20)")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs (default: 5)")
    p.add_argument("--train-subset", type=positive_int, default=2000, help="training images (default: 2000)")
    p.add_argument("--n", type=positive_int, default=500, help="test images evaluated (default: 500)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.set_defaults(run=cmd_demo)
