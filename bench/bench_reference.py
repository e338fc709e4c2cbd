#!/usr/bin/env python3
"""bench_reference: the framework baseline for the core's figures, measured on this machine.

Times tests/reference/yolo_reference.py (numpy, float64, vectorised: keras-yolo3's loss
transcribed array op by array op, the way a framework port runs it) on the standard
workload of bench_core: B = 16, 416x416, 80 classes, 8 boxes per image, N(0, 1) logits,
loss and gradient. Prints one JSON line. Run it with Debian's /usr/bin/python3 (numpy).
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import yolo_reference as ref  # noqa: E402


def main():
    B, size, C, T, reps = 16, 416, 80, 8, 3
    rng = np.random.default_rng(1234)
    outs = [rng.standard_normal((B, g, g, 3 * (5 + C))).astype(np.float32)
            for g in (size // 32, size // 16, size // 8)]
    w = 8 + rng.random((B, T)) * size / 2
    h = 8 + rng.random((B, T)) * size / 2
    x0 = rng.random((B, T)) * (size - w)
    y0 = rng.random((B, T)) * (size - h)
    boxes = np.stack([x0, y0, x0 + w, y0 + h, rng.integers(0, C, (B, T))], axis=-1).astype(np.float32)
    anchors = np.array(ref.YOLOV3_ANCHORS, dtype=np.float64)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = ref.evaluate(outs, anchors, 0.5, boxes=boxes)
        times.append(time.perf_counter() - t0)
    sec = sorted(times)[len(times) // 2]
    print(json.dumps({"bench": "numpy_reference", "mode": "loss+grad", "dtype": "FP32",
                      "threads": 1, "batch": B, "size": size, "classes": C, "boxes": T,
                      "ms_per_batch": round(sec * 1e3, 1), "images_per_s": round(B / sec, 2),
                      "loss": float(res["loss"])}))


if __name__ == "__main__":
    main()
