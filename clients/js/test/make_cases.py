"""Random cases of the project's numpy reference (tests/reference) as JSON, for the
JavaScript tests: inputs as flat lists (bf16 and fp16 as their uint16 bit patterns) and the
reference's answer.  usage: make_cases.py SEED..."""

import json
import os
import sys

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_golden as mg  # noqa: E402
import yolo_reference as ref  # noqa: E402

WIRE = {"f4": "FP32", "f8": "FP64", "f2": "FP16", "bf16": "BF16"}


def tensor(a, dt):
    a = np.asarray(a)
    data = a.view(np.uint16) if dt in ("f2", "bf16") else a
    return {"dtype": WIRE[dt], "shape": list(a.shape), "data": data.reshape(-1).tolist()}


def case_json(seed):
    c = mg.random_case(seed)
    e = c["expect"]
    out = {"seed": seed, "model": "yolov3" if c["L"] == 3 else "yolov3-tiny",
           "anchors": c["anchors"].reshape(-1).tolist(), "thresh": c["thresh"],
           "outputs": [tensor(o, d) for o, d in zip(c["outputs"], c["out_dtypes"])],
           "expect": {"loss": e["loss"], "terms": list(e["terms"]),
                      "layer_terms": e["layer_terms"].tolist(),
                      "image_terms": e["image_terms"].tolist(), "stats": e["stats"].tolist(),
                      "grads": [g.reshape(-1).tolist() for g in e["grads"]]}}
    if "boxes" in c:
        out["boxes"] = tensor(c["boxes"], "f8" if c["boxes"].dtype == np.float64 else "f4")
        # the anchors keras assigns a truth to, per layer (flat indices), for the compact rows
        h0, w0 = np.asarray(c["outputs"][0]).shape[1:3]
        o0 = np.asarray(c["outputs"][0])
        C = (o0.shape[3] // 3 if o0.ndim == 4 else o0.shape[4]) - 5
        yt = ref.preprocess_true_boxes(c["boxes"], (32 * h0, 32 * w0), c["anchors"], C)
        out["truth"] = [np.flatnonzero(y[..., 4]).tolist() for y in yt]
    else:
        out["y_true"] = [tensor(y, d) for y, d in zip(c["y_true"], c["y_true_dtypes"])]
    return out


if __name__ == "__main__":
    json.dump([case_json(int(s)) for s in sys.argv[1:]], sys.stdout)
