#!/usr/bin/env bash
# Extra data on this CPU, honestly labelled (issue 28, item 6). The CPU leaderboard trains on the first
# 4,000 training images of the CIFAR-10 JPEG copy; the other 46,000 are packed here in the released
# format of Wang et al. 2023 (an .npz with image, uint8 N x 32 x 32 x 3, and label) and mixed into a
# PGD-3 run at the leaderboard's budget with --extra-fraction 0.7, beside the same run without them.
# These are REAL images standing in for generated ones: the run shows the data path (format, mix, epoch
# length, record) working end to end, not what generated data would do.
#   bash bench/extra_demo.sh [RUNS_DIR]
# BASE_RECORD=PATH skips the run without extra data and compares with that record instead (the CPU
# leaderboard's own PGD-3 record, from the same command: leaderboard/records/...__pgd-3__s0__...json).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/extra-demo}
source bench/cpu_budget.sh
mkdir -p "$runs"
if [ ! -f "$runs/jpeg-rest.npz" ]; then
  "${PYTHON:-.venv/bin/python}" - "$runs/jpeg-rest.npz" "${TRAIN_SUBSET:-4000}" "${DATASET:-cifar10-jpeg}" <<'PY'
import sys

import numpy as np

import robustode as ro

out, used, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
train = ro.load_dataset(name).train
np.savez(out, image=train.images[used:].permute(0, 2, 3, 1).numpy(), label=train.labels[used:].numpy())
PY
fi
train() { cpu_train lm_resnet20 "$runs" "$runs/records" --defense pgd-3 "$@"; }
base=${BASE_RECORD:-$runs/pgd3-base/record.json}
[ -n "${BASE_RECORD:-}" ] || train --name pgd3-base
train --name pgd3-extra --extra-data "$runs/jpeg-rest.npz" --extra-fraction 0.7
"$robustode" compare "$base" "$runs/pgd3-extra/record.json"
