"""``robustode compare`` and ``robustode combine``: two runs point by point; one run's evaluations as one."""

from __future__ import annotations

from rich.console import Console

console = Console(soft_wrap=True)  # piped output keeps each line whole


def cmd_compare(args) -> int:
    from ..records import compare, find_record, load_record
    from ..threat import describe

    a, b = load_record(find_record(args.first)), load_record(find_record(args.second))
    rows = compare(a, b)
    console.print(f"a = {_name(a)}, b = {_name(b)}: the same {a.evaluation.n} points of {a.dataset.name}, "
                  f"{describe(a.evaluation.norm, a.evaluation.eps)}", highlight=False)
    console.print(str(rows), highlight=False, markup=False)
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
