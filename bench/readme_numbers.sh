#!/usr/bin/env bash
# Rerun every README figure robustode measures and report the ones that differ (exit 1 if any);
# bench/readme_numbers.py says which. Pass --skip-demo to leave out the quick start (about 75 s here).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" bench/readme_numbers.py "$@"
