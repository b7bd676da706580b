"""Argument parsing for the commands around runs: check-model, leaderboard, compare, combine, list, demo, probe."""

from __future__ import annotations

from ..errors import ConfigError
from ..rules import COUNT, Number
from .data_cmd import data
from .listing import KINDS
from .parser import _checked, _command, _data_options, positive_int
from .probe_cmd import probe_parser
from .robustbench_cmd import export_parser


def add_all(sub) -> None:
    check_model(sub)
    leaderboard(sub)
    compare(sub)
    combine(sub)
    listing(sub)
    demo(sub)
    data(sub)
    export_parser(sub)
    probe_parser(sub)


@_checked
def input_shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    if len(parts) != 3:
        raise ConfigError(f"expected C,H,W such as 3,32,32, got {text!r}")
    return tuple(COUNT(p, "each of C,H,W") for p in parts)


CLASSES = Number(2, integer=True, says="be an integer >= 2")  # one logit is no classifier: every prediction is right


@_checked
def class_count(text: str) -> int:
    return CLASSES(text, "the class count")


def output_key(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def check_model(sub) -> None:
    from .commands import cmd_check_model

    p = _command(sub, "check-model", "check a model before training it",
                 "Run a model on two random images in [0, 1] and show what robustode sees: does it\n"
                 "run, are its outputs (N, classes) logits, does it react to [0, 1] pixels, does it\n"
                 "normalize its input, is eval mode deterministic, batch norm, YOPO's layer one\n"
                 "(found and verified), parameters and FLOPs of one forward. Exit status 1 when\n"
                 "a check fails (no defense could train it), 0 otherwise.\n\n"
                 "  robustode check-model --model preact_resnet18\n"
                 "  robustode check-model --module my_models.py:make_model --num-classes 10")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="a registered model (see `robustode list models`)")
    which.add_argument("--module", metavar="FILE.py:FACTORY",
                       help="your own model: FACTORY() from FILE.py or package.module, called without arguments")
    p.add_argument("--num-classes", type=class_count, metavar="K",
                   help="logits expected per image (default: any; a registered model is built with 10)")
    p.add_argument("--input-shape", type=input_shape, metavar="C,H,W",
                   help="image shape (default: the model's input_shape, else 3,32,32)")
    p.add_argument("--output", type=output_key, metavar="KEY",
                   help="index or key of the logits, for a model returning a tuple or dict")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.set_defaults(run=cmd_check_model)


def leaderboard(sub) -> None:
    from .commands import cmd_leaderboard

    p = _command(sub, "leaderboard", "render the leaderboard from a folder of records",
                 "Render a folder of records as Markdown, one self-contained HTML page with\n"
                 "plots, JSON or CSV. A malformed record is an error, never silently left out.\n\n"
                 "  robustode leaderboard --format html --out leaderboard.html")
    p.add_argument("--records", default="leaderboard/records", metavar="DIR",
                   help="folder of record files (default: leaderboard/records)")
    p.add_argument("--format", choices=["md", "html", "json", "csv"], default="md", metavar="FORMAT",
                   help="md (default), html, json or csv")
    p.add_argument("--out", metavar="FILE", help="file to write, outside the records folder (default: print it)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--cost", choices=["seconds", "gpu-seconds", "flops", "passes"], default="seconds",
                   help="the Pareto plot's cost axis: training seconds (default), GPU-seconds (seconds x "
                        "data-parallel processes), counted training FLOPs, or forward+backward passes per image")
    p.set_defaults(run=cmd_leaderboard)


def listing(sub) -> None:
    from .commands import cmd_list

    p = _command(sub, "list", "list models, defenses, attacks, data sets or recipes",
                 "What is available, one line each.\n\n  robustode list models --pattern 'lm_*'")
    p.add_argument("what", nargs="?", choices=list(KINDS), metavar="WHAT",
                   help=f"{', '.join(KINDS[:-1])} or {KINDS[-1]} (default: all)")
    p.add_argument("--pattern", default="*", help="glob over names, e.g. 'lm_*'")
    p.set_defaults(run=cmd_list)


def demo(sub) -> None:
    from .commands import cmd_demo
    from .demo import DEFAULTS

    d = DEFAULTS
    p = _command(sub, "demo", "the quick start: natural training vs YOPO-5-3, then the leaderboard",
                 "Train a small model with natural training and with YOPO-5-3 on a subset of\n"
                 "CIFAR-10 (the JPEG copy when it can be found, else the synthetic set), evaluate\n"
                 "both with PGD-20 and show the leaderboard. A few minutes on a laptop CPU.")
    p.add_argument("--out", default="runs/demo", metavar="DIR",
                   help="where runs and records go (default: runs/demo)")
    _data_options(p, None, "cifar10-jpeg when found, else synthetic")
    p.add_argument("--model", default=d["model"], help=f"the model trained twice (default: {d['model']})")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"],
                   help=f"epochs of each (default: {d['epochs']})")
    p.add_argument("--train-subset", type=positive_int, default=d["train_subset"], metavar="N",
                   help=f"training images (default: {d['train_subset']})")
    p.add_argument("--n", type=positive_int, default=d["n"],
                   help=f"test images evaluated (default: {d['n']})")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.set_defaults(run=cmd_demo)



def compare(sub) -> None:
    from .compare import cmd_compare

    p = _command(sub, "compare", "compare two runs point by point (exact McNemar test)",
                 "Compare two records evaluated on the same test points, point by point: clean,\n"
                 "every attack both ran, and the worst case, each with the points only one of\n"
                 "them gets right and the two-sided p-value of McNemar's exact test on them.\n\n"
                 "  robustode compare runs/a/record.json runs/b/record.json")
    p.add_argument("first", metavar="RECORD_A", help="a record with per-example results (schema >= 2)")
    p.add_argument("second", metavar="RECORD_B", help="another, evaluated on the same points")
    p.set_defaults(run=cmd_compare)


def combine(sub) -> None:
    from .compare import cmd_combine

    p = _command(sub, "combine", "one record from evaluations of one model run at different times",
                 "Combine the records of several evaluations of the same trained model (say PGD-20\n"
                 "today, AutoAttack tomorrow) into one: every attack, and the worst case per point\n"
                 "over all of them.\n\n"
                 "  robustode combine runs/a/record.json runs/a/eval-record.json --out runs/a/all.json")
    p.add_argument("records", nargs="+", metavar="RECORD", help="two or more records of one run")
    p.add_argument("--out", required=True, metavar="FILE", help="the combined record to write")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(run=cmd_combine)
