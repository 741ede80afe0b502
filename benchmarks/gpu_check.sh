#!/usr/bin/env bash
# GPU check (issue 13): run on a machine with one CUDA GPU from the repository root, e.g.
#     bash benchmarks/gpu_check.sh            # about 6-8 minutes on an H100
# 1. training-step speed of paper-width H2ASeg at 128x128x64, batch 2, eager and torch.compile'd (speed.py);
# 2. the whole-body prediction (400x400x326 synthetic study): `h2aseg predict` defaults (AMP: bf16 on
#    Ampere and later) against the former predict path and MONAI's plain sliding window (inference.py speed);
# 3. a short `h2aseg train --amp on` against `--amp off` on a small synthetic cohort (epoch seconds, val Dice).
# Writes benchmarks/results/gpu.md (with the device name) and the raw outputs under benchmarks/results/gpu_runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
H2ASEG=${H2ASEG:-.venv/bin/h2aseg}
WORK=${WORK:-/tmp/h2aseg_gpu_check}
RAW=benchmarks/results/gpu_runs
mkdir -p "$WORK" "$RAW"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run this on a GPU machine')"
DEVICE=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RAW/nvidia_smi.csv" || true
echo "device: $DEVICE"

# 1. speed benchmark, eager and compiled
timeout 300 "$PY" benchmarks/speed.py --model h2aseg --patches 128,128,64 --batch 2 --device cuda \
    > "$RAW/speed_eager.json"
timeout 600 "$PY" benchmarks/speed.py --model h2aseg --patches 128,128,64 --batch 2 --device cuda \
    --compile inductor > "$RAW/speed_compiled.json"

# 2. whole-body prediction, side by side (every path on the GPU)
timeout 900 "$PY" benchmarks/inference.py speed --work "$WORK/wholebody" --device cuda \
    --modes new new-fp32 new-no-skip old monai > "$RAW/inference_wholebody.json"

# 3. short training with and without AMP
"$H2ASEG" synth --out "$WORK/cohort" --cases 12 --seed 0 > /dev/null
for amp in on off; do
    rm -rf "$WORK/train_amp_$amp"
    timeout 600 "$H2ASEG" train --data "$WORK/cohort" --layout autopet --out "$WORK/train_amp_$amp" --amp "$amp" \
        --device cuda --patch 64 64 64 --epochs 3 --steps-per-epoch 25 --val-every 3 --no-progress \
        > "$RAW/train_amp_$amp.json" 2> "$RAW/train_amp_$amp.log"
    cp "$WORK/train_amp_$amp/metrics.csv" "$RAW/train_amp_${amp}_metrics.csv"
done

"$PY" - "$DEVICE" "$RAW" <<'EOF' > benchmarks/results/gpu.md
import csv, json, sys
from pathlib import Path
device, raw = sys.argv[1], Path(sys.argv[2])
def load(name):
    return json.loads((raw / name).read_text())
print(f"# GPU check on {device}\n")
print("Made by `bash benchmarks/gpu_check.sh`; raw outputs in `benchmarks/results/gpu_runs/`.\n")
print("## Training step, paper-width H2ASeg, 128×128×64, batch 2 (`benchmarks/speed.py`)\n")
for name in ("speed_eager.json", "speed_compiled.json"):
    print(f"- {name}: `{json.dumps(load(name))[:600]}`")
wb = load("inference_wholebody.json")
print("\n## Whole-body prediction, 400×400×326 at 2.04×2.04×3 mm (`benchmarks/inference.py speed --device cuda`)\n")
print("| path | wall (s) | peak RSS (GB) | stages |\n|---|---|---|---|")
for mode, run in wb["runs"].items():
    print(f"| {mode} | {run['wall_s']} | {run['peak_rss_gb']} | {' '.join(run['stdout'])[:200]} |")
print(f"\nSpeed-up of the default against each: {wb.get('speedup_vs')}\n")
print("## Short training, `h2aseg train --amp on` against `--amp off` (patch 64³, 3 × 25 steps)\n")
print("| amp | epoch seconds | last val Dice |\n|---|---|---|")
for amp in ("on", "off"):
    rows = list(csv.DictReader((raw / f"train_amp_{amp}_metrics.csv").open()))
    dice = next((r["val_dice"] for r in reversed(rows) if r["val_dice"]), "")
    print(f"| {amp} | {', '.join(r['epoch_seconds'] for r in rows)} | {dice} |")
EOF
echo "wrote benchmarks/results/gpu.md"
