"""The examples run as users run them: as scripts, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ROW = re.compile(r"(?P<title>.+?)\s+clean\s+(?P<clean>[\d.]+)%\s+PGD-20\s+(?P<pgd>[\d.]+)%"
                 r"\s+train\s+[\d.]+ s")


def test_custom_model_example(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ROBUSTODE_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_model.py")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    rows = [ROW.fullmatch(line) for line in lines[:3]]
    assert all(rows), lines
    assert [r["title"] for r in rows] == ["SmallCNN, pgd-2", "SmallCNN, yopo-3-2", "contract_cnn by name, yopo-3-2"]
    for row in rows:
        assert 0 <= float(row["pgd"]) <= 100 and 0 <= float(row["clean"]) <= 100
    assert lines[3:] == ["YOPO found SmallCNN's layer one: conv1"]
