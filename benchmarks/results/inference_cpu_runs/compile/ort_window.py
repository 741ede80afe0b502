"""Per window: PyTorch eager bf16 vs ONNX Runtime fp32, paper-width H2ASeg 128x128x64, round-robin."""

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

torch.set_num_threads(1)
from h2aseg.export.onnx_export import export_onnx  # noqa: E402 (after set_num_threads)
from h2aseg.models.registry import build_model  # noqa: E402 (after set_num_threads)

torch.manual_seed(0)
net = build_model("h2aseg", channels=[8, 16, 32, 64, 128], patch_size=(128, 128, 64), dropout=0.0).eval()
out = Path(tempfile.mkdtemp()) / "m.onnx"
t = time.perf_counter()
export_onnx(net, (128, 128, 64), out)
export_s = time.perf_counter() - t
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
ct = torch.randn(1, 1, 128, 128, 64)
pet = torch.randn(1, 1, 128, 128, 64)
feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), (ct, pet))}


def torch_call():
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        o = net(ct, pet)
    return (o[0] if isinstance(o, (list, tuple)) else o).float().numpy()


ref = torch_call()
got = sess.run(None, feeds)[0]
times = {"torch_bf16": [], "ort_fp32": []}
for _ in range(3):
    t = time.perf_counter()
    torch_call()
    times["torch_bf16"].append(round(time.perf_counter() - t, 2))
    t = time.perf_counter()
    sess.run(None, feeds)
    times["ort_fp32"].append(round(time.perf_counter() - t, 2))
med = {k: sorted(v)[1] for k, v in times.items()}
print(
    json.dumps(
        {
            "load": os.getloadavg(),
            "export_s": round(export_s, 1),
            "times": times,
            "ort_over_torch": round(med["ort_fp32"] / med["torch_bf16"], 2),
            "max_abs_logit_diff": float(np.abs(ref - got).max()),
        },
        indent=1,
    )
)
