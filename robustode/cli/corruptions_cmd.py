"""`robustode eval --corruptions cifar10c:PATH`: a checkpoint on the common corruptions, as a record."""

from __future__ import annotations

from pathlib import Path


def cmd_eval_corruptions(args) -> int:
    from ..corruptions_api import evaluate_checkpoint_corruptions
    from ..files import check_output_dir, check_output_file
    from .commands import command_line, run_directory, write_eval_record
    from .robustbench_cmd import show_published

    default = (Path(args.checkpoint).parent / f"{args.robustbench}.corruptions-record.json" if args.robustbench
               else run_directory(Path(args.checkpoint)) / "corruptions-record.json")
    out = check_output_file(args.out, force=args.force, what="--out", record=True) if args.out else default
    check_output_dir(out.parent, what="the record's folder")
    run = evaluate_checkpoint_corruptions(args.checkpoint, args.corruptions, args.dataset,
                                          robustbench=args.robustbench, trust_pickle=args.trust_pickle, n=args.n,
                                          batch_size=args.eval_batch_size, device=args.device,
                                          data_dir=args.data_dir, quiet=args.quiet, command=command_line(args),
                                          published=args.published)
    show_corruption_summary(run.record, write_eval_record(run, out, args))
    show_published(run.record)
    return 0


def show_corruption_summary(record, where: Path) -> None:
    """Accuracy per corruption (rows) and severity (columns), the means, and the clean accuracy."""
    from rich.table import Table

    from ..threat import CORRUPTIONS, corruption_grid
    from .commands import console

    ev = record.evaluation
    grid = corruption_grid(ev.robust)
    table = Table(title=f"{record.model.name} / {record.defense.spec} on {record.dataset.name}: clean "
                        f"{ev.clean_acc:.2%}, corruptions {ev.robust['corruptions']:.2%} "
                        f"[{ev.intervals['corruptions'][0]:.2%}, {ev.intervals['corruptions'][1]:.2%}], n = {ev.n}")
    severities = ev.attack_settings[CORRUPTIONS].severities  # as the evaluation ran them
    for column in ("corruption / severity", *map(str, range(1, severities + 1)), "mean"):
        table.add_column(column)
    for corruption, accs in grid.items():
        table.add_row(corruption, *(f"{a:.2%}" for a in accs), f"{sum(accs) / len(accs):.2%}")
    means = [sum(col) / len(col) for col in zip(*grid.values())]
    table.add_row("mean", *(f"{m:.2%}" for m in means), f"{ev.robust['corruptions']:.2%}")
    console.print(table)
    console.print(f"results in {where}", highlight=False)
