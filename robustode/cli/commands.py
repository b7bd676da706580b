"""What each ``robustode`` subcommand does; parsing lives in parser.py."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError, DataError

console = Console()


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["robustode"] + sys.argv[1:])


def run_name(args) -> str:
    dataset = args.dataset.replace(":", "_").replace("/", "_").strip("_")
    return args.name or f"{dataset}-{args.model}-{args.defense}-s{args.seed}"


def cmd_train(args) -> int:
    from ..api import train

    run_dir = Path(args.out) / run_name(args)
    if run_dir.exists() and not args.resume:
        raise ConfigError(f"run directory {run_dir} exists; pass --resume to continue it, or choose "
                          "another --name/--out")
    settings = {k: v for k, v in {
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "schedule": args.schedule,
        "precision": args.precision, "max_seconds": args.max_seconds}.items() if v is not None}
    defense_options = {} if args.eps is None else {"eps": args.eps}
    model, record = train(
        args.model, args.defense, args.dataset, attacks=args.attacks, n=args.n,
        eval_batch_size=args.eval_batch_size, data_dir=args.data_dir, train_subset=args.train_subset,
        defense_options=defense_options, out_dir=run_dir, resume=args.resume, records_dir=args.records,
        quiet=args.quiet, command=command_line(), seed=args.seed, device=args.device, compile=args.compile,
        eval_every=args.eval_every, eval_n=args.eval_n, keep_best=args.keep_best, **settings)
    show_summary(record, run_dir)
    return 0


def cmd_eval(args) -> int:
    from ..api import load_data, make_run_record
    from ..evaluator import evaluate
    from ..records import save, save_in
    from ..training import load_checkpoint, load_model_from_checkpoint
    from ..utils import resolve_device

    device = resolve_device(args.device)
    state = load_checkpoint(args.checkpoint)
    model = load_model_from_checkpoint(args.checkpoint, device=device)
    run = state["config"]
    name = args.dataset or run["data"]["name"]
    data = load_data(name, args.data_dir)
    if data.num_classes != run["model"]["num_classes"]:
        raise DataError(f"{name} has {data.num_classes} classes but the model was trained for "
                        f"{run['model']['num_classes']}")
    result = evaluate(model, data, attacks=tuple(args.attacks), n=args.n, batch_size=args.eval_batch_size,
                      device=device, eps=args.eps, quiet=args.quiet)
    trained = {"train_seconds": state["seconds"], "data_epochs": state["epoch"],
               "images_per_second": _mean_rate(state["history"]),
               "passes_per_image": run["defense"]["passes_per_batch"] * state["epoch"],
               "stopped_reason": None}
    run = {**run, "data": data.describe()}
    record = make_run_record(run, trained, result, model, command=command_line())
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent.parent / "eval-record.json"
    save(record, out, overwrite=args.out is None)
    if args.records:
        save_in(record, args.records)
    show_summary(record, out.parent)
    return 0


def _mean_rate(history: list[dict]) -> float:
    seconds = sum(row.get("seconds", 0.0) for row in history)
    images = sum(row.get("images", 0) for row in history)
    return images / seconds if seconds > 0 else 0.0


def cmd_leaderboard(args) -> int:
    from ..report import write_report

    text = write_report(args.records, args.format, args.out)
    if args.out:
        console.print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def cmd_list(args) -> int:
    from .listing import print_listing

    print_listing(console, args.what, args.pattern)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args, console)


def show_summary(record, where: Path) -> None:
    ev, tr = record.evaluation, record.training
    table = Table(title=f"{record.model.name} / {record.defense.spec} on {record.dataset.name} "
                        f"({record.dataset.kind})")
    for column in ("clean", "PGD-20", *(["AutoAttack"] if ev.autoattack_acc is not None else []),
                   "train time", "epochs", "n", "device"):
        table.add_column(column)
    row = [f"{100 * ev.clean_acc:.2f}%", "-" if ev.pgd20_acc is None else f"{100 * ev.pgd20_acc:.2f}%"]
    if ev.autoattack_acc is not None:
        row.append(f"{100 * ev.autoattack_acc:.2f}%")
    row += [f"{tr.seconds:.1f} s", str(tr.epochs), str(ev.n), record.provenance.device]
    table.add_row(*row)
    console.print(table)
    fired = ev.flags.get("fired") if isinstance(ev.flags, dict) else None
    if fired:
        console.print(f"[yellow]gradient-masking flags fired: {', '.join(fired)}[/yellow]")
    if tr.stopped_early:
        console.print(f"[yellow]training stopped early: {tr.stopped_early}[/yellow]")
    console.print(f"results in {where}")
