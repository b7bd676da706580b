"""Render an HTML leaderboard and check it in headless Chromium: screenshots, the page as rendered, a click.

    python bench/screenshot_report.py --out /tmp/report          # demo records (bench/report_demo.py)
    python bench/screenshot_report.py --records leaderboard/records --out /tmp/report

Writes OUT/report.html, OUT/report.png (as rendered) and OUT/sorted.png (after a
click on the first table's "Clean" header), and checks in the browser's DOM, once
the page has loaded: the click sorted that table by clean accuracy, best first;
every accuracy cell of one run shows its interval; every plot decoded; and the
plots of the first table fill the page's width. The last line printed is the
JSON of what the browser measured.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from report_demo import demo_records

from robustode.report import write_report

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--virtual-time-budget=5000"]  # lets the load event (and the measuring below) happen first
_CLICK = """<script>
document.querySelector("table.sortable th:nth-child(2)").click();  // a first click sorts descending
window.addEventListener("load", () => {
  const images = [...document.images], plots = document.querySelector(".plots");
  const width = e => e.getBoundingClientRect().width;
  const cells = [...document.querySelectorAll("table.sortable tbody td:nth-child(3)")].map(td => td.textContent);
  const out = document.createElement("pre");
  out.id = "checks";
  out.textContent = JSON.stringify({
    images: images.length, decoded: images.filter(i => i.naturalWidth > 0).length,
    filled: plots ? [...plots.querySelectorAll("img")].reduce((s, i) => s + width(i), 0) / width(plots) : 0,
    clean: [...document.querySelector("table.sortable").tBodies[0].rows].map(r => r.cells[1].textContent),
    pgd20: cells, curves: document.querySelectorAll(".curves img").length});
  document.body.appendChild(out);
});
</script>"""
ONE_RUN = re.compile(r"\d+\.\d\d \[\d+\.\d, \d+\.\d\]")  # "47.04 [46.1, 48.0]"
SEEDS = re.compile(r"\d+\.\d\d ± \d+\.\d\d")  # "44.37 ± 0.70"


def chromium(binary: str, *args: str, height: int, profile: str) -> str:
    cmd = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--window-size=1280,{height}", *args]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def problems(checks: dict) -> list[str]:
    """What the browser measured that is wrong."""
    clean = [float(v.split()[0].rstrip("†")) for v in checks["clean"]]
    found = []
    if len(clean) < 2 or clean != sorted(clean, reverse=True):
        found.append(f"clicking 'Clean' did not sort the first table: {clean}")
    if not checks["images"] or checks["decoded"] != checks["images"]:
        found.append(f"{checks['decoded']} of {checks['images']} plots decoded")
    if checks["filled"] < 0.9:
        found.append(f"the first table's plots fill {checks['filled']:.0%} of the width")
    bad = [c for c in checks["pgd20"] if not (ONE_RUN.fullmatch(c) or SEEDS.fullmatch(c))]
    if bad:
        found.append(f"PGD-20 cells without an interval or a mean ± std: {bad}")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", help="a folder of records (default: demo records in a temp dir)")
    ap.add_argument("--out", required=True, help="folder for report.html, report.png, sorted.png")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--height", type=int, default=2600)
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
        for name, url in (("report.png", page), ("sorted.png", clicked)):
            chromium(args.chromium, f"--screenshot={out / name}", url.resolve().as_uri(), height=args.height,
                     profile=profile)
        dom = chromium(args.chromium, "--dump-dom", clicked.resolve().as_uri(), height=args.height,
                       profile=profile)
    found = re.search(r'<pre id="checks">(.*?)</pre>', dom, re.DOTALL)
    if not found:
        sys.exit("the page's checks did not run (no load event?)")
    checks = json.loads(found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    if problems(checks):
        sys.exit("; ".join(problems(checks)))
    print(f"ok: {out / 'report.png'}, {out / 'sorted.png'}")
    print(json.dumps(checks))


if __name__ == "__main__":
    main()
