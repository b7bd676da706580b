"""`robustode eval --robustbench NAME --checkpoint FILE` and `robustode export RECORD --format robustbench`."""

from __future__ import annotations

from pathlib import Path

from .parser import _command


def export_parser(sub) -> None:
    p = _command(sub, "export", "write a record and its weights in another project's format",
                 "Write a record (with AutoAttack) and the weights it evaluates in RobustBench's format:\n"
                 "OUT/model_info/<dataset>/<threat>/<NAME>.json (its model-info fields, accuracies as\n"
                 "two-decimal strings, unreliable: true when a masking flag fired or escalation broke\n"
                 "points) and OUT/models/<dataset>/<threat>/<NAME>.pt (a plain state dict in its key layout).\n\n"
                 "  robustode export runs/x/record.json --format robustbench --out rb --name Me2026_WRN-28-10")
    p.add_argument("record", metavar="RECORD", help="a record.json (its run's checkpoints/last.pt is exported)")
    p.add_argument("--format", required=True, choices=["robustbench"], help="the format (robustbench)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write model_info/ and models/ into")
    p.add_argument("--checkpoint", metavar="PATH", help="the weights (default: RUN/checkpoints/last.pt)")
    p.add_argument("--name", metavar="NAME", help="the entry's name (default: the record's label)")
    p.add_argument("--force", action="store_true", help="replace existing files of that name")
    p.set_defaults(run=cmd_export)


def cmd_export(args) -> int:
    from ..robustbench_api import export_robustbench
    from .commands import console

    checkpoint = args.checkpoint or Path(args.record).parent / "checkpoints" / "last.pt"
    info, weights = export_robustbench(args.record, checkpoint, args.out, name=args.name, force=args.force)
    console.print(f"model info: {info}\nweights:    {weights}", highlight=False)
    return 0


def cmd_eval_robustbench(args) -> int:
    from ..evaluation.state import STATE_DIR
    from ..files import check_output_dir, check_output_file
    from ..robustbench_api import evaluate_robustbench
    from .commands import command_line, show_summary, write_eval_record

    out = (check_output_file(args.out, force=args.force, what="--out", record=True) if args.out
           else Path(args.checkpoint).parent / f"{args.robustbench}.eval-record.json")
    check_output_dir(out.parent, what="the record's folder")
    state = check_output_dir(out.parent / STATE_DIR, what="the evaluation state's folder")  # a rerun continues
    run = evaluate_robustbench(args.robustbench, args.checkpoint, args.dataset or "cifar10", attacks=args.attacks,
                               n=args.n, eps=args.eps, trust_pickle=args.trust_pickle,
                               batch_size=args.eval_batch_size, device=args.device, data_dir=args.data_dir,
                               masking_checks=args.masking_checks, quiet=args.quiet, command=command_line(args),
                               published=args.published, state=state)
    show_summary(run.record, write_eval_record(run, out, args))
    show_published(run.record)
    return 0


def show_published(record) -> None:
    """RobustBench's published figures beside robustode's: the difference, and whether robustode's interval
    contains the published number."""
    from rich.table import Table

    from ..interop.robustbench_published import comparison
    from .commands import console

    published = record.defense.hyperparameters.get("published")
    if not published:
        return
    table = Table(title=f"RobustBench's published figures ({published['source']}) and robustode's")
    for column in ("figure", "published", "robustode", "difference", "in robustode's 95% interval"):
        table.add_column(column)
    for row in comparison(published, record.evaluation):
        mine = "—" if row["robustode"] is None else f"{row['robustode']:.2%} ({row['as']})"
        diff = "—" if row["difference"] is None else f"{100 * row['difference']:+.2f} points"
        inside = "—" if row["inside"] is None else "yes" if row["inside"] else "no"
        table.add_row(row["figure"], f"{row['published']:.2%}", mine, diff, inside)
    console.print(table)
