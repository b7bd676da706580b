#!/usr/bin/env bash
# Neural ODE rows of the CPU leaderboard: ode_net16_1 (rk4, h = 0.25, T = 1: 16 evaluations of f per
# forward) trained naturally, with PGD-3 and with YOPO-5-3 on the CIFAR-10 JPEG copy, then PGD-20 with
# the gradient-masking checks. The budget is smaller than bench/cpu_leaderboard.sh's (4,000 images,
# 4 epochs, n 500): an ODE-Net's evaluation on this 2-core CPU costs minutes per hundred points, so
# (at a load average of 12 on the shared 2 cores, 2026-12-06) 500 images, 2 epochs (batch 64, cosine),
# n 32 and no per-epoch curve. A smoke comparison of the
# defenses on one continuous-depth model, not a reproduction of any paper's numbers.
#   bash bench/ode_cpu.sh [RECORDS_DIR] [RUNS_DIR]
# TRAIN_SUBSET, EPOCHS, N override the sizes (a toy check: DATASET=synthetic TRAIN_SUBSET=64 EPOCHS=1 N=16).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${2:-runs/ode-cpu}
records=${1:-$runs/records}
robustode=${ROBUSTODE:-.venv/bin/robustode}
for defense in natural pgd-3 yopo-5-3; do
  nice -n 10 "$robustode" train --model ode_net16_1 --dataset "${DATASET:-cifar10-jpeg}" \
    --train-subset "${TRAIN_SUBSET:-500}" --epochs "${EPOCHS:-2}" --batch-size 64 --schedule cosine \
    --n "${N:-32}" --eval-every 0 --device cpu --out "$runs" --records "$records" --quiet --defense "$defense"
done
