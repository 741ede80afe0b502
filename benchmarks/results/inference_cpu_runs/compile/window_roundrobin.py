"""Per-window time of paper-width H2ASeg at 128x128x64: eager vs torch.compile (inductor), bf16 autocast,
round-robin in one process (ratio robust to load). Prints JSON."""

import json
import os
import subprocess
import time

import torch

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
from h2aseg.models.registry import build_model  # noqa: E402 (after set_num_threads)

torch.manual_seed(0)
net = build_model("h2aseg", channels=[8, 16, 32, 64, 128], patch_size=(128, 128, 64), dropout=0.0).eval()
ct = torch.randn(1, 1, 128, 128, 64)
pet = torch.randn(1, 1, 128, 128, 64)


def call(m):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(ct, pet)
    return (out[0] if isinstance(out, (list, tuple)) else out).float()


t = time.perf_counter()
ref = call(net)
first_eager = time.perf_counter() - t
compiled = torch.compile(net, backend="inductor")
t = time.perf_counter()
got = call(compiled)
compile_s = time.perf_counter() - t
diff = float((torch.sigmoid(ref) - torch.sigmoid(got)).abs().max())
times = {"eager": [], "compiled": []}
for _ in range(int(os.environ.get("ROUNDS", "3"))):
    for name, m in (("eager", net), ("compiled", compiled)):
        t = time.perf_counter()
        call(m)
        times[name].append(round(time.perf_counter() - t, 2))
lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in lscpu.split()]
print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "flags": flags,
            "load": os.getloadavg(),
            "first_eager_s": round(first_eager, 1),
            "compile_and_first_call_s": round(compile_s, 1),
            "max_abs_prob_diff": diff,
            "seconds_per_window": times,
            "ratio_median": round(
                sorted(times["eager"])[len(times["eager"]) // 2]
                / sorted(times["compiled"])[len(times["compiled"]) // 2],
                3,
            ),
        },
        indent=1,
    )
)
