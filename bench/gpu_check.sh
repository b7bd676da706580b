#!/usr/bin/env bash
# The GPU check of the speed issue: training throughput (bench/throughput.py) against the prototype, YOPO's
# share outside its full passes and each defense's step against natural's (bench/step_cost.py), the
# time-to-robustness runs (bench/time_to_robust.py), torch.compile and CUDA graphs, the extra-data stream and
# a recipe; the tables are printed last. Results go to $OUT (the device tool brings them back), else
# /tmp/gpu_check. The stages' caps add up to ~1,300 s, more than one call's ~9.5 minutes: the default call
# runs the first group (caps 520 s), and each further group is its own call, in this order of priority:
#   bash bench/gpu_check.sh                                                  # throughput prototype yopo ratio ode
#   GPU_CHECK_STAGES="robust compile cudagraphs" bash bench/gpu_check.sh     # caps 540 s
#   GPU_CHECK_STAGES="models stream recipe" bash bench/gpu_check.sh          # caps 240 s
#
# Prepare the checkout once (both folders are git-ignored; the GPU machine has neither torchattacks nor
# torchdiffeq, and no network):
#   mkdir -p .whl .data && cp /work/shared/wheels/torchattacks-3.5.1-py3-none-any.whl .whl/ \
#     && .venv/bin/pip download --no-deps -d .whl torchdiffeq==0.2.5 \
#     && cp /work/shared/data/cifar10-jpeg.tar.gz /work/shared/tools/prototype.py .data/
# Run it on the GPU machine from the repo root (device tool: carry [".whl", ".data"], timeout_s 600):
#   bash bench/gpu_check.sh
# Dry run on the CPU with tiny models, synthetic data and the same logic (venv python here):
#   GPU_CHECK_TOY=1 PYTHON=.venv/bin/python bash bench/gpu_check.sh
#
# Settings (environment): PYTHON (default python3), GPU_CHECK_SECONDS (whole budget, default 560),
# GPU_CHECK_STAGES (default "throughput prototype yopo ratio ode"; every stage: throughput prototype yopo ratio
# models ode robust compile cudagraphs stream recipe), TTR_DEFENSES
# (time-to-robust defenses),
# TTR_BUDGET (seconds of training per defense, default 150).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TOTAL=${GPU_CHECK_SECONDS:-560}
STAGES=${GPU_CHECK_STAGES:-throughput prototype yopo ratio ode}
RESULTS=${OUT:-/tmp/gpu_check}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)  # records, step costs, the wheel's install: $OUT takes 8 files at most
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_check.log"
: >"$LOG"

say() { echo "== $*" | tee -a "$LOG"; }
die() { echo "gpu_check: $*" | tee -a "$LOG" >&2; exit 1; }
left() { echo $((TOTAL - ($(date +%s) - START))); }

# stage NAME CAP_SECONDS COMMAND...: runs under the smaller of its cap and the time left (20 s kept for
# the tables); a stage that fails or runs out of time is reported and the next one still runs.
stage() {
  local name=$1 cap=$2
  shift 2
  case " $STAGES " in *" $name "*) ;; *) say "stage $name: skipped (not in GPU_CHECK_STAGES)"; return 0 ;; esac
  local limit=$(($(left) - 20))
  ((limit > cap)) && limit=$cap
  if ((limit < 10)); then say "stage $name: skipped, only $(left) s of the budget left"; return 0; fi
  say "stage $name (at most $limit s): $*"
  local t0=$(date +%s) rc=0
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG" || rc=$?
  say "stage $name: exit $rc after $(($(date +%s) - t0)) s"
}

# -- environment: fail fast and say what is missing ---------------------------------------------------
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set PYTHON=...)"
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOG" || die "a Python package is missing (see above)"
import importlib, sys
missing = [m for m in ("torch", "numpy", "rich", "PIL", "matplotlib") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {', '.join(missing)}")
EOF
WHEEL=$(ls .whl/torchattacks-*.whl 2>/dev/null | head -n 1 || true)
[[ -n $WHEEL ]] || die "no .whl/torchattacks-*.whl: copy /work/shared/wheels/torchattacks-3.5.1-py3-none-any.whl into .whl/ and carry .whl"
ls .whl/torchdiffeq-*.whl >/dev/null 2>&1 \
  || die "no .whl/torchdiffeq-*.whl: .venv/bin/pip download --no-deps -d .whl torchdiffeq==0.2.5, and carry .whl"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
  || die "pip could not install the wheels in .whl"
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [[ -n ${GPU_CHECK_TOY:-} ]]; then
  DEVICE=cpu
  TP_MAIN=(--models resnet20 --defenses natural,pgd-2,free-2,yopo-2-1 --batch-size 8 --steps 2)
  TP_MODELS=(--models macaron_vit_tiny,lm_resnet20 --defenses natural --batch-size 8 --steps 2)
  TP_COMPILE=(--models resnet20 --defenses natural --batch-size 8 --steps 2 --compile)
  TP_GRAPHS=(--models resnet20 --defenses natural --batch-size 8 --steps 2 --compile default)
  SC_YOPO=(--models resnet20 --defenses yopo-2-1 --paths closed-form,autograd --batch-size 8 --steps 1)
  SC_RATIO=(--models resnet20 --defenses natural,natural-x2,yopo-2-1,grad-align --batch-size 8 --steps 1 --pairs 3)
  TTR=(--model resnet20 --dataset synthetic --train-subset 32 --n 8 --epochs 1 --batch-size 16
       --defenses "${TTR_DEFENSES:-natural,yopo-2-1}")
  STREAM=(--images 20000 --batches 5 --model resnet20 --step-batch 8 --rounds 2)
  SC_ODE=(--models ode_net16_1 --defenses natural,natural-x4,pgd-3,yopo-5-3 --batch-size 8 --steps 1 --pairs 2)
  PROTO=(--smoke)
  RECIPE=(--recipe fastat --defense fgsm-rs --model resnet20 --dataset synthetic --train-subset 64 --epochs 1
          --batch-size 16 --n 16)
else
  DEVICE=cuda
  [[ -f .data/cifar10-jpeg.tar.gz ]] || die "no .data/cifar10-jpeg.tar.gz: copy /work/shared/data/cifar10-jpeg.tar.gz into .data/ and carry .data"
  TP_MAIN=(--models wrn34_10,preact_resnet18 --defenses natural,fgsm-rs,pgd-10,free-8,yopo-5-3,yopo-3-5,trades-10
           --steps 20)
  TP_MODELS=(--models lm_resnet56,meanfield_resnet56,macaron_vit --defenses natural --steps 20)
  TP_COMPILE=(--models preact_resnet18,wrn34_10 --defenses natural --steps 20 --compile)
  TP_GRAPHS=(--models preact_resnet18 --defenses natural --steps 20 --compile reduce-overhead)
  SC_YOPO=(--models preact_resnet18,wrn34_10 --defenses yopo-5-3,yopo-3-5 --paths closed-form,autograd
           --batch-size 256 --steps 5 --warmup 2)
  SC_RATIO=(--models preact_resnet18 --defenses natural,natural-x8,fgsm-rs,pgd-10,free-8,yopo-5-3,yopo-3-5,trades-10,grad-align
            --batch-size 512 --steps 2 --pairs 5 --warmup 2)
  TTR=(--dataset cifar10-jpeg --data-dir .data --defenses "${TTR_DEFENSES:-fgsm-rs,free-8,yopo-5-3,pgd-10,natural}"
       --budget-seconds "${TTR_BUDGET:-150}")
  # the extra-data stream from a 1M-image .npy (3.07 GB on the machine's disk) feeding WRN-28-10 bf16 steps
  STREAM=(--images 1000000 --batches 200 --model dm_wrn28_10 --step-batch 512 --rounds 20)
  # an ode_net PGD-3 step against 4 natural ones (rk4, fixed grid: its function evaluations per pass are known)
  SC_ODE=(--models ode_net16_1 --defenses natural,natural-x4,pgd-3,yopo-5-3 --batch-size 512 --steps 2 --pairs 3
          --warmup 2)
  PROTO=()  # the prototype's own run: its throughput benchmarks, then FGSM-RS on PreActResNet-18, 15 epochs
  # a recipe end to end on the real data: FastAT's settings for FGSM-RS on preact_resnet18, one epoch of 10,000 images
  RECIPE=(--recipe fastat --defense fgsm-rs --dataset cifar10-jpeg --data-dir .data --train-subset 10000 --epochs 1
          --n 500)
fi

"$PYTHON" - "$DEVICE" <<'EOF' 2>&1 | tee -a "$LOG" || die "torch cannot use the device (see above)"
import sys, torch, robustode, torchattacks, torchdiffeq
device = sys.argv[1]
if device == "cuda" and not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
name = torch.cuda.get_device_name() if device == "cuda" else "CPU (toy run)"
print(f"device {name}; torch {torch.__version__}; python {sys.version.split()[0]}")
print(f"robustode from {robustode.__file__}; torchattacks from {torchattacks.__file__}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>&1 | tee -a "$LOG" || true
git rev-parse HEAD 2>/dev/null | sed 's/^/commit /' | tee -a "$LOG" || true

# -- the measurements ---------------------------------------------------------------------------------
stage throughput 170 "$PYTHON" bench/throughput.py "${TP_MAIN[@]}" --device "$DEVICE" --json "$RESULTS/throughput.json"
# The floor to beat, in the same call on the same card: ../shared/tools/prototype.py, carried in .data/.
if [[ -f .data/prototype.py && -f .data/cifar10-jpeg.tar.gz ]]; then
  stage prototype 200 "$PYTHON" .data/prototype.py "${PROTO[@]}" --data .data/cifar10-jpeg.tar.gz
else
  say "stage prototype: skipped (copy /work/shared/tools/prototype.py and the data tar into .data/ and carry .data)"
fi
mkdir -p "$WORK/step_cost"
stage yopo 45 "$PYTHON" bench/step_cost.py "${SC_YOPO[@]}" --device "$DEVICE" --json "$WORK/step_cost/yopo.json"
stage ratio 60 "$PYTHON" bench/step_cost.py --mode ratio "${SC_RATIO[@]}" --device "$DEVICE" \
  --json "$WORK/step_cost/ratio.json"
stage models 60 "$PYTHON" bench/throughput.py "${TP_MODELS[@]}" --device "$DEVICE" --json "$RESULTS/throughput_models.json"
stage ode 45 "$PYTHON" bench/step_cost.py --mode ratio "${SC_ODE[@]}" --device "$DEVICE" --json "$WORK/step_cost/ode.json"
stage robust 330 "$PYTHON" bench/time_to_robust.py "${TTR[@]}" --device "$DEVICE" --records "$WORK/records" \
  --html "$RESULTS/leaderboard.html" --json "$RESULTS/time_to_robust.json"
stage compile 120 "$PYTHON" bench/throughput.py "${TP_COMPILE[@]}" --device "$DEVICE" --json "$RESULTS/throughput_compile.json"
stage cudagraphs 90 "$PYTHON" bench/throughput.py "${TP_GRAPHS[@]}" --device "$DEVICE" --json "$RESULTS/throughput_cudagraphs.json"
stage stream 90 "$PYTHON" bench/data_stream.py "${STREAM[@]}" --device "$DEVICE" --dir "$WORK/stream" \
  --json "$WORK/step_cost/data_stream.json"
stage recipe 90 "$PYTHON" -m robustode train "${RECIPE[@]}" --device "$DEVICE" --no-masking-checks \
  --out "$WORK/recipe" --records "$WORK/records" --quiet

# One archive for the records and the step costs: $OUT brings back 8 files at most.
(cd "$WORK" && ls -d records step_cost/*.json 2>/dev/null) >"$WORK/archived" || true
if [[ -s $WORK/archived ]]; then
  tar -czf "$RESULTS/records.tar.gz" -C "$WORK" -T "$WORK/archived"
fi

# -- the tables, last ---------------------------------------------------------------------------------
say "tables (after $(($(date +%s) - START)) s)"
"$PYTHON" - "$RESULTS" "$WORK" <<'EOF' 2>&1 | tee -a "$LOG"
import json, os, sys
sys.path.insert(0, "bench")
import step_cost, throughput, time_to_robust

results, work, console = sys.argv[1], sys.argv[2], throughput.wide_console()
for name in ("throughput.json", "throughput_models.json", "throughput_compile.json", "throughput_cudagraphs.json",
             "time_to_robust.json"):
    path = os.path.join(results, name)
    if not os.path.isfile(path):
        console.print(f"{name}: not written (stage skipped, failed or out of time)")
        continue
    report = json.load(open(path))
    (time_to_robust.show if name == "time_to_robust.json" else throughput.show)(report, console)
for name in ("yopo.json", "ratio.json", "ode.json"):
    path = os.path.join(work, "step_cost", name)
    if os.path.isfile(path):
        step_cost.show(json.load(open(path)), console)
    else:
        console.print(f"step_cost/{name}: not written (stage skipped, failed or out of time)")
EOF
ls "$RESULTS" | tee -a "$LOG"
