"""``robustode demo``: the quick start, natural training vs YOPO-5-3 on a small subset."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError

DEFENSES = ("natural", "yopo-5-3")
# Sized for a few minutes on a laptop CPU (README quick start); YOPO still shows PGD-20 robustness.
DEFAULTS = {"model": "lm_resnet20", "epochs": 3, "train_subset": 2000, "n": 300}
# Short runs: small batches for more steps, lr annealed to 0 within the few epochs. The gradient-masking
# checks would cost several times the PGD-20 evaluation itself at this n; `robustode train` runs them.
# Each epoch ends with PGD-20 on the first 100 test images: the curves in the HTML page.
SETTINGS = {"batch_size": 64, "schedule": "cosine", "masking_checks": False, "eval_every": 1, "eval_n": 100}


def pick_dataset(name: str | None, data_dir) -> tuple:
    """(data set, why it is the synthetic one or None): the one asked for, by default the
    CIFAR-10 JPEG copy when it can be found, else the synthetic set."""
    from ..data import load_dataset

    if name:
        return load_dataset(name, data_dir=data_dir), None
    try:
        return load_dataset("cifar10-jpeg", data_dir=data_dir), None
    except DataError as err:
        return load_dataset("synthetic", data_dir=data_dir), str(err)


def run_demo(args, console) -> int:
    from ..api import load_data, train
    from ..models import registry
    from ..report import write_report
    from .commands import command_line, show_summary

    out = Path(args.out)
    records = out / "records"
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty (an earlier demo?); remove it or pass another --out")
    registry.resolve(args.model)
    data, fallback = pick_dataset(args.dataset, args.data_dir)
    if fallback:
        console.print(f"{fallback}.\nThe demo uses the synthetic set instead: a smoke test, not a benchmark.",
                      highlight=False, markup=False)
    n_train, n_test = min(args.train_subset, len(data.train)), min(args.n, len(data.test))
    data = load_data(data, train_subset=n_train, test_subset=n_test)
    console.print(f"demo: {args.model} trained for {args.epochs} epochs with {' and with '.join(DEFENSES)} "
                  f"on the first {n_train} training images of {data.name} ({data.kind}); PGD-20 on the "
                  f"first {n_test} test images (no gradient-masking checks)", highlight=False)
    for spec in DEFENSES:
        run_dir = out / f"{args.model}-{spec}"
        _, record = train(args.model, spec, data, epochs=args.epochs, device=args.device, out_dir=run_dir,
                          records_dir=records, command=command_line(args), label="demo",
                          **{**SETTINGS, "batch_size": min(SETTINGS["batch_size"], n_train),
                             "eval_n": min(SETTINGS["eval_n"], n_test)})
        show_summary(record, run_dir)
    print(write_report(records, "md"))  # plain: a wrapped Markdown table would not render
    write_report(records, "html", out / "leaderboard.html")
    console.print(f"HTML leaderboard with plots: {out / 'leaderboard.html'}", highlight=False)
    return 0
