import dataclasses
import json
import time
from pathlib import Path

import torch

from h2aseg.data.layouts import discover_cases
from h2aseg.data.preprocess import preprocess_case
from h2aseg.inference.core import InferenceStats, predict_probabilities
from h2aseg.inference.predictor import PredictOptions, inference_settings, load_trained_model

loaded = load_trained_model("/tmp/h13/run_small")
c = discover_cases(Path("/tmp/h13/bench/study"), "autopet", require_labels=True).cases[0]
d = preprocess_case(c, loaded.preprocess)
base = inference_settings(loaded, PredictOptions())
out = {}
probs = {}
for name, s in (("skip", base), ("no-skip", dataclasses.replace(base, skip_suv=None))):
    st = InferenceStats()
    t = time.perf_counter()
    probs[name] = predict_probabilities(loaded.model, d["ct"], d["pet"], s, st)[0].float()
    out[name] = {
        "seconds": round(time.perf_counter() - t, 1),
        "windows_run": st.windows_run,
        "windows": st.windows,
    }
diff = (probs["skip"] - probs["no-skip"]).abs()
suv = torch.from_numpy(d["pet"][0]) * 10
out["max_abs_prob_diff"] = round(float(diff.max()), 4)
out["voxels_prob_diff_over_0.01"] = int((diff > 0.01).sum())
out["max_prob_no_skip"] = round(float(probs["no-skip"].max()), 4)
out["max_prob_no_skip_where_suv_below_1"] = round(float(probs["no-skip"][suv < 1.0].max()), 4)
out["labels_differ_voxels"] = int(((probs["skip"] > 0.5) != (probs["no-skip"] > 0.5)).sum())
out["label_voxels_no_skip"] = int((probs["no-skip"] > 0.5).sum())
lab = torch.from_numpy(d["label"][0] > 0)
out["max_prob_no_skip_in_lesion"] = round(float(probs["no-skip"][lab].max()), 4) if lab.any() else None
print(json.dumps(out, indent=1))
