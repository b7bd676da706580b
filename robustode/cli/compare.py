"""``robustode compare`` and ``robustode combine``: two runs point by point; one run's evaluations as one."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(soft_wrap=True)  # piped output keeps each line whole


def cmd_compare(args) -> int:
    from ..records import compare, find_record, load_record

    a, b = load_record(find_record(args.first)), load_record(find_record(args.second))
    rows = compare(a, b)
    console.print(f"A = {_name(a)}, B = {_name(b)}: the same {a.evaluation.n} points of {a.dataset.name}, "
                  f"{a.evaluation.norm} eps {a.evaluation.eps:.4g}", highlight=False)
    table = Table()
    for column in ("metric", "A %", "B %", "A-B", "only A", "only B", "p", ""):
        table.add_column(column, justify="left" if column in ("metric", "") else "right", no_wrap=True)
    for r in rows:
        table.add_row(r.metric, f"{100 * r.a:.2f}", f"{100 * r.b:.2f}", f"{100 * (r.a - r.b):+.2f}", str(r.only_a),
                      str(r.only_b), f"{r.p_value:.3g}", "*" if r.significant else "")
    console.print(table)
    console.print("A-B: percentage points; only A / only B: points one of the two gets right and the other "
                  "not; p: two-sided exact McNemar test on them; *: p < 0.05", highlight=False)
    return 0


def cmd_combine(args) -> int:
    from ..files import check_output_file
    from ..records import combine, find_record, load_record, save

    out = check_output_file(args.out, force=args.force, what="--out", record=True)
    merged = combine([load_record(find_record(path)) for path in args.records])
    save(merged.record, out, overwrite=args.force, points=merged.points)
    ev = merged.record.evaluation
    console.print(f"combined {len(args.records)} evaluations: {', '.join(ev.robust)}; worst case "
                  f"{ev.worst_case_acc:.2%} on n = {ev.n}; wrote {out}", highlight=False)
    return 0


def _name(record) -> str:
    return f"{record.model.name} / {record.defense.spec} s{record.training.seed}"
