#!/usr/bin/env bash
# The CPU leaderboard in leaderboard/records: every defense on lm_resnet20, the
# first 4,000 training images of the CIFAR-10 JPEG copy, 4 nominal epochs each
# (batch 64, cosine schedule from each defense's preset lr), PGD-20 with the
# gradient-masking checks on the first 500 test images. A small budget that a
# 2-core CPU finishes in well under an hour: an architecture-and-defense smoke
# comparison, not a reproduction of the papers' numbers.
#   bash bench/cpu_leaderboard.sh [RECORDS_DIR] [RUNS_DIR]
# Records go to RECORDS_DIR (default runs/cpu-leaderboard/records, outside the committed
# leaderboard/records: copy them there on purpose, never by accident).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${2:-runs/cpu-leaderboard}
records=${1:-$runs/records}
robustode=${ROBUSTODE:-.venv/bin/robustode}
for defense in natural fgsm-rs pgd-3 free-4 yopo-3-2 yopo-5-3 trades-3; do
  "$robustode" train --model lm_resnet20 --defense "$defense" --dataset cifar10-jpeg \
    --train-subset 4000 --epochs 4 --batch-size 64 --schedule cosine --n 500 \
    --device cpu --out "$runs" --records "$records" --quiet
done
"$robustode" leaderboard --records "$records" --format md
