"""The C decode + NMS (core/yldecode.h, through build/eval_case --decode) against the
independent numpy port of keras-yolo3's yolo_eval and tensorflow's NMS
(tests/reference/yolo_eval_reference.py) on random heads made at test time: boxes, scores
and classes must be identical (float64 bit for bit, same order).

    YL_EVAL_CASE=build/eval_case /usr/bin/python3 -m pytest -q tests/python/test_decode_vs_reference.py

The heads are drawn from a few values only, so that equal scores (the NMS tie rule),
overlapping boxes (suppression) and classes with more than max_boxes candidates all occur.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import yolo_eval_reference as ref  # noqa: E402

EVAL = os.environ.get("YL_EVAL_CASE", os.path.join(ROOT, "build", "eval_case"))
if not os.path.isabs(EVAL):
    EVAL = os.path.join(ROOT, EVAL)
BASE_SEED = int(os.environ.get("YL_TEST_SEED", "1000"))
SEEDS = [BASE_SEED + i for i in range(30)]

needs_core = pytest.mark.skipif(not os.access(EVAL, os.X_OK),
                                reason="%s not built (make build/eval_case)" % EVAL)

ANCHORS9 = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119],
                     [116, 90], [156, 198], [373, 326]], dtype=np.float64) / 6.5
ANCHORS6 = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]],
                    dtype=np.float64) / 6.5


def random_case(seed):
    rng = np.random.default_rng(seed)
    n_anchors = int(rng.choice([9, 6]))
    L = n_anchors // 3
    anchors = ANCHORS9 if n_anchors == 9 else ANCHORS6
    B = int(rng.integers(1, 4))
    C = int(rng.integers(1, 6))
    gh, gw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    dtype = rng.choice([np.float32, np.float64, np.float16])
    five_d = bool(rng.integers(0, 2))
    quant = rng.choice([0.5, 0.25, 0.0])  # 0: continuous values, no ties
    outputs = []
    for l in range(L):
        H, W = gh * 2 ** l, gw * 2 ** l
        x = np.empty((B, H, W, 3, 5 + C))
        x[..., 0:2] = rng.normal(0, 1, (B, H, W, 3, 2))
        x[..., 2:4] = rng.normal(0, 0.7, (B, H, W, 3, 2))
        x[..., 4] = rng.normal(1.0, 1.5, (B, H, W, 3))
        x[..., 5:] = rng.normal(0.8, 1.5, (B, H, W, 3, C))
        if quant:
            x = np.round(x / quant) * quant
        x = x.astype(dtype)
        outputs.append(x if five_d else x.reshape(B, H, W, 3 * (5 + C)))
    in_h, in_w = 32 * gh, 32 * gw
    boxes = np.zeros((B, 1, 5), np.float32)
    boxes[:, 0] = [1, 1, in_w - 1, in_h - 1, 0]
    params = dict(
        score=float(rng.choice([0.6, 0.3, 0.05, 0.0])),
        iou=float(rng.choice([0.5, 0.3, 0.7, 0.0, 1.0])),
        max_boxes=int(rng.choice([20, 3, 1, 0, 1000])),
        image=None if rng.integers(0, 2) else (int(rng.integers(20, 700)),
                                               int(rng.integers(20, 700))))
    return dict(anchors=anchors, outputs=outputs, boxes=boxes, C=C, params=params)


def write_case(d, case):
    os.makedirs(d)
    for l, o in enumerate(case["outputs"]):
        np.save(os.path.join(d, "output_%d.npy" % l), o)
    np.save(os.path.join(d, "boxes.npy"), case["boxes"])
    with open(os.path.join(d, "config.txt"), "w") as f:
        f.write("anchors " + " ".join("%.17g" % v for v in case["anchors"].reshape(-1)) + "\n")
        f.write("ignore_thresh 0.5\n")


def run_decode(d, out, params):
    arg = "%.17g,%.17g,%d" % (params["score"], params["iou"], params["max_boxes"])
    if params["image"] is not None:
        arg += ",%d,%d" % params["image"]
    p = subprocess.run([EVAL, d, out, "--decode", arg], capture_output=True, text=True,
                       timeout=120)
    return p


def reference(case):
    p = case["params"]
    per_image = []
    B = case["outputs"][0].shape[0]
    for b in range(B):
        outs = [o[b].astype(np.float64) for o in case["outputs"]]
        per_image.append(ref.yolo_eval(outs, case["anchors"], case["C"], p["image"],
                                       max_boxes=p["max_boxes"], score_threshold=p["score"],
                                       iou_threshold=p["iou"]))
    return per_image


def assert_identical(name, got, want):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, "%s: shape %s, want %s" % (name, got.shape, want.shape)
    bad = ~((got == want) | (np.isnan(got) & np.isnan(want)))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError("%s%s: got %.17g, want %.17g (%d differ)" % (
            name, list(i), got[i], want[i], int(bad.sum())))


@needs_core
@pytest.mark.parametrize("seed", SEEDS)
def test_decode_matches_yolo_eval(seed, tmp_path):
    case = random_case(seed)
    d, out = str(tmp_path / "case"), str(tmp_path / "out")
    write_case(d, case)
    p = run_decode(d, out, case["params"])
    assert p.returncode == 0, p.stderr
    want = reference(case)
    img = np.load(os.path.join(out, "det_image.npy"))
    cls = np.load(os.path.join(out, "det_class.npy"))
    score = np.load(os.path.join(out, "det_score.npy"))
    box = np.load(os.path.join(out, "det_box.npy")).reshape(-1, 4)
    for b, (wb, ws, wc) in enumerate(want):
        sel = img == b
        label = "seed %d image %d %s" % (seed, b, case["params"])
        assert_identical(label + " classes", cls[sel], wc)
        assert_identical(label + " scores", score[sel], ws)
        assert_identical(label + " boxes", box[sel], wb)


def test_cases_exercise_ties_suppression_and_max_boxes():
    """The random cases above are only worth something if they reach the rules."""
    ties = suppressed = capped = 0
    for seed in SEEDS:
        case = random_case(seed)
        p = case["params"]
        for b in range(case["outputs"][0].shape[0]):
            outs = [o[b].astype(np.float64) for o in case["outputs"]]
            input_shape = np.array(outs[0].shape[0:2], np.float64) * 32
            mask = ref.FULL_MASK if len(outs) == 3 else ref.TINY_MASK
            scores = np.concatenate([ref.yolo_boxes_and_scores(
                o, case["anchors"][mask[l]], case["C"], input_shape,
                input_shape if p["image"] is None else p["image"])[1]
                for l, o in enumerate(outs)])
            for c in range(case["C"]):
                s = scores[:, c][scores[:, c] >= p["score"]]
                ties += len(s) - len(np.unique(s))
                _, _, wc = ref.yolo_eval(outs, case["anchors"], case["C"], p["image"],
                                         p["max_boxes"], p["score"], p["iou"])
                kept = int((wc == c).sum())
                capped += len(s) > p["max_boxes"] and kept == p["max_boxes"]
                suppressed += kept < min(len(s), p["max_boxes"])
    assert ties > 0 and suppressed > 0 and capped > 0, (ties, suppressed, capped)


@needs_core
def test_tie_goes_to_the_lower_index(tmp_path):
    """Anchors 0 and 1 of one cell, 8x8 and 9x9 pixels (IoU 0.79), with equal scores:
    tensorflow's NMS keeps the lower index (anchor 0, the 8x8 box) and suppresses the other.
    The expected box is written out by hand, so the rule is checked on both sides."""
    C = 1
    x = np.full((1, 1, 1, 3, 5 + C), -20.0)
    x[0, 0, 0, 0] = [0, 0, 0, 0, 3, 3]
    x[0, 0, 0, 1] = [0, 0, 0, 0, 3, 3]
    small = np.full((1, 2, 2, 3, 5 + C), -20.0)
    anchors = np.array([[4, 4], [5, 5], [6, 6], [8, 8], [9, 9], [7, 7]], np.float64)
    case = dict(anchors=anchors, outputs=[x, small],
                boxes=np.array([[[1, 1, 30, 30, 0]]], np.float32), C=C,
                params=dict(score=0.5, iou=0.5, max_boxes=20, image=None))
    d, out = str(tmp_path / "c"), str(tmp_path / "o")
    write_case(d, case)
    p = run_decode(d, out, case["params"])
    assert p.returncode == 0, p.stderr
    wb, _, wc = ref.yolo_eval([x[0], small[0]], anchors, C, None, 20, 0.5, 0.5)
    assert_identical("reference box", wb, [[12, 12, 20, 20]])
    assert_identical("core box", np.load(os.path.join(out, "det_box.npy")), [[12, 12, 20, 20]])


@needs_core
def test_bad_parameters_and_values_are_refused(tmp_path):
    case = random_case(BASE_SEED)
    d = str(tmp_path / "case")
    write_case(d, case)
    for i, (params, words) in enumerate([
            (dict(case["params"], iou=1.5), "iou_threshold"),
            (dict(case["params"], score=float("nan")), "score_threshold"),
            (dict(case["params"], max_boxes=-1), "max_boxes"),
            (dict(case["params"], image=(0, 10)), "image size")]):
        p = run_decode(d, str(tmp_path / ("o%d" % i)), params)
        assert p.returncode == 2 and words in p.stderr, p.stderr
    o = case["outputs"][0].copy()
    o.reshape(-1)[4] = np.nan  # t_o of the first anchor of image 0
    case["outputs"][0] = o
    d2 = str(tmp_path / "nan")
    write_case(d2, case)
    p = run_decode(d2, str(tmp_path / "onan"), case["params"])
    assert p.returncode == 2 and "output_0[0][0][0][" in p.stderr and "NaN" in p.stderr, p.stderr
