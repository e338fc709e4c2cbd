#!/usr/bin/env python3
"""Sends real batches to a running yololossd (a container, or nginx in front of several)
and checks every answer against the project's independent numpy reference
(tests/reference), with the tolerances of the client's own tests.

    check_service.py URL [--run NAME] [--cases N] [--big B] [--step0 S]

Random cases of tests/reference/make_golden.py (both models, every dtype, boxes and dense
truth, 4-D and 5-D) alternate binary / JSON / gzip; then one realistic batch: yolov3 at
416x416, 80 classes, B images, with gradients. Requests carry run=NAME and step=S, S+1, ...
Prints one JSON line: {"requests": n, "images": n, "run": NAME, "last_step": S}.
Exit status 0 when every answer matched.
"""

import argparse
import json
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

import numpy as np  # noqa: E402

import make_golden as mg  # noqa: E402
import yolo_reference as ref  # noqa: E402
from yololoss import BF16, STAT_NAMES, TERM_NAMES, YoloLossClient  # noqa: E402


def close(name, got, want, exact=None):
    """1e-6 relative (the core against the reference) plus the float32 of the wire."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError("%s: shape %s, want %s" % (name, got.shape, want.shape))
    d = np.abs(got - want)
    bad = ~((d <= 1e-12) | (d <= 1.2e-6 * np.abs(want)))
    if exact is not None:
        bad = np.where(exact, got != want, bad)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError("%s%s: got %r, want %r" % (name, list(i), got[i], want[i]))


def check(res, expect, L, grads):
    close("loss", [res.loss], [expect["loss"]])
    close("terms", [res.terms[k] for k in TERM_NAMES], expect["terms"])
    close("layer_terms", res.layer_terms, expect["layer_terms"])
    close("image_terms", res.image_terms, expect["image_terms"])
    stats = np.stack([res.stats[k] for k in STAT_NAMES], axis=1)
    exact = np.zeros((L, 8), bool)
    exact[:, [0, 7]] = True
    close("stats", stats, expect["stats"], exact)
    if grads:
        for l in range(L):
            got, want = res.grads[l], expect["grads"][l]
            if got.shape != want.shape or not np.all(np.abs(got - want)
                                                     <= 1e-6 + 1.2e-7 * np.abs(want)):
                raise AssertionError("grad_%d differs" % l)


def case_args(case):
    """compute() arguments for a make_golden case (bf16 tensors wrapped as BF16): the
    outputs, and the truth, anchors and threshold as keywords."""
    outs = [BF16(o) if d == "bf16" else o for o, d in zip(case["outputs"], case["out_dtypes"])]
    if "boxes" in case:
        truth = {"boxes": case["boxes"]}
    else:
        truth = {"y_true": [BF16(y) if d == "bf16" else y
                            for y, d in zip(case["y_true"], case["y_true_dtypes"])]}
    return outs, dict(truth, anchors=case["anchors"], ignore_thresh=case["thresh"])


def wait_ready(url, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("check_service: %s not ready after %ds" % (url, seconds))
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--run", default="docker-check")
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--big", type=int, default=4, help="images in the yolov3 416x416 batch")
    ap.add_argument("--step0", type=int, default=0)
    ap.add_argument("--seed", type=int, default=9100)
    a = ap.parse_args()
    wait_ready(a.url, 30)

    step, images, modes = a.step0, 0, [(True, None), (False, None), (True, "gzip")]
    for i in range(a.cases):
        case = mg.random_case(a.seed + i)
        model = "yolov3" if case["L"] == 3 else "yolov3-tiny"
        outs, kw = case_args(case)
        binary, compress = modes[i % len(modes)]
        with YoloLossClient(a.url, model=model) as c:
            res = c.compute(outs, grads=True, binary=binary, compress=compress,
                            run=a.run, step=step, **kw)
        try:
            check(res, case["expect"], case["L"], True)
        except AssertionError as e:
            raise SystemExit("check_service: case %d (seed %d): %s" % (i, a.seed + i, e))
        step += 1
        images += case["outputs"][0].shape[0]

    if a.big:
        rng = np.random.default_rng(a.seed)
        boxes = mg.random_boxes(rng, a.big, 20, (416, 416), ref.YOLOV3_ANCHORS, 80)
        case = mg.make_case(rng, "full", 13, 13, 80, a.big, ref.YOLOV3_ANCHORS, 0.5,
                            out_dtypes="f4", boxes=boxes)
        with YoloLossClient(a.url, model="yolov3") as c:
            res = c.compute(case["outputs"], boxes=case["boxes"], grads=True,
                            run=a.run, step=step)
        try:
            check(res, case["expect"], 3, True)
        except AssertionError as e:
            raise SystemExit("check_service: yolov3 416x416 batch of %d: %s" % (a.big, e))
        print("check_service: yolov3 416x416 x%d: loss %.6g (reference %.6g)"
              % (a.big, res.loss, case["expect"]["loss"]), file=sys.stderr)
        step += 1
        images += a.big
    print(json.dumps({"requests": step - a.step0, "images": images, "run": a.run,
                      "last_step": step - 1}))


if __name__ == "__main__":
    main()
