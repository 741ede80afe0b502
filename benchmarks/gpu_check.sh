#!/usr/bin/env bash
# GPU check (issue 13): run on a machine with one CUDA GPU from the repository root, e.g.
#     bash benchmarks/gpu_check.sh        # stages below, each under its own time limit (about 10 minutes at most)
# 1. the whole-body prediction (400x400x326 synthetic study, paper-width H2ASeg, random weights): `h2aseg predict`
#    defaults (fp32 on CUDA since this check: bf16 autocast was slower) against fp32, no skipping, the former predict path and MONAI's
#    plain sliding window (inference.py speed);
#    then the warm network time a window in each precision (inference.py windows);
# 2. training-step speed of paper-width H2ASeg at 128x128x64, batch 2, eager (speed.py);
# 3. a short `h2aseg train --amp on` against `--amp off` on a small synthetic cohort (epoch seconds, val Dice);
# 4. the training step again, torch.compile'd with inductor.
# A stage that fails or runs out of time is recorded (stages.tsv) and the next one runs. Writes
# benchmarks/results/gpu.md (with the device name) and the raw outputs under $RAW.
# Environment: PY (python with h2aseg importable), WORK (scratch), RAW (raw outputs),
# DEVICE (cuda; `DEVICE=cpu SHAPE="96 96 64"` is a dry run of the plumbing on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
WORK=${WORK:-/tmp/h2aseg_gpu_check}
RAW=${RAW:-benchmarks/results/gpu_runs}
DEVICE=${DEVICE:-cuda}
SHAPE=${SHAPE:-400 400 326}
REPORT=${REPORT:-benchmarks/results/gpu.md}
mkdir -p "$WORK" "$RAW"
: > "$RAW/stages.tsv"

stage() {  # stage NAME SECONDS COMMAND...: stdout to NAME.json, stderr to NAME.log, status to stages.tsv
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit}s)" >&2
    timeout "$limit" "$@" > "$RAW/$name.json" 2> "$RAW/$name.log"
    local status=$?
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >> "$RAW/stages.tsv"
    echo "   status $status after $((SECONDS - start)) s" >&2
}

if [ "$DEVICE" = cuda ]; then
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run this on a GPU machine')" || exit 1
    "$PY" -c "import torch; print(torch.cuda.get_device_name(0))" > "$RAW/device.txt"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RAW/nvidia_smi.csv" || true
else
    echo "dry run on $DEVICE" > "$RAW/device.txt"
fi
"$PY" -c "import platform, os, torch, monai; print('python', platform.python_version(), '| torch', torch.__version__, '| monai', monai.__version__, '| host cores', len(os.sched_getaffinity(0)))" > "$RAW/environment.txt" 2>&1
cat "$RAW/device.txt" "$RAW/environment.txt" >&2

# 1. whole-body prediction, side by side (every path on the device)
# shellcheck disable=SC2086
stage inference_wholebody 270 "$PY" benchmarks/inference.py speed --work "$WORK/wholebody" --device "$DEVICE" \
    --shape $SHAPE --modes new new-fp32 new-no-skip old monai

# 1b. network seconds a window, warm, per precision (fp32, bf16, fp16, cuDNN autotuner), round-robin
stage windows_cuda 120 "$PY" benchmarks/inference.py windows --device "$DEVICE" --work "$WORK/wholebody" \
    --shape $SHAPE --rounds 3 --min-seconds 1.0

# 2. training-step speed, eager
stage speed_eager 60 "$PY" benchmarks/speed.py --model h2aseg --patches 128,128,64 --batch 2 --device "$DEVICE"

# 3. short training with and without AMP
stage synth_cohort 120 "$PY" -m h2aseg synth --out "$WORK/cohort" --cases 12 --seed 0
for amp in on off; do
    rm -rf "$WORK/train_amp_$amp"
    stage "train_amp_$amp" 80 "$PY" -m h2aseg train --data "$WORK/cohort" --layout autopet \
        --out "$WORK/train_amp_$amp" --amp "$amp" --device "$DEVICE" --patch 64 64 64 --epochs 3 \
        --steps-per-epoch 25 --val-every 3 --no-progress
    cp "$WORK/train_amp_$amp/metrics.csv" "$RAW/train_amp_${amp}_metrics.csv" 2>/dev/null
done

# 4. training-step speed, compiled (last: compilation time is the least predictable)
stage speed_compiled 120 "$PY" benchmarks/speed.py --model h2aseg --patches 128,128,64 --batch 2 \
    --device "$DEVICE" --compile inductor

"$PY" benchmarks/gpu_report.py "$RAW" > "$REPORT"
echo "wrote $REPORT" >&2
