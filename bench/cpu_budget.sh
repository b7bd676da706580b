# The CPU leaderboard's budget, once: sourced by bench/cpu_leaderboard.sh, bench/ode_cpu.sh and
# bench/extra_demo.sh, so their rows stay comparable. The first 4,000 training images of the CIFAR-10 JPEG
# copy, 4 nominal epochs (batch 64, cosine schedule from each defense's preset lr), PGD-20 on 200 held-out
# test images after every data epoch, then PGD-20 with the gradient-masking checks on the first 500.
# DATASET, TRAIN_SUBSET, EPOCHS, N and EVAL_N override the sizes; ROBUSTODE the command.
#   cpu_train MODEL RUNS_DIR RECORDS_DIR [robustode train flags...]
robustode=${ROBUSTODE:-.venv/bin/robustode}
cpu_train() {
  local model=$1 runs=$2 records=$3
  shift 3
  "$robustode" train --model "$model" --dataset "${DATASET:-cifar10-jpeg}" \
    --train-subset "${TRAIN_SUBSET:-4000}" --epochs "${EPOCHS:-4}" --batch-size 64 --schedule cosine \
    --n "${N:-500}" --eval-every 1 --eval-n "${EVAL_N:-200}" \
    --device cpu --out "$runs" --records "$records" --quiet "$@"
}
