"""The detection evaluator on a COCO-sized synthetic set: 5,000 images, 80 classes, ~28k
truths (3% crowd), ~100k detections of all sizes with tied scores (2 decimals). Prints one
JSON line per evaluator, measured in this run: the C evaluator (build/yololoss-eval
--time --repeat: the evaluation alone, one thread; warm = best of the runs after the first), the numpy port of pycocotools
(tests/reference/coco_reference.py) and, when PYCOCOTOOLS_PATH is set, pycocotools itself
(evaluate + accumulate + summarize), and with --daemon the Python drop-in
yololoss.metrics.COCOeval end to end through a yololossd it starts (the request, the
daemon's evaluation on its pool, the arrays back; best of --runs after the first), with its
time ratio to the numpy port and to pycocotools measured in this same run. Every
evaluator's 12 stats must be the same bits.

    /usr/bin/python3 bench/bench_eval.py [--cli build/yololoss-eval] [--images 5000]
"""

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import coco_reference as ref  # noqa: E402


def synthetic(n_img, seed=0):
    rng = np.random.default_rng(seed)
    cats = list(range(1, 81))
    weight = 1.0 / np.arange(1, 81) ** 0.7
    weight /= weight.sum()
    anns, dets = [], []
    for im in range(1, n_img + 1):
        n_gt = int(rng.poisson(5.6))
        boxes = []
        for _ in range(n_gt):
            w, h = np.exp(rng.uniform(np.log(4), np.log(400), 2))
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.choice(cats, p=weight))
            b = [round(float(x), 2), round(float(y), 2), round(float(w), 2), round(float(h), 2)]
            boxes.append((b, c))
            anns.append({"id": len(anns) + 1, "image_id": im, "category_id": c, "bbox": b,
                         "area": round(b[2] * b[3] * float(rng.uniform(0.5, 1.0)), 2),
                         "iscrowd": int(rng.random() < 0.03)})
        for b, c in boxes:  # about 2 detections near each truth
            for _ in range(int(rng.integers(1, 4))):
                j = rng.normal(0, 0.1, 4) * [b[2], b[3], b[2], b[3]]
                dets.append({"image_id": im, "category_id": c if rng.random() < 0.9 else int(rng.choice(cats)),
                             "bbox": [round(float(b[0] + j[0]), 2), round(float(b[1] + j[1]), 2),
                                      round(float(max(1.0, b[2] + j[2])), 2), round(float(max(1.0, b[3] + j[3])), 2)],
                             "score": round(float(rng.beta(4, 2)), 2)})
        while len(dets) < 20 * im:  # false positives of all sizes
            w, h = np.exp(rng.uniform(np.log(4), np.log(400), 2))
            dets.append({"image_id": im, "category_id": int(rng.choice(cats, p=weight)),
                         "bbox": [round(float(rng.uniform(0, 640 - w)), 2), round(float(rng.uniform(0, 480 - h)), 2),
                                  round(float(w), 2), round(float(h), 2)],
                         "score": round(float(rng.beta(1.5, 4)), 2)})
    gt = {"images": [{"id": i} for i in range(1, n_img + 1)], "annotations": anns,
          "categories": [{"id": c, "name": "class%d" % c} for c in cats]}
    return gt, dets


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "yololoss-eval"))
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-numpy", action="store_true")
    ap.add_argument("--daemon", help="yololossd to start for the Python drop-in's line")
    args = ap.parse_args()
    gt, dets = synthetic(args.images)
    n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
    ties = len(dets) - len(set(d["score"] for d in dets))
    with tempfile.TemporaryDirectory() as tmp:
        gp, dp = os.path.join(tmp, "gt.json"), os.path.join(tmp, "dt.json")
        with open(gp, "w") as f:
            json.dump(gt, f)
        with open(dp, "w") as f:
            json.dump(dets, f)
        r = subprocess.run([args.cli, "--gt", gp, "--dt", dp, "--time", "--repeat", str(args.runs),
                            "--dump", os.path.join(tmp, "out")], capture_output=True, text=True, check=True)
        runs = [json.loads(l) for l in r.stderr.strip().splitlines() if l.startswith("{")]
        c_stats = np.load(os.path.join(tmp, "out", "stats.npy"))
        c_arrays = {k: np.load(os.path.join(tmp, "out", k + ".npy")) for k in ("precision", "recall", "scores")}

    def same(stats, arrays):
        """stats and the three arrays, byte for byte"""
        return (np.asarray(stats, dtype=np.float64).tobytes() == c_stats.tobytes() and
                all(np.ascontiguousarray(arrays[k]).tobytes() == c_arrays[k].tobytes() for k in c_arrays))
    # the first run touches fresh buffers (page faults); the others reuse them, as a
    # service evaluating every step does. cpu_ms: the thread's CPU time (the wall time
    # includes waiting for a core on a loaded machine).
    warm = runs[1:] or runs
    times = [w["eval_ms"] for w in warm]
    base = dict(images=args.images, truths=len(gt["annotations"]), crowd=n_crowd,
                detections=len(dets), tied_scores=ties)
    emit(bench="eval_coco", evaluator="c", threads=1, ms=min(times),
         cpu_ms=min(w["eval_cpu_ms"] for w in warm), cold_ms=runs[0]["eval_ms"],
         cold_cpu_ms=runs[0]["eval_cpu_ms"], image_ms=min(w["image_ms"] for w in warm),
         accumulate_ms=min(w["accumulate_ms"] for w in warm), ap=float(c_stats[0]), **base)
    baseline = {}
    if not args.no_numpy:
        t0 = time.perf_counter()
        ev = ref.COCOevalRef(gt, dets)
        ev.evaluate()
        ev.accumulate()
        st = ev.summarize()
        ms = (time.perf_counter() - t0) * 1e3
        baseline["numpy_port"] = ms
        emit(bench="eval_coco", evaluator="numpy_port", ms=round(ms, 1),
             same_bits=same(st, ev.eval), speedup_c=round(ms / min(times), 1), **base)
    path = os.environ.get("PYCOCOTOOLS_PATH")
    if path:
        sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
        import test_eval_pycocotools as tp
        import pytest
        try:
            COCO, COCOeval = tp.load_pycocotools()
        except pytest.skip.Exception as e:
            emit(bench="eval_coco", evaluator="pycocotools", skipped=str(e))
            COCO = None
        if COCO is not None:
            t0 = time.perf_counter()
            ev, _ = tp.pycocotools_eval(COCO, COCOeval, gt, dets, {})
            ms = (time.perf_counter() - t0) * 1e3
            baseline["pycocotools"] = ms
            emit(bench="eval_coco", evaluator="pycocotools", ms=round(ms, 1),
                 same_bits=same(ev.stats, ev.eval),
                 speedup_c=round(ms / min(times), 1), **base)
    if args.daemon:
        dropin(args, gt, dets, same, baseline, base)


def dropin(args, gt, dets, same, baseline, base):
    """yololoss.metrics.COCOeval through a daemon started here (port 0, no history)."""
    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
    from yololoss import YoloLossClient
    from yololoss.metrics import COCOeval
    proc = subprocess.Popen([args.daemon, "--host", "127.0.0.1", "--port", "0", "--history",
                             "none"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            if "listening on " in line:
                url = line.split("listening on ")[1].split()[0]
                break
        if url is None:
            emit(bench="eval_coco", evaluator="python_dropin", skipped="the daemon did not start")
            return
        client = YoloLossClient(url, timeout=600)
        runs = []
        for _ in range(max(2, args.runs)):
            t0 = time.perf_counter()
            E = COCOeval(gt, dets, "bbox", client=client)
            E.evaluate()
            E.accumulate()
            with contextlib.redirect_stdout(io.StringIO()):
                E.summarize()
            runs.append((time.perf_counter() - t0) * 1e3)
        ms = min(runs[1:])
        ratios = {"speedup_" + k: round(v / ms, 1) for k, v in baseline.items()}
        emit(bench="eval_coco", evaluator="python_dropin", ms=round(ms, 1),
             cold_ms=round(runs[0], 1), same_bits=same(E.stats, E.eval), **ratios, **base)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
