#!/usr/bin/env bash
# The CPU leaderboard in leaderboard/records: every defense on lm_resnet20, the
# first 4,000 training images of the CIFAR-10 JPEG copy, 4 nominal epochs each
# (batch 64, cosine schedule from each defense's preset lr), PGD-20 with the
# gradient-masking checks on the first 500 test images; and PGD-3 once more
# with weight averaging (--ema 0.99: the run takes 252 optimizer steps, so an
# average over ~100 steps); FGSM-RS with seeds 0, 1 and 2 (the leaderboard groups
# them into one row, mean +- std, with its catastrophic-overfitting count). Each run
# also evaluates PGD-20 on the first 200 test images after every data epoch (the
# curves of the HTML report). A small budget for a 2-core CPU: an
# architecture-and-defense smoke comparison, not a reproduction of the papers'
# numbers.
#   bash bench/cpu_leaderboard.sh [RECORDS_DIR] [RUNS_DIR]
# Records go to RECORDS_DIR (default runs/cpu-leaderboard/records, outside the committed
# leaderboard/records: copy them there on purpose, never by accident).
# DATASET, TRAIN_SUBSET, EPOCHS, N and EVAL_N override the sizes (a toy check:
# DATASET=synthetic TRAIN_SUBSET=64 EPOCHS=1 N=16 EVAL_N=16).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${2:-runs/cpu-leaderboard}
records=${1:-$runs/records}
source bench/cpu_budget.sh
train() { cpu_train lm_resnet20 "$runs" "$records" "$@"; }
train --defense fgsm-rs --seeds 0,1,2
for defense in natural pgd-3 free-4 yopo-3-2 yopo-5-3 trades-3 mart-3 n-fgsm grad-align; do
  train --defense "$defense"
done
train --defense pgd-3 --ema 0.99
"$robustode" leaderboard --records "$records" --format md
