"""Render an HTML leaderboard and check it in headless Chromium: screenshots, and a real click to sort.

    python bench/screenshot_report.py --out /tmp/report          # demo records, made in a temp dir
    python bench/screenshot_report.py --records leaderboard/records --out /tmp/report

Writes OUT/report.html, OUT/report.png (as rendered) and OUT/sorted.png (after a
click on the first table's "Clean" header), and checks in the browser's DOM that
the click sorted that table by clean accuracy, best first. The demo records hold
the seed talk's figures and the reference's measured anchors; they are examples
for the page, not results, and are never written to leaderboard/records.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from robustode.records import make_record, save_in
from robustode.report import write_report

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_CLICK = """<script>
document.querySelector("table.sortable th:nth-child(2)").click();  // a first click sorts descending
</script>"""

# (method, clean, PGD-20, minutes, data kind): reference sections 2 and 6.
DEMO = [("natural", 0.9503, 0.0, 233, "real"), ("pgd-3", 0.9007, 0.3918, 1134, "real"),
        ("pgd-5", 0.8965, 0.4385, 1574, "real"), ("pgd-10", 0.8730, 0.4704, 2713, "real"),
        ("free-8", 0.8629, 0.4700, 667, "real"), ("yopo-3-5", 0.8727, 0.4304, 299, "real"),
        ("yopo-5-3", 0.8670, 0.4798, 476, "real"), ("fgsm-rs", 0.763, 0.420, 26.4 / 60, "jpeg-copy"),
        ("pgd-10", 0.723, 0.443, 123 / 60, "jpeg-copy")]


def demo_records(folder: Path) -> Path:
    for spec, clean, pgd, mins, kind in DEMO:
        real = kind == "real"
        rec = make_record(
            model={"name": "wrn34_10" if real else "preact_resnet18", "params": 1},
            defense={"spec": spec, "name": spec.split("-")[0]},
            dataset={"name": "cifar10" if real else "cifar10-jpeg", "kind": kind, "n_train": 50_000,
                     "n_test": 10_000, "num_classes": 10},
            training={"epochs": 105 if real else 15, "batch_size": 128, "seed": 0, "seconds": mins * 60,
                      "images_per_second": 1.0, "passes_per_image": 1.0},
            evaluation={"n": 10_000, "norm": "linf", "eps": 8 / 255, "clean_acc": clean, "pgd20_acc": pgd,
                        "robust": {"pgd-20": pgd}},
            provenance={"robustode_version": "demo", "git_commit": None, "torch_version": "demo",
                        "device": "seed talk GPU" if real else "NVIDIA H200", "device_type": "cuda",
                        "precision": "fp32" if real else "bf16", "date": "2020-01-01T00:00:00+00:00"},
            label="demo")
        save_in(rec, folder)
    return folder


def chromium(binary: str, *args: str, height: int, profile: str) -> str:
    cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--window-size=1280,{height}", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def first_table_column(dom: str, col: int) -> list[str]:
    body = re.search(r"<tbody>(.*?)</tbody>", dom, re.DOTALL).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row)[col] for row in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", help="a folder of records (default: demo records in a temp dir)")
    ap.add_argument("--out", required=True, help="folder for report.html, report.png, sorted.png")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--height", type=int, default=2000)
    args = ap.parse_args()
    if not args.chromium:
        sys.exit("no chromium found: apt-get install chromium, or pass --chromium PATH")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        records = args.records or demo_records(Path(tmp) / "records")
        page = out / "report.html"
        write_report(records, "html", page)
        clicked = out / "clicked.html"
        clicked.write_text(page.read_text().replace("</body>", _CLICK + "</body>"))
        profile = str(Path(tmp) / "profile")
        chromium(args.chromium, f"--screenshot={out / 'report.png'}", page.resolve().as_uri(),
                 height=args.height, profile=profile)
        chromium(args.chromium, f"--screenshot={out / 'sorted.png'}", clicked.resolve().as_uri(),
                 height=args.height, profile=profile)
        dom = chromium(args.chromium, "--dump-dom", clicked.resolve().as_uri(), height=args.height,
                       profile=profile)
    clean = [float(v.rstrip("†")) for v in first_table_column(dom, 1)]
    if clean != sorted(clean, reverse=True) or len(clean) < 2:
        sys.exit(f"clicking 'Clean' did not sort the first table: {clean}")
    print(f"ok: {out / 'report.png'}, {out / 'sorted.png'}; the click sorted clean accuracy as {clean}")


if __name__ == "__main__":
    main()
