"""``robustode compare`` and ``robustode combine``: two runs point by point; one run's evaluations as one."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def cmd_compare(args) -> int:
    from ..records import compare, load_record

    a, b = load_record(args.first), load_record(args.second)
    rows = compare(a, b)
    table = Table(title=f"A = {_name(a)}   vs   B = {_name(b)}   (n = {a.evaluation.n}, "
                        f"{a.dataset.name}, {a.evaluation.norm} eps {a.evaluation.eps:.4g})")
    for column in ("metric", "A", "B", "A - B", "only A right", "only B right", "p (exact McNemar)", ""):
        table.add_column(column, justify="left" if column in ("metric", "") else "right")
    for r in rows:
        table.add_row(r.metric, f"{r.a:.2%}", f"{r.b:.2%}", f"{100 * (r.a - r.b):+.2f} pts", str(r.only_a),
                      str(r.only_b), f"{r.p_value:.3g}", "significant at 0.05" if r.significant else "")
    console.print(table)
    return 0


def cmd_combine(args) -> int:
    from ..files import check_output_file
    from ..records import combine, load_record, save

    out = check_output_file(args.out, force=args.force, what="--out")
    merged = combine([load_record(path) for path in args.records])
    save(merged, out, overwrite=args.force)
    ev = merged.evaluation
    console.print(f"combined {len(args.records)} evaluations: {', '.join(ev.robust)}; worst case "
                  f"{ev.worst_case_acc:.2%} on n = {ev.n}; wrote {out}", highlight=False)
    return 0


def _name(record) -> str:
    return f"{record.model.name} / {record.defense.spec} s{record.training.seed}"
