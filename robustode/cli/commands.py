"""What each ``robustode`` subcommand does; parsing lives in parser.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)  # piped output keeps each line whole (a path is never broken mid-name)


def command_line(args) -> str:
    return " ".join(shlex.quote(a) for a in ["robustode", *args.argv])


# Modifier flags of `robustode train`: (flag attribute, defense field, tag in the run name).
MODIFIER_FLAGS = (("ema", "ema_decay", "ema"), ("label_smoothing", "label_smoothing", "ls"),
                  ("awp", "awp_gamma", "awp"), ("awp_warmup", "awp_warmup", "awpwarm"))


def _modifiers(args) -> list[tuple[str, str, object]]:
    return [(field, tag, getattr(args, flag)) for flag, field, tag in MODIFIER_FLAGS
            if getattr(args, flag, None) is not None]


def run_name(args, seed: int | None = None) -> str:
    """The run directory's name; with several --seeds each gets its own (``NAME-sSEED``)."""
    from ..defenses import defenses

    tags = "".join(f"-{tag}{value:g}" for _, tag, value in _modifiers(args))
    cycle = getattr(args, "cycle_momentum", None)  # a training setting, but it changes the run as much
    tags += "" if cycle is None else "-cm" if cycle else "-nocm"
    seed = args.seed if seed is None else seed
    defense = defenses.canonical(args.defense)  # one name per meaning: "pgd-1()" and "pgd-1" are one run
    method = defense if getattr(args, "recipe", None) is None else f"{defense.split('(')[0]}-{args.recipe}"
    name = args.name or f"{args.dataset}-{args.model}-{method}{tags}-s{seed}"
    if args.name and getattr(args, "seeds", None):
        name = f"{args.name}-s{seed}"
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("_")


def defense_spec(args) -> str:
    """--defense with the modifier flags folded in: ``pgd-10 --ema 0.999`` -> ``pgd-10(ema_decay=0.999)``.

    The spec then names the modifiers everywhere it appears: record, leaderboard, checkpoint.
    """
    from ..errors import ConfigError
    from ..specs import parse_spec

    added = _modifiers(args)
    if not added:
        return args.defense
    _, settings = parse_spec(args.defense, "defense")
    if getattr(args, "awp_warmup", None) is not None and args.awp is None and "awp_gamma" not in settings:
        raise ConfigError("--awp-warmup needs --awp GAMMA (or awp_gamma in --defense): without AWP it does nothing")
    twice = [field for field, _, _ in added if field in settings]
    if twice:
        raise ConfigError(f"--defense {args.defense!r} already sets {', '.join(twice)}; drop it there or drop "
                          "the flag")
    extra = ", ".join(f"{field}={value}" for field, _, value in added)
    spec = args.defense.strip()
    return f"{spec[:-1]}, {extra})" if spec.endswith(")") else f"{spec}({extra})"


def _recipe_names(args) -> None:
    """--model and --defense from --recipe where they are not given (the recipe's settings follow in the API)."""
    from ..errors import ConfigError
    from ..recipes import recipes

    recipe = None if args.recipe is None else recipes.get(args.recipe)
    args.model = args.model or (recipe and recipe.model)
    args.defense = args.defense or (recipe and recipe.defense)
    for flag in ("model", "defense"):
        if getattr(args, flag) is None:
            where = f"recipe {args.recipe} names no {flag}" if recipe else "no --recipe names one"
            raise ConfigError(f"--{flag} is required: {where}")


def cmd_train(args) -> int:
    """One run, or one per seed of --seeds (every run directory checked before the first trains)."""
    from ..files import check_output_dir
    from ..training.runlog import check_run_dir
    from ..utils import resolve_device

    _recipe_names(args)
    spec = defense_spec(args)  # a bad modifier combination fails before anything is checked or loaded
    seeds = args.seeds or [args.seed]
    for seed in seeds:
        check_run_dir(Path(args.out) / run_name(args, seed), args.resume)  # before any data is loaded
    check_output_dir(args.out, what="--out")
    if args.records:
        check_output_dir(args.records, what="--records")
    resolve_device(args.device)
    for seed in seeds:
        _train_one(args, spec, seed)
    return 0


def _train_one(args, spec: str, seed: int) -> None:
    from ..api import train
    from ..errors import TrainingError

    run_dir = Path(args.out) / run_name(args, seed)
    _, record = train(
        args.model, spec, args.dataset, eps=args.eps, attacks=args.attacks, n=args.n,
        eval_batch_size=args.eval_batch_size, masking_checks=args.masking_checks, data_dir=args.data_dir,
        train_subset=args.train_subset, out_dir=run_dir, resume=args.resume, records_dir=args.records,
        quiet=args.quiet, command=command_line(args), config=train_config(args, seed), extra_data=args.extra_data,
        recipe=args.recipe)
    show_summary(record, run_dir)
    if record.training.stop_kind == "diverged":
        raise TrainingError(f"{record.training.stopped_early}; the record in {run_dir} evaluates those weights")


# `robustode train`'s flags that are TrainConfig fields of the same name; unset ones (None) keep the preset.
CONFIG_FLAGS = ("epochs", "batch_size", "lr", "schedule", "precision", "max_seconds", "cycle_momentum", "device",
                "compile", "eval_every", "eval_n", "keep_best", "holdout", "extra_fraction", "data_budget_gb", "log")


def train_config(args, seed: int):
    """The TrainConfig of one run of `robustode train`, built here from its flags."""
    from ..training import TrainConfig

    values = {flag: getattr(args, flag) for flag in CONFIG_FLAGS}
    return TrainConfig(seed=seed, **{k: v for k, v in values.items() if v is not None})


def cmd_eval(args) -> int:
    from ..api import evaluate_checkpoint
    from ..errors import ConfigError
    from ..evaluation.state import STATE_DIR
    from ..files import check_output_dir, check_output_file
    from .corruptions_cmd import cmd_eval_corruptions
    from .robustbench_cmd import cmd_eval_robustbench

    if args.published and not args.robustbench:
        raise ConfigError("--published compares with a RobustBench entry's figures: it needs --robustbench NAME")
    if args.corruptions:
        return cmd_eval_corruptions(args)
    if args.robustbench:
        return cmd_eval_robustbench(args)
    if args.trust_pickle:
        raise ConfigError("--trust-pickle applies to --robustbench checkpoints; robustode's own never hold pickles")
    default = run_directory(Path(args.checkpoint)) / "eval-record.json"
    out = check_output_file(args.out, force=args.force, what="--out", record=True) if args.out else default
    check_output_dir(out.parent, what="the record's folder" + ("" if args.out else " (or give --out FILE)"))
    if args.records:
        check_output_dir(args.records, what="--records")
    state = check_output_dir(out.parent / STATE_DIR, what="the evaluation state's folder")  # beside the output
    run = evaluate_checkpoint(args.checkpoint, args.dataset, attacks=args.attacks, n=args.n, eps=args.eps,
                              batch_size=args.eval_batch_size, device=args.device, data_dir=args.data_dir,
                              masking_checks=args.masking_checks, quiet=args.quiet, state=state,
                              command=command_line(args))
    show_summary(run.record, write_eval_record(run, out, args))
    return 0


def write_eval_record(run, out: Path, args) -> Path:
    """An evaluation's record (and its per-point file) at ``out``, and a copy in --records. An explicit --out
    is replaced only with --force (checked before the work); the default name never is: a second evaluation
    of one checkpoint gets eval-record__2.json."""
    from ..records import save, save_in, save_new

    if args.out or args.force:
        out = save(run.record, out, overwrite=args.force, points=run.points)
    else:
        out = save_new(run.record, out, points=run.points)
    if args.records:
        save_in(run.record, args.records, points=run.points)
    return out


def cmd_check_model(args) -> int:
    from rich.markup import escape  # the details quote the user's model and errors: "[x]" is text, not markup

    from ..checks import check_model
    from ..utils import resolve_device
    from .factory import build_model

    device = resolve_device(args.device)
    model = build_model(args.model, args.module, args.num_classes).to(device)
    report = check_model(model, args.input_shape, args.num_classes, args.output)
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}
    table = Table(title=escape(f"{args.model or args.module}: {report.model} on "
                               f"{'x'.join(map(str, report.input_shape))} images ({device})"))
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(escape(row.name), f"[{colour[row.status]}]{row.status}[/]", escape(row.detail))
    console.print(table)
    failed = len(report.failures)
    console.print(f"[red]{failed} check{'s' * (failed > 1)} failed[/]" if failed else "[green]no check failed[/]")
    return 1 if failed else 0


def run_directory(checkpoint: Path) -> Path:
    """RUN for RUN/checkpoints/last.pt; the checkpoint's own folder otherwise."""
    folder = checkpoint.resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


def cmd_leaderboard(args) -> int:
    from ..report import write_report

    text = write_report(args.records, args.format, args.out, cost=args.cost, force=args.force)
    if args.out:
        console.print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def cmd_list(args) -> int:
    from .listing import print_listing

    print_listing(args.what, args.pattern)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args, console)


def show_summary(record, where: Path) -> None:
    """The record as ``print(record)`` shows it; under torchrun only rank 0 prints it."""
    from ..dist import context

    if context().rank == 0:
        console.print(str(record), highlight=False, markup=False)
        console.print(f"results in {where}", highlight=False)
