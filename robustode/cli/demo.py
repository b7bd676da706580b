"""``robustode demo``: the quick start, natural training vs YOPO-5-3 on a small subset."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError

DEFENSES = ("natural", "yopo-5-3")


def pick_dataset(name: str | None, data_dir) -> str:
    """The CIFAR-10 JPEG copy when it can be found, else the synthetic set."""
    if name:
        return name
    from ..data import load_dataset

    try:
        load_dataset("cifar10-jpeg", data_dir=data_dir, train_subset=1, test_subset=1)
    except DataError:
        return "synthetic"
    return "cifar10-jpeg"


def run_demo(args, console) -> int:
    from ..api import load_data, train
    from ..report import write_report
    from .commands import command_line, show_summary

    out = Path(args.out)
    records = out / "records"
    if records.exists() and any(records.glob("*.json")):
        raise ConfigError(f"{out} holds an earlier demo; remove it or pass another --out")
    name = pick_dataset(args.dataset, args.data_dir)
    data = load_data(name, args.data_dir)
    n_train = min(args.train_subset, len(data.train))
    data = load_data(data, train_subset=n_train, test_subset=min(args.n, len(data.test)))
    console.print(f"demo: {args.model} on the first {n_train} training images of {data.name} ({data.kind}), "
                  f"{args.epochs} epochs each of {', '.join(DEFENSES)}; PGD-20 on {len(data.test)} test images")
    for spec in DEFENSES:
        _, record = train(args.model, spec, data, epochs=args.epochs, device=args.device,
                          out_dir=out / f"{args.model}-{spec}", records_dir=records,
                          command=command_line(), label="demo")
        show_summary(record, out / f"{args.model}-{spec}")
    console.print(write_report(records, "md"))
    write_report(records, "html", out / "leaderboard.html")
    console.print(f"HTML leaderboard with plots: {out / 'leaderboard.html'}")
    return 0
