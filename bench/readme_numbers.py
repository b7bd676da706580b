"""Rerun every README figure that robustode measures and report the ones that differ (exit 1 if any).

    python bench/readme_numbers.py [--skip-demo]       # or: bash bench/readme_numbers.sh

Checked, each against the README as committed:
- the quick start's table: `robustode demo` rerun into a temporary folder, clean and PGD-20 with their
  intervals per defense (its training times are shown, not compared: they are the machine's);
- the CPU leaderboard block between the leaderboard markers, regenerated from leaderboard/records;
- the paired comparison's rows, accuracies, counts and p-values (`robustode compare` on the two records it names);
- the check-model table's parameter count and FLOPs for torchvision's resnet18;
- wrn34_10's parameter count.
The demo takes minutes (about 4 on a quiet 2-core CPU); --skip-demo checks the rest in seconds.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robustode.text import interval_text

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ROBUSTODE = [sys.executable, "-m", "robustode"]


def run(*args: str) -> str:
    done = subprocess.run([*ROBUSTODE, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"robustode {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def demo_rows(readme: str) -> dict[str, tuple[str, str]]:
    """The quick start table: defense -> (clean cell, PGD-20 cell), as the README writes them."""
    rows = re.findall(r"^\| (natural|yopo-5-3) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", readme, re.M)
    return {name: (clean.strip(), robust.strip()) for name, clean, robust, _ in rows}


def cell(acc: float, interval) -> str:
    return f"{acc:.1%} {interval_text(*interval, sign='')}"


def check_demo(readme: str) -> list[str]:
    from robustode.records import load_records

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run("demo", "--out", f"{tmp}/demo")
        minutes = (time.perf_counter() - start) / 60
        measured = {r.defense.spec: r for r in load_records(Path(tmp) / "demo" / "records")}
    print(f"demo: {minutes:.1f} min in all")
    problems = [] if len(demo_rows(readme)) == 2 else ["the README's quick start table was not found"]
    for name, (clean, robust) in demo_rows(readme).items():
        ev = measured[name].evaluation
        now = (cell(ev.clean_acc, ev.intervals["clean"]), cell(ev.robust["pgd-20"], ev.intervals["pgd-20"]))
        print(f"  {name}: clean {now[0]}, PGD-20 {now[1]}, {measured[name].training.seconds:.0f} s of training")
        if now != (clean, robust):
            problems.append(f"quick start {name}: README says {clean} / {robust}, measured {now[0]} / {now[1]}")
    return problems


def check_leaderboard(readme: str) -> list[str]:
    from robustode.records import load_records
    from robustode.report.markdown import END, START, render_markdown

    block = readme[readme.index(START) + len(START):readme.index(END)].strip()
    fresh = render_markdown(load_records(ROOT / "leaderboard" / "records"), "CPU leaderboard", level=3).strip()
    return [] if fresh == block else ["the CPU leaderboard block differs from `robustode leaderboard --records "
                                      "leaderboard/records --format md`"]


def check_compare(readme: str) -> list[str]:
    files = re.findall(r"\$R/(\S+\.json)", readme)
    rows = re.compile(r"^(?:clean|pgd-20|worst_case) .*$", re.MULTILINE)  # accuracies, counts and p, each row whole
    said = rows.findall(readme)
    if len(files) != 2 or len(said) != 3:
        return ["the README's paired comparison (two records, three rows) was not found"]
    now = rows.findall(run("compare", *(f"leaderboard/records/{f}" for f in files)))
    return [] if now == said else [f"the paired comparison: README {said}, measured {now}"]


def check_counts(readme: str) -> list[str]:
    from robustode.models import count_parameters, create

    problems = []
    said = re.search(r"`wrn34_10` \(([0-9,]+) parameters\)", readme).group(1)
    now = f"{count_parameters(create('wrn34_10', num_classes=10)):,}"
    if now != said:
        problems.append(f"wrn34_10: README says {said} parameters, counted {now}")
    with tempfile.TemporaryDirectory() as tmp:
        factory = Path(tmp) / "rn18.py"
        factory.write_text("import torchvision\n\ndef make_model():\n"
                           "    return torchvision.models.resnet18(num_classes=10)\n")
        out = subprocess.run([*ROBUSTODE, "check-model", "--module", f"{factory}:make_model", "--num-classes", "10"],
                             cwd=ROOT, capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""}).stdout
    for label in (r"[0-9,]+ trainable", r"[0-9]+ MFLOP per 3x32x32 image"):
        said, now = re.search(label, readme), re.search(label, out)
        if not now or said.group(0) != now.group(0):
            problems.append(f"check-model: README says {said.group(0)}, measured {now and now.group(0)}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-demo", action="store_true", help="skip the quick start rerun (about 75 s here, far longer under load)")
    args = parser.parse_args()
    readme = README.read_text()
    problems = check_leaderboard(readme) + check_compare(readme) + check_counts(readme)
    if not args.skip_demo:
        problems += check_demo(readme)
    for problem in problems:
        print(f"DIFFERS: {problem}")
    print("every checked README figure is what robustode measures now" if not problems else
          f"{len(problems)} README figure(s) differ")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
