#!/usr/bin/env bash
# Neural ODE rows of the CPU leaderboard: ode_net16_1 (rk4, h = 0.25, T = 1: 16 evaluations of f per
# forward) trained naturally, with PGD-3 and with YOPO-5-3 on the CIFAR-10 JPEG copy at the budget of
# bench/cpu_leaderboard.sh (the first 4,000 training images, 4 epochs, batch 64, cosine schedule from each
# defense's preset lr, PGD-20 on 200 held-out test images after every epoch), then PGD-20 with the
# gradient-masking checks on the first 500 test images; then robustode probe of the PGD-3 model. A smoke
# comparison of the defenses on one continuous-depth model, not a reproduction of any paper's numbers.
#   bash bench/ode_cpu.sh [RECORDS_DIR] [RUNS_DIR]
# DATASET, TRAIN_SUBSET, EPOCHS, N, EVAL_N and PROBE_N override the sizes (a toy check:
# DATASET=synthetic TRAIN_SUBSET=64 EPOCHS=1 N=16 EVAL_N=16 PROBE_N=16).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${2:-runs/ode-cpu}
records=${1:-$runs/records}
source bench/cpu_budget.sh
for defense in natural pgd-3 yopo-5-3; do
  cpu_train ode_net16_1 "$runs" "$records" --defense "$defense"
done
# The probe of the PGD-3 run: its own rk4 grid against forward Euler at its step, rk4 at a quarter of its
# step and an adaptive dopri5; then its blocks' Lipschitz profile. Added to that run's record.
pgd3=$(ls -d "$runs"/*ode_net16_1-pgd-3-s0 | tail -n 1)
record=$(ls -t "$records"/*ode_net16_1__pgd-3__*.json | head -n 1)
nice -n 10 "$robustode" probe "$pgd3/checkpoints/last.pt" --n "${PROBE_N:-200}" \
  --setting method=euler,step_size=0.25 --setting method=rk4,step_size=0.0625 \
  --setting method=dopri5,rtol=1e-2,atol=1e-2 --record "$record" --out "$runs/probe.json"
