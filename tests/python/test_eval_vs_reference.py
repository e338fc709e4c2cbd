"""The C evaluator (core/yleval.h, through build/yololoss-eval --dump) against the
independent numpy ports of pycocotools' COCOeval and py-faster-rcnn's voc_eval
(tests/reference/coco_reference.py) on randomised sets: the float64 arrays must be the
same bytes, not close.

    YL_EVAL_CLI=build/yololoss-eval /usr/bin/python3 -m pytest -q tests/python/test_eval_vs_reference.py

The sets exercise crowd truths, tied scores, tied IoUs (duplicate truth boxes on a coarse
grid), empty categories, images without truths or without detections, more detections
than maxDets, custom maxDets / areaRng / catIds / imgIds and useCats=0.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import coco_reference as ref  # noqa: E402

CLI = os.environ.get("YL_EVAL_CLI", os.path.join(ROOT, "build", "yololoss-eval"))
if not os.path.isabs(CLI):
    CLI = os.path.join(ROOT, CLI)
BASE_SEED = int(os.environ.get("YL_TEST_SEED", "2000"))
needs_cli = pytest.mark.skipif(not os.access(CLI, os.X_OK),
                               reason="%s not built (make build/yololoss-eval)" % CLI)


def random_set(seed, n_img=12, n_cat=5, crowd=0.1, grid=4.0):
    """Truths and results in COCO's JSON form. Boxes lie on a grid of `grid` pixels and
    are often copied, so equal IoUs and equal scores are common."""
    rng = np.random.default_rng(seed)
    img_ids = sorted(rng.choice(np.arange(1, 1000), n_img, replace=False).tolist())
    cat_ids = sorted(rng.choice(np.arange(1, 100), n_cat, replace=False).tolist())
    anns, dets = [], []
    aid = int(rng.integers(0, 3))  # sometimes a truth of id 0
    for im in img_ids:
        kind = rng.integers(0, 6)  # 0: no truths, 1: no detections
        n_gt = 0 if kind == 0 else int(rng.integers(0, 9))
        boxes = []
        for _ in range(n_gt):
            if boxes and rng.random() < 0.25:
                b = list(boxes[rng.integers(0, len(boxes))])  # a duplicate: equal IoUs
            else:
                w = float(grid * rng.integers(1, 40))
                h = float(grid * rng.integers(1, 40))
                b = [float(grid * rng.integers(0, 60)), float(grid * rng.integers(0, 60)), w, h]
            boxes.append(b)
            c = int(rng.choice(cat_ids[:-1]))  # the last category never has a truth
            a = {"id": aid, "image_id": im, "category_id": c, "bbox": b,
                 "iscrowd": int(rng.random() < crowd)}
            if rng.random() < 0.8:
                a["area"] = float(b[2] * b[3] * rng.choice([1.0, 0.5, 0.9]))
            if rng.random() < 0.1:
                a["ignore"] = 1  # pycocotools overwrites it from iscrowd
            aid += 1
            anns.append(a)
        n_dt = 0 if kind == 1 else int(rng.integers(0, 25))
        for _ in range(n_dt):
            c = int(rng.choice(cat_ids))
            if boxes and rng.random() < 0.6:
                j = int(rng.integers(0, len(boxes)))
                b = list(boxes[j])
                if rng.random() < 0.7:
                    c = anns[len(anns) - len(boxes) + j]["category_id"]
                b = [b[0] + grid * rng.integers(-2, 3), b[1] + grid * rng.integers(-2, 3),
                     max(0.0, b[2] + grid * rng.integers(-2, 3)), max(0.0, b[3] + grid * rng.integers(-2, 3))]
            else:
                b = [float(grid * rng.integers(0, 60)), float(grid * rng.integers(0, 60)),
                     float(grid * rng.integers(0, 40)), float(grid * rng.integers(1, 40))]
            s = float(rng.integers(0, 11)) / 10 if rng.random() < 0.5 else float(rng.random())
            dets.append({"image_id": im, "category_id": c,
                         "bbox": [float(v) for v in b], "score": s})
    rng.shuffle(dets)
    gt = {"images": [{"id": i} for i in img_ids], "annotations": anns,
          "categories": [{"id": c, "name": "c%d" % c} for c in cat_ids]}
    return gt, dets


def run_cli(tmp_path, gt, dets, args=()):
    g, d, out = tmp_path / "gt.json", tmp_path / "dt.json", tmp_path / "out"
    g.write_text(json.dumps(gt))
    d.write_text(json.dumps(dets))
    r = subprocess.run([CLI, "--gt", str(g), "--dt", str(d), "--dump", str(out), *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout, out


def same_bytes(name, a, b):
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    assert a.shape == b.shape, (name, a.shape, b.shape)
    if a.tobytes() != b.tobytes():
        bad = np.argwhere(a.view(np.uint64) != b.view(np.uint64))
        i = tuple(bad[0])
        raise AssertionError("%s differs at %d places, first %s: C %r numpy %r"
                             % (name, len(bad), i, a[i], b[i]))


def reference(gt, dets, cfg):
    p = ref.Params()
    p.imgIds = sorted(i["id"] for i in gt["images"])
    p.catIds = sorted(c["id"] for c in gt["categories"])
    for k, v in cfg.items():
        setattr(p, k, v)
    ev = ref.COCOevalRef(gt, dets, p)
    ev.evaluate()
    ev.accumulate()
    stats = ev.summarize() if len(p.maxDets) >= 3 else None
    return ev, stats


def cli_args(cfg):
    a = []
    if "iouThrs" in cfg:
        a += ["--iou-thrs", ",".join(repr(float(v)) for v in cfg["iouThrs"])]
    if "recThrs" in cfg:
        a += ["--rec-thrs", ",".join(repr(float(v)) for v in cfg["recThrs"])]
    if "maxDets" in cfg:
        a += ["--max-dets", ",".join(str(v) for v in cfg["maxDets"])]
    if "areaRng" in cfg:
        a += ["--area-rng", ",".join("%r:%r" % (float(lo), float(hi)) for lo, hi in cfg["areaRng"])]
    if "areaRngLbl" in cfg:
        a += ["--area-lbl", ",".join(cfg["areaRngLbl"])]
    if "imgIds" in cfg:
        a += ["--img-ids", ",".join(str(v) for v in cfg["imgIds"])]
    if "catIds" in cfg:
        a += ["--cat-ids", ",".join(str(v) for v in cfg["catIds"])]
    if cfg.get("useCats", 1) == 0:
        a += ["--no-cats"]
    return a


def configs(gt, seed):
    rng = np.random.default_rng(seed + 7)
    imgs = sorted(i["id"] for i in gt["images"])
    cats = sorted(c["id"] for c in gt["categories"])
    yield {}
    yield {"maxDets": [1, 3, 5]}
    yield {"maxDets": [2, 2, 7, 40]}
    yield {"areaRng": [[0, 1e10], [0, 400.0], [400.0, 1600.0], [1600.0, 1e10]]}
    yield {"areaRng": [[0, 1e10], [100.0, 2500.0]], "areaRngLbl": ["all", "small"]}
    yield {"imgIds": sorted(rng.choice(imgs, max(1, len(imgs) // 2), replace=False).tolist())}
    yield {"catIds": sorted(rng.choice(cats, 2, replace=False).tolist())}
    yield {"useCats": 0}
    yield {"useCats": 0, "catIds": cats[1:], "maxDets": [1, 4, 9]}
    yield {"iouThrs": np.linspace(0.3, 0.9, 7), "recThrs": np.linspace(0.0, 1.0, 21)}


SEEDS = [BASE_SEED + i for i in range(6)]


@needs_cli
@pytest.mark.parametrize("seed", SEEDS)
def test_coco_equals_numpy_port(tmp_path, seed):
    gt, dets = random_set(seed)
    for ci, cfg in enumerate(configs(gt, seed)):
        ev, stats = reference(json.loads(json.dumps(gt)), json.loads(json.dumps(dets)), dict(cfg))
        sub = tmp_path / ("c%d" % ci)
        sub.mkdir()
        out, d = run_cli(sub, gt, dets, cli_args(cfg))
        for name in ("precision", "recall", "scores"):
            same_bytes("%s (config %d %s)" % (name, ci, cfg), np.load(d / (name + ".npy")), ev.eval[name])
        if stats is not None:
            same_bytes("stats (config %d)" % ci, np.load(d / "stats.npy"), stats)
            lines = [l for l in out.splitlines() if l]
            assert len(lines) == 12


@needs_cli
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["voc07", "voc"])
def test_voc_equals_numpy_port(tmp_path, seed, mode):
    gt, dets = random_set(seed, crowd=0.0)
    rng = np.random.default_rng(seed)
    for a in gt["annotations"]:
        a["difficult"] = int(rng.random() < 0.15)
    imgs = sorted(i["id"] for i in gt["images"])
    cats = sorted(c["id"] for c in gt["categories"])
    for thr in ([0.5], [0.5, 0.3, 0.7]):
        aps = [ref.voc_from_coco(gt, dets, imgs, cats, t, mode == "voc07") for t in thr]
        sub = tmp_path / ("t%d" % len(thr))
        sub.mkdir()
        out, d = run_cli(sub, gt, dets, ["--" + mode, "--iou-thrs", ",".join(map(repr, thr))])
        same_bytes("ap %s %s" % (mode, thr), np.load(d / "ap.npy"), np.array(aps))
        if len(thr) == 1:
            with np.errstate(invalid="ignore"):
                assert out.splitlines()[-1] == "Mean AP = {:.4f}".format(np.mean(aps[0]))


@needs_cli
def test_summarize_sums_as_numpy_beyond_its_buffer(tmp_path):
    """np.mean over more than 8192 values sums chunk by chunk (numpy's buffer): with 14
    categories AP's selection holds 10 * 101 * 13 values."""
    gt, dets = random_set(BASE_SEED + 99, n_img=40, n_cat=14)
    ev, stats = reference(json.loads(json.dumps(gt)), json.loads(json.dumps(dets)), {})
    assert (ev.eval["precision"][:, :, :, 0, 2] > -1).sum() > 8192
    out, d = run_cli(tmp_path, gt, dets)
    same_bytes("stats", np.load(d / "stats.npy"), stats)
    same_bytes("precision", np.load(d / "precision.npy"), ev.eval["precision"])
