#!/usr/bin/python3
"""Write the golden cases of the C core into tests/golden/<case>/ from the float64
reference (yolo_reference.py). Deterministic: same files on every run.

    /usr/bin/python3 tests/reference/make_golden.py [OUT_DIR]     (default tests/golden)
    /usr/bin/python3 tests/reference/make_golden.py --full-size   (tests/reference/full_size.json)

Full-size cases (13/26/52 grids, C = 80) are too large to store: full_size.json keeps
their parameters and seeds with a summary of the reference's answer; tests/python
regenerates the data, checks the summary (so the generator and the reference have not
drifted) and compares the core with the regenerated expectations element by element.

Case directory format (read by tests/core/test_golden.c and build/eval_case):
  config.txt          `anchors w h w h ...` (%.17g), `ignore_thresh X`, and `bf16 NAME`
                      for each tensor stored as bf16 bit patterns ('<u2').
  output_<l>.npy      raw outputs, <f4 <f2 <f8 or <u2 (bf16); 4-D or 5-D.
  boxes.npy           (B, T, 5) <f4 or <f8, or instead
  y_true_<l>.npy      dense ground truth, 4-D or 5-D, any float dtype.
  expect_loss.npy (1,), expect_terms.npy (4,), expect_layer_terms.npy (L,4),
  expect_image_terms.npy (B,4), expect_stats.npy (L,8), expect_grad_<l>.npy (shape of
  output_<l>), all float64; boxes cases also expect_y_true_<l>.npy float32 (B,H,W,3,5+C).
  Error cases: expect_error.txt `YL_XXX <substring of the message>` instead.

The module also exports the random case generator used by tests/python.
"""

import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yolo_reference as ref  # noqa: E402

DTYPES = ("f4", "f2", "bf16", "f8")


# ------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------

def grids(num_layers, H0, W0):
    return [(H0 << l, W0 << l) for l in range(num_layers)]


def logit(p):
    return np.log(p) - np.log1p(-p)


def box_ok(box, input_hw, anchors, tie_ok=False):
    """True when a valid row passes the policy and its best anchor is not a near tie."""
    tb = np.asarray(box[:4], dtype=np.float32)
    w, h = tb[2] - tb[0], tb[3] - tb[1]
    if not (w > 0 and h > 0):
        return False
    cx, cy = (tb[0] + tb[2]) // 2, (tb[1] + tb[3]) // 2
    if not (0 <= cx < input_hw[1] and 0 <= cy < input_hw[0]):
        return False
    if tie_ok:
        return True
    _, iou = ref.best_anchors(np.array([[w, h]], dtype=np.float32), anchors)
    top = np.sort(iou[0])[::-1]
    return top[0] - top[1] > 1e-6


def random_box(rng, input_hw, anchors, C, fractional=False):
    H, W = input_hw
    while True:
        a = anchors[rng.integers(len(anchors))]
        bw = float(np.clip(a[0] * np.exp(rng.normal(0, 0.35)), 2, W))
        bh = float(np.clip(a[1] * np.exp(rng.normal(0, 0.35)), 2, H))
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
        if not fractional:
            box = [float(np.round(v)) for v in box]
        box.append(float(rng.integers(C)))
        if box_ok(box, input_hw, anchors):
            return box


def padding_row(rng, kind):
    if kind == 0:
        return [0.0] * 5
    # garbage padding: width <= 0, any height, class never looked at
    x = float(rng.integers(0, 50))
    return [x, 3.0, x - float(rng.integers(0, 5)), 1.0, 999.0]


def random_boxes(rng, B, T, input_hw, anchors, C, fractional=False, pad_anywhere=True,
                 empty_images=()):
    boxes = np.zeros((B, T, 5))
    for b in range(B):
        if b in empty_images:
            n_valid = 0
        else:
            n_valid = int(rng.integers(1, T + 1))
        rows = list(range(T))
        if pad_anywhere:
            valid_rows = sorted(rng.choice(T, size=n_valid, replace=False).tolist())
        else:
            valid_rows = rows[:n_valid]
        for t in rows:
            if t in valid_rows:
                boxes[b, t] = random_box(rng, input_hw, anchors, C, fractional)
            else:
                boxes[b, t] = padding_row(rng, int(rng.integers(2)))
    return boxes


def gen_outputs(rng, y_true, anchors, input_hw, extreme=False, plant_prob=0.7, far=0,
                thresh=0.5):
    """Float64 logits (B,H,W,3,5+C) per layer, with predictions planted around the truths
    so that the ignore mask sees IoUs on both sides of any threshold. far: per truth, how
    many predictions to plant in other cells: half of about its size with centres up to
    one width away, half stretched along one axis (by up to 1/thresh) and shifted along
    it so the truth sits near their edge, the farthest a prediction can be and still
    reach the threshold: they probe the edges of the core's culling window."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    L = len(y_true)
    mask = ref.anchor_mask(L)
    outs = []
    for l in range(L):
        yt = y_true[l]
        B, H, W, A, K = yt.shape
        t = rng.normal(0, 1, yt.shape)
        t[..., 4] = rng.normal(-4, 2, yt.shape[:4])
        t[..., 5:] = rng.normal(-2, 2, yt.shape[:4] + (K - 5,))
        anch = anchors[mask[l]]
        for b, j, i, k in zip(*np.nonzero(yt[..., 4] != 0)):
            x, y, w, h = yt[b, j, i, k, 0:4]
            fx = np.clip(x * W - i + rng.normal(0, 0.1), 0.02, 0.98)
            fy = np.clip(y * H - j + rng.normal(0, 0.1), 0.02, 0.98)
            t[b, j, i, k, 0:2] = logit(np.array([fx, fy]))
            t[b, j, i, k, 2] = np.log(w / anch[k, 0] * input_hw[1]) + rng.normal(0, 0.3)
            t[b, j, i, k, 3] = np.log(h / anch[k, 1] * input_hw[0]) + rng.normal(0, 0.3)
            t[b, j, i, k, 4] = rng.normal(1, 2)
            hot = yt[b, j, i, k, 5:] > 0.5
            t[b, j, i, k, 5:][hot] = rng.normal(2, 2, int(hot.sum()))
        outs.append(t)
    # plant predictions of every layer in the cells that contain each truth centre
    for l in range(L):
        yt = y_true[l]
        for b, j, i, k in zip(*np.nonzero(yt[..., 4] != 0)):
            x, y, w, h = yt[b, j, i, k, 0:4]
            for l2 in range(L):
                H2, W2 = outs[l2].shape[1:3]
                i2, j2 = int(np.floor(x * W2)), int(np.floor(y * H2))
                if not (0 <= i2 < W2 and 0 <= j2 < H2):
                    continue
                anch2 = anchors[mask[l2]]
                for k2 in range(3):
                    if y_true[l2][b, j2, i2, k2, 4] != 0 or rng.random() > plant_prob:
                        continue
                    fx = np.clip(x * W2 - i2 + rng.normal(0, 0.08), 0.01, 0.99)
                    fy = np.clip(y * H2 - j2 + rng.normal(0, 0.08), 0.01, 0.99)
                    f = np.exp(rng.normal(0, 0.35, 2))
                    outs[l2][b, j2, i2, k2, 0:2] = logit(np.array([fx, fy]))
                    outs[l2][b, j2, i2, k2, 2] = np.log(w * f[0] / anch2[k2, 0] * input_hw[1])
                    outs[l2][b, j2, i2, k2, 3] = np.log(h * f[1] / anch2[k2, 1] * input_hw[0])
    for l in range(L if far else 0):
        yt = y_true[l]
        H, W = outs[l].shape[1:3]
        anch = anchors[mask[l]]
        for b, j, i, k in zip(*np.nonzero(yt[..., 4] != 0)):
            x, y, w, h = yt[b, j, i, k, 0:4]
            for n in range(far):
                f = np.exp(rng.normal(0, 0.15, 2))
                if n % 2 == 0:
                    cx = x + rng.choice([-1, 1]) * rng.uniform(0, 1) * w
                    cy = y + rng.choice([-1, 1]) * rng.uniform(0, 1) * h
                else:
                    ax = int(rng.integers(2))
                    s = rng.uniform(1, 1 / max(thresh, 0.05))
                    f = np.ones(2)
                    f[ax] = s
                    d = rng.choice([-1, 1]) * rng.uniform(0.6, 1.1) * (s - 1) / 2
                    cx, cy = (x + d * w, y) if ax == 0 else (x, y + d * h)
                i2, j2 = int(np.floor(cx * W)), int(np.floor(cy * H))
                k2 = int(rng.integers(3))
                if not (0 <= i2 < W and 0 <= j2 < H) or yt[b, j2, i2, k2, 4] != 0:
                    continue
                fx = np.clip(cx * W - i2, 0.01, 0.99)
                fy = np.clip(cy * H - j2, 0.01, 0.99)
                outs[l][b, j2, i2, k2, 0:2] = logit(np.array([fx, fy]))
                outs[l][b, j2, i2, k2, 2] = np.log(w * f[0] / anch[k2, 0] * input_hw[1])
                outs[l][b, j2, i2, k2, 3] = np.log(h * f[1] / anch[k2, 1] * input_hw[0])
    if extreme:
        for l in range(L):
            o = outs[l]
            n = max(4, o.size // 60)
            idx = rng.integers(0, o.size, n)
            o.reshape(-1)[idx] = rng.choice([-1, 1], n) * rng.uniform(30, 100, n)
            o.reshape(-1)[idx[:2]] = [100.0, -100.0]
    return outs


def fix_thresholds(rng, outs_stored, dtypes, y_true_f64, anchors, thresh):
    """Re-quantize until no IoU decision lies within 1e-5 of a threshold."""
    outs = [ref.stored_to_f64(o, d == "bf16") for o, d in zip(outs_stored, dtypes)]
    for _ in range(50):
        near = ref.near_threshold_entries(outs, y_true_f64, anchors, thresh)
        if not near:
            return [ref.quantize(o, d) for o, d in zip(outs, dtypes)]
        for l, b, j, i, k in near:
            o5 = ref._as5d(outs[l])
            o5[b, j, i, k, 0] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.5)
            o5[b, j, i, k, 2] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.5)
            outs[l] = o5.reshape(outs[l].shape)
            q = ref.quantize(outs[l], dtypes[l])
            outs[l] = ref.stored_to_f64(q, dtypes[l] == "bf16")
    raise RuntimeError("could not move IoUs away from the thresholds")


def quantize_outputs(outs5, dtypes, ndims):
    res = []
    for o, d, nd in zip(outs5, dtypes, ndims):
        if nd == 4:
            o = o.reshape(o.shape[:3] + (-1,))
        res.append(ref.quantize(o, d))
    return res


def plant_nan_ious(outs5, yt, n):
    """Decoded boxes of area inf * 0 (t_w = +-800, t_h = -+800): their IoU is NaN, which
    the project counts as 0. The first n truth anchors of each layer get one, and so does
    one anchor without a truth in the cell of each."""
    for l, (o, y) in enumerate(zip(outs5, yt)):
        for b, j, i, k in list(zip(*np.nonzero(y[..., 4] != 0)))[:n]:
            o[b, j, i, k, 2:4] = [800.0, -800.0]
            for k2 in range(3):
                if y[b, j, i, k2, 4] == 0:
                    o[b, j, i, k2, 2:4] = [-800.0, 800.0]
                    break


def make_case(rng, model, H0, W0, C, B, anchors, thresh=0.5, out_dtypes="f4",
              out_ndim=4, boxes=None, boxes_dtype="f4", dense=None, extreme=False,
              plant_prob=0.7, nan_ious=0, far=0):
    """Build one case (a dict) with its expectations.
    boxes: (B,T,5) float64 array (stored as boxes_dtype), or dense: dict with y_true
    (list of float64 5-D arrays), dtypes (list), ndims (list)."""
    L = 3 if model == "full" else 2
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    assert len(anchors) == 3 * L
    input_hw = (32 * H0, 32 * W0)
    if isinstance(out_dtypes, str):
        out_dtypes = [out_dtypes] * L
    if isinstance(out_ndim, int):
        out_ndim = [out_ndim] * L
    case = {"anchors": anchors, "thresh": thresh, "out_dtypes": out_dtypes, "L": L}
    if boxes is not None:
        stored_boxes = np.asarray(boxes, dtype={"f4": np.float32, "f8": np.float64}[boxes_dtype])
        case["boxes"] = stored_boxes
        yt = [y.astype(np.float64) for y in
              ref.preprocess_true_boxes(stored_boxes, input_hw, anchors, C)]
    else:
        stored = []
        yt = []
        for y, d, nd in zip(dense["y_true"], dense["dtypes"], dense["ndims"]):
            y = np.asarray(y, dtype=np.float64)
            if nd == 4:
                y = y.reshape(y.shape[:3] + (-1,))
            q = ref.quantize(y, d)
            stored.append(q)
            yt.append(ref._as5d(ref.stored_to_f64(q, d == "bf16")))
        case["y_true"] = stored
        case["y_true_dtypes"] = list(dense["dtypes"])
    outs5 = gen_outputs(rng, yt, anchors, input_hw, extreme=extreme, plant_prob=plant_prob,
                        far=far, thresh=thresh)
    if nan_ious:
        plant_nan_ious(outs5, yt, nan_ious)
    stored_outs = quantize_outputs(outs5, out_dtypes, out_ndim)
    stored_outs = fix_thresholds(rng, stored_outs, out_dtypes, yt, anchors, thresh)
    case["outputs"] = stored_outs
    compute_expectations(case)
    return case


def case_inputs_f64(case):
    outs = [ref.stored_to_f64(o, d == "bf16") for o, d in zip(case["outputs"], case["out_dtypes"])]
    if "boxes" in case:
        return outs, None
    yts = [ref.stored_to_f64(y, d == "bf16") for y, d in zip(case["y_true"], case["y_true_dtypes"])]
    return outs, yts


def compute_expectations(case):
    outs, yts = case_inputs_f64(case)
    res = ref.evaluate(outs, case["anchors"], case["thresh"],
                       boxes=case.get("boxes"), y_true=yts)
    case["expect"] = res
    return res


# ------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------

def write_case(root, name, case, error=None):
    d = os.path.join(root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    lines = ["anchors " + " ".join("%.17g" % v for v in case["anchors"].reshape(-1)),
             "ignore_thresh %.17g" % case["thresh"]]
    for l, (o, dt) in enumerate(zip(case["outputs"], case["out_dtypes"])):
        np.save(os.path.join(d, "output_%d.npy" % l), o)
        if dt == "bf16":
            lines.append("bf16 output_%d" % l)
    if "boxes" in case:
        np.save(os.path.join(d, "boxes.npy"), case["boxes"])
    else:
        for l, (y, dt) in enumerate(zip(case["y_true"], case["y_true_dtypes"])):
            np.save(os.path.join(d, "y_true_%d.npy" % l), y)
            if dt == "bf16":
                lines.append("bf16 y_true_%d" % l)
    with open(os.path.join(d, "config.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if error is not None:
        with open(os.path.join(d, "expect_error.txt"), "w") as f:
            f.write("%s %s\n" % error)
        return d
    res = case["expect"]
    np.save(os.path.join(d, "expect_loss.npy"), np.array([res["loss"]], dtype=np.float64))
    np.save(os.path.join(d, "expect_terms.npy"), res["terms"].astype(np.float64))
    np.save(os.path.join(d, "expect_layer_terms.npy"), res["layer_terms"].astype(np.float64))
    np.save(os.path.join(d, "expect_image_terms.npy"), res["image_terms"].astype(np.float64))
    np.save(os.path.join(d, "expect_stats.npy"), res["stats"].astype(np.float64))
    for l, g in enumerate(res["grads"]):
        np.save(os.path.join(d, "expect_grad_%d.npy" % l), g.astype(np.float64))
    if res["y_true"] is not None:
        for l, y in enumerate(res["y_true"]):
            np.save(os.path.join(d, "expect_y_true_%d.npy" % l), y.astype(np.float32))
    return d


def error_of(fn):
    try:
        fn()
    except ref.YoloError as e:
        return e
    raise AssertionError("expected an error")


# ------------------------------------------------------------------------------------
# The golden cases
# ------------------------------------------------------------------------------------

SCALED9 = ref.YOLOV3_ANCHORS * 0.25     # fit a 64x96 input: every layer gets boxes
SCALED6 = ref.TINY_ANCHORS * 0.25


def golden_cases():
    """Yield (name, case, error) in a fixed order."""
    rng = np.random.default_rng(20240611)

    # 1. full, non-square 64x96 (grids 2x3, 4x6, 8x12), fp32, boxes: padding first and
    #    in the middle, two boxes sharing a cell and anchor (overwrite + multi-hot), an
    #    image with nothing but padding, a padding row with a nonsense class.
    boxes = np.zeros((3, 7, 5))
    boxes[0] = [[0, 0, 0, 0, 0],
                [40, 20, 56, 32, 1],       # 16x12 -> anchor 4, layer 1, cell (1, 3)
                [5, 6, 2, 9, 77],          # padding (width < 0), class never checked
                [41, 21, 57, 33, 3],       # same cell and anchor: overwrites xywh, class 3 too
                [10, 30, 40, 60, 2],
                [60, 5, 64, 12, 0],
                [0, 0, 0, 0, 0]]
    boxes[1] = 0
    boxes[1, 3] = [7, 7, 3, 9, 5]
    boxes[2] = random_boxes(rng, 1, 7, (64, 96), SCALED9, 4)[0]
    case = make_case(rng, "full", 2, 3, 4, 3, SCALED9, boxes=boxes)
    y1 = case["expect"]["y_true"][1]
    assert y1[0, 1, 3, 1, 5 + 1] == 1 and y1[0, 1, 3, 1, 5 + 3] == 1
    assert y1[0, 1, 3, 1, 0] == np.float32(49 / 96)
    yield "full_nonsquare_f32_boxes", case, None

    # 2. full, square 64x64, C=1, default YOLOv3 anchors, fp32, padding last (keras order)
    boxes = random_boxes(np.random.default_rng(2), 2, 5, (64, 64), SCALED9, 1,
                         pad_anywhere=False)
    yield "full_square_c1_f32_boxes", make_case(rng, "full", 2, 2, 1, 2, ref.YOLOV3_ANCHORS,
                                                boxes=boxes), None

    # 3. full, 96x64 (H0=3, W0=2), fp16 outputs, fp64 boxes with fractional pixels,
    #    ignore_thresh 0.3
    boxes = random_boxes(rng, 2, 6, (96, 64), SCALED9, 3, fractional=True)
    yield "full_tall_f16_f64boxes_t03", make_case(rng, "full", 3, 2, 3, 2, SCALED9, 0.3,
                                                  out_dtypes="f2", boxes=boxes,
                                                  boxes_dtype="f8"), None

    # 4. full, bf16 outputs, ignore_thresh 0.7, 5-D outputs
    boxes = random_boxes(rng, 2, 6, (64, 96), SCALED9, 2)
    yield "full_bf16_out5d_t07", make_case(rng, "full", 2, 3, 2, 2, SCALED9, 0.7,
                                           out_dtypes="bf16", out_ndim=5, boxes=boxes), None

    # 5. full, fp64 outputs, extreme logits (|t| up to 100)
    boxes = random_boxes(rng, 2, 6, (64, 96), SCALED9, 3)
    yield "full_f64_extreme", make_case(rng, "full", 2, 3, 3, 2, SCALED9, out_dtypes="f8",
                                        boxes=boxes, extreme=True), None

    # 6. full, fp32 extreme logits, mixed dtypes per layer
    boxes = random_boxes(rng, 2, 5, (64, 64), SCALED9, 2)
    yield "full_mixed_dtypes_extreme", make_case(
        rng, "full", 2, 2, 2, 2, SCALED9, out_dtypes=["f4", "f2", "bf16"],
        out_ndim=[4, 5, 4], boxes=boxes, extreme=True), None

    # 7. full, every image padding only: no truth anywhere, every anchor kept
    boxes = np.zeros((2, 3, 5))
    boxes[1, 1] = [9, 9, 9, 20, 3]
    yield "full_no_truth_f16", make_case(rng, "full", 2, 3, 2, 2, SCALED9, out_dtypes="f2",
                                         boxes=boxes), None

    # 8. full, keras's float32 cell rounding: centre x = 80 of 96 lands in cell 4 (not 5)
    #    of the 6-wide grid, centre x = 40 in cell 4 (not 5) of the 12-wide grid
    boxes = np.array([[[72, 20, 88, 32, 0],      # 16x12 -> anchor 4 (layer 1)
                       [38, 40, 42, 47, 1],      # 4x7   -> anchor 1 (layer 2)
                       [50, 40, 62, 52, 0]]], dtype=np.float64)
    case = make_case(rng, "full", 2, 3, 2, 1, SCALED9, boxes=boxes)
    yt = case["expect"]["y_true"]
    assert yt[1][0, 1, 4, 1, 4] == 1 and yt[2][0, 5, 4, 1, 4] == 1
    yield "full_cell_rounding", case, None

    # 9. tiny, square 64x64, C=2: a box whose best anchor is 0 (dropped), a box on anchor
    #    3 (written to both layers), custom (scaled) anchors
    boxes = np.array([[[10, 10, 13, 13, 0],        # 3x3 -> anchor 0: dropped
                       [20, 30, 40, 50, 1],        # 20x20 -> anchor 3: both layers
                       [0, 0, 0, 0, 0],
                       [30, 2, 64, 40, 0]],
                      [[0, 0, 0, 0, 0],
                       [5, 40, 14, 54, 1],
                       [40, 40, 61, 61, 0],        # 21x21 -> anchor 3
                       [0, 0, 0, 0, 0]]], dtype=np.float64)
    case = make_case(rng, "tiny", 2, 2, 2, 2, SCALED6, boxes=boxes)
    yt = case["expect"]["y_true"]
    assert yt[0][0, 1, 0, 0, 4] == 1 and yt[1][0, 2, 1, 2, 4] == 1
    assert sum(float(y[0, ..., 4].sum()) for y in yt) == 3  # anchor-0 box dropped
    yield "tiny_square_anchor0_anchor3", case, None

    # 10. tiny, non-square, C=80, fp16 outputs, default tiny anchors
    boxes = random_boxes(rng, 2, 6, (64, 96), ref.TINY_ANCHORS * 0.4, 80)
    yield "tiny_c80_f16_boxes", make_case(rng, "tiny", 2, 3, 80, 2, ref.TINY_ANCHORS,
                                          out_dtypes="f2", boxes=boxes), None

    # 11. tiny, C=80, bf16 outputs, dense 5-D y_true in fp32 with soft objectness
    boxes = random_boxes(rng, 2, 6, (64, 64), SCALED6, 80)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (64, 64), SCALED6, 80)]
    soften(yt, [0.7, 0.35])
    yield "tiny_c80_bf16_dense5_soft", make_case(
        rng, "tiny", 2, 2, 80, 2, SCALED6, out_dtypes="bf16",
        dense={"y_true": yt, "dtypes": ["f4", "f4"], "ndims": [5, 5]}), None

    # 12. full, dense 4-D y_true in fp32, soft objectness 0.7, fp32 outputs
    boxes = random_boxes(rng, 3, 6, (64, 96), SCALED9, 3)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (64, 96), SCALED9, 3)]
    soften(yt, [0.7])
    yield "full_dense4_f32_soft", make_case(
        rng, "full", 2, 3, 3, 3, SCALED9,
        dense={"y_true": yt, "dtypes": ["f4"] * 3, "ndims": [4, 4, 4]}), None

    # 13. full, dense 5-D y_true in fp16 and fp64 (mixed), fp64 5-D outputs, thresh 0.3
    boxes = random_boxes(rng, 2, 6, (64, 64), SCALED9, 2)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (64, 64), SCALED9, 2)]
    soften(yt, [0.7])
    yield "full_dense5_f16_soft_t03", make_case(
        rng, "full", 2, 2, 2, 2, SCALED9, 0.3, out_dtypes="f8", out_ndim=5,
        dense={"y_true": yt, "dtypes": ["f2", "f8", "f2"], "ndims": [5, 5, 5]}), None

    # 14. tiny, dense 4-D y_true in bf16, bf16 outputs, ignore_thresh 0.7
    boxes = random_boxes(rng, 2, 6, (64, 96), SCALED6, 3)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (64, 96), SCALED6, 3)]
    soften(yt, [0.7])
    yield "tiny_dense4_bf16_t07", make_case(
        rng, "tiny", 2, 3, 3, 2, SCALED6, 0.7, out_dtypes="bf16",
        dense={"y_true": yt, "dtypes": ["bf16", "bf16"], "ndims": [4, 4]}), None

    # 15. tiny, custom anchors with an exact shape-IoU tie (first anchor wins), C=1
    anchors = np.array([[4, 4], [10, 20], [20, 10], [30, 30], [40, 20], [50, 50]], float)
    boxes = np.array([[[20, 20, 30, 30, 0],        # 10x10: IoU 0.5 with anchors 1 and 2
                       [0, 0, 0, 0, 0],
                       [40, 10, 70, 40, 0]],
                      [[3, 50, 13, 60, 0],
                       [60, 20, 80, 30, 0],
                       [0, 0, 0, 0, 0]]], dtype=np.float64)
    case = make_case(rng, "tiny", 2, 3, 1, 2, anchors, 0.4, out_dtypes="f4", boxes=boxes)
    yt = case["expect"]["y_true"]
    assert yt[1][0, 1, 1, 0, 4] == 1 and yt[1][0, 1, 1, 1, 4] == 0
    yield "tiny_custom_anchor_tie", case, None

    # 16. tiny, fp64 outputs, fp64 boxes, padding anywhere, thresh 0.5, extreme logits
    boxes = random_boxes(rng, 3, 6, (64, 96), SCALED6, 5, empty_images=(1,))
    yield "tiny_f64_extreme_padding", make_case(rng, "tiny", 2, 3, 5, 3, SCALED6,
                                                out_dtypes="f8", boxes=boxes,
                                                boxes_dtype="f8", extreme=True), None

    # 17. full, a larger batch (B=5, C=20, mixed fp32/fp16 outputs) so that 3 threads
    #     split it unevenly; padding anywhere, one image without boxes
    boxes = random_boxes(rng, 5, 8, (64, 96), SCALED9, 20, empty_images=(3,))
    yield "full_b5_c20_mixed", make_case(rng, "full", 2, 3, 20, 5, SCALED9,
                                         out_dtypes=["f4", "f2", "f4"], out_ndim=[4, 4, 5],
                                         boxes=boxes), None

    # 18. full, fp32: NaN IoUs (decoded area inf * 0) at truth anchors and beside them,
    #     counted as IoU 0 (avg_iou, recall, ignore mask)
    boxes = random_boxes(rng, 2, 6, (64, 96), SCALED9, 3)
    case = make_case(rng, "full", 2, 3, 3, 2, SCALED9, boxes=boxes, nan_ious=2)
    assert np.isfinite(case["expect"]["stats"]).all()
    yield "full_nan_iou_f32", case, None

    # 19. tiny, dense y_true with soft objectness (the ignore term of truth anchors reads
    #     their best IoU), NaN IoUs, ignore_thresh 0.3
    boxes = random_boxes(rng, 2, 6, (64, 64), SCALED6, 2)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (64, 64), SCALED6, 2)]
    soften(yt, [0.6, 0.4])
    yield "tiny_nan_iou_dense_soft_t03", make_case(
        rng, "tiny", 2, 2, 2, 2, SCALED6, 0.3, out_dtypes="f4", nan_ious=2,
        dense={"y_true": yt, "dtypes": ["f4", "f4"], "ndims": [5, 5]}), None

    # ---- error cases ------------------------------------------------------------
    def err_case(name, boxes, C=3, model="full", out_nan=None, dtype="f4", bdt="f4"):
        anchors = SCALED9 if model == "full" else SCALED6
        L = 3 if model == "full" else 2
        r = np.random.default_rng(len(name))
        yt = [np.zeros((boxes.shape[0], 2 << l, 3 << l, 3, 5 + C)) for l in range(L)]
        outs = gen_outputs(r, yt, anchors, (64, 96))
        if out_nan is not None:
            l, val = out_nan
            outs[l].reshape(-1)[37] = val
        stored = quantize_outputs(outs, [dtype] * L, [4] * L)
        case = {"anchors": anchors, "thresh": 0.5, "out_dtypes": [dtype] * L, "L": L,
                "outputs": stored,
                "boxes": boxes.astype({"f4": np.float32, "f8": np.float64}[bdt])}
        outs64, _ = case_inputs_f64(case)
        e = error_of(lambda: ref.evaluate(outs64, anchors, 0.5, boxes=case["boxes"]))
        return name, case, (e.code, e.message.split(":")[0])

    good = np.array([[[10, 10, 30, 30, 1], [40, 20, 60, 50, 2], [0, 0, 0, 0, 0]],
                     [[5, 5, 20, 25, 0], [50, 30, 70, 60, 1], [60, 10, 90, 20, 2]]], float)
    b = good.copy()
    b[1, 2, 4] = 3                    # C = 3
    yield err_case("err_class_out_of_range", b)
    b = good.copy()
    b[0, 1, 4] = 1.5
    yield err_case("err_class_not_integer", b, bdt="f8")
    b = good.copy()
    b[1, 0, 4] = -1
    yield err_case("err_class_negative_tiny", b, model="tiny")
    b = good.copy()
    b[1, 0, 3] = b[1, 0, 1]           # zero height, width > 0
    yield err_case("err_zero_height", b)
    b = good.copy()
    b[0, 1] = [80, 20, 120, 30, 0]     # centre x 100 >= 96
    yield err_case("err_centre_outside", b)
    b = good.copy()
    b[1, 2] = [-30, 10, -2, 20, 0]     # centre x -16
    yield err_case("err_centre_negative", b, bdt="f8")
    b = good.copy()
    b[1, 1, 2] = np.nan
    yield err_case("err_nan_in_boxes", b)
    b = good.copy()
    b[0, 2, 1] = np.inf               # in a padding row: still refused
    yield err_case("err_inf_in_padding_row", b, bdt="f8")
    yield err_case("err_nan_in_output", good, out_nan=(1, np.nan))
    yield err_case("err_inf_in_output_f16", good, out_nan=(0, np.inf), dtype="f2")


def soften(y_true, values):
    """Give the first truths of each layer soft objectness values (dense cases)."""
    for y in y_true:
        idx = list(zip(*np.nonzero(y[..., 4] != 0)))
        for n, ix in enumerate(idx[:len(values)]):
            y[ix + (4,)] = values[n]


# ------------------------------------------------------------------------------------
# Random cases (tests/python)
# ------------------------------------------------------------------------------------

def random_case(seed):
    """A fresh random case for a seed: model, grid, C, dtypes, anchors, threshold, boxes
    or dense y_true (4-D or 5-D), soft objectness, extreme logits all drawn at random."""
    rng = np.random.default_rng(seed)
    model = "full" if rng.random() < 0.5 else "tiny"
    L = 3 if model == "full" else 2
    H0, W0 = [(2, 3), (3, 2), (2, 2), (1, 2), (2, 1), (1, 1)][rng.integers(6)]
    C = int(rng.choice([1, 2, 3, 7, 20] + ([80] if H0 * W0 <= 2 else [])))
    B = int(rng.integers(1, 4))
    base = ref.YOLOV3_ANCHORS if L == 3 else ref.TINY_ANCHORS
    kind = rng.integers(3)
    if kind == 0:
        anchors = base.copy()
    elif kind == 1:
        anchors = base * (32 * max(H0, W0) / 416.0) * rng.uniform(0.8, 1.6)
    else:
        anchors = np.sort(rng.uniform(2, 32 * max(H0, W0), (3 * L, 2)), axis=0)
        anchors = np.round(anchors * 4) / 4
    thresh = float(rng.choice([0.5, 0.5, 0.3, 0.7, 0.45]))
    input_hw = (32 * H0, 32 * W0)
    dts = [str(rng.choice(DTYPES)) for _ in range(L)]
    ndims = [int(rng.choice([4, 5])) for _ in range(L)]
    boxes = random_boxes(rng, B, int(rng.integers(1, 7)), input_hw, anchors, C,
                         fractional=bool(rng.random() < 0.3),
                         empty_images=(0,) if rng.random() < 0.15 else ())
    extreme = bool(rng.random() < 0.3)
    if rng.random() < 0.6:
        return make_case(rng, model, H0, W0, C, B, anchors, thresh, out_dtypes=dts,
                         out_ndim=ndims, boxes=boxes,
                         boxes_dtype=str(rng.choice(["f4", "f8"])), extreme=extreme)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, input_hw, anchors, C)]
    if rng.random() < 0.5:
        soften(yt, list(rng.uniform(0.1, 0.95, 2)))
    return make_case(rng, model, H0, W0, C, B, anchors, thresh, out_dtypes=dts,
                     out_ndim=ndims, extreme=extreme,
                     dense={"y_true": yt,
                            "dtypes": [str(rng.choice(DTYPES)) for _ in range(L)],
                            "ndims": [int(rng.choice([4, 5])) for _ in range(L)]})


# ------------------------------------------------------------------------------------
# Full-size cases (tests/python/test_full_size.py)
# ------------------------------------------------------------------------------------

FULL_SIZE_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "full_size.json")

# name, seed, model, B, T (box rows per image), C, outputs dtype, ndim, truth, threshold.
# truth: "f4"/"f8" boxes, or "dense:<dtype>" y_true with soft objectness on a few truths.
FULL_SIZE_SPECS = [
    ("full416_b2_f32_boxes", 7001, "full", 2, 60, 80, "f4", 4, "f4", 0.5),
    ("full416_b4_f16_f64boxes_t07", 7002, "full", 4, 40, 80, "f2", 5, "f8", 0.7),
    ("full416_b1_bf16_dense_f16_t03", 7003, "full", 1, 60, 80, "bf16", 4, "dense:f2", 0.3),
    ("tiny416_b3_f64_dense_bf16", 7004, "tiny", 3, 50, 80, "f8", 5, "dense:bf16", 0.5),
    ("tiny416_b2_f32_f32boxes_t06", 7005, "tiny", 2, 60, 80, "f4", 4, "f4", 0.6),
    ("full416_b2_f32_f64boxes_t015", 7006, "full", 2, 40, 80, "f4", 5, "f8", 0.15),
]


def full_size_case(spec):
    """The case of one FULL_SIZE_SPECS entry: 416x416, default anchors, dense truths
    (up to T boxes per image), predictions planted around them."""
    name, seed, model, B, T, C, dt, nd, truth, thresh = spec
    rng = np.random.default_rng(seed)
    anchors = ref.YOLOV3_ANCHORS if model == "full" else ref.TINY_ANCHORS
    L = 3 if model == "full" else 2
    boxes = random_boxes(rng, B, T, (416, 416), anchors, C)
    if not truth.startswith("dense:"):
        return make_case(rng, model, 13, 13, C, B, anchors, thresh, out_dtypes=dt,
                         out_ndim=nd, boxes=boxes, boxes_dtype=truth, far=4)
    yt = [y.astype(np.float64) for y in
          ref.preprocess_true_boxes(boxes, (416, 416), anchors, C)]
    soften(yt, [0.8, 0.55, 0.3])
    return make_case(rng, model, 13, 13, C, B, anchors, thresh, out_dtypes=dt,
                     out_ndim=nd, far=4, dense={"y_true": yt, "dtypes": [truth[6:]] * L,
                                                "ndims": [nd] * L})


def full_size_summary(case):
    """What full_size.json stores of the reference's answer."""
    e = case["expect"]
    return {"loss": float(e["loss"]), "terms": [float(v) for v in e["terms"]],
            "stats": [[float(v) for v in row] for row in e["stats"]],
            "grad_abs_sum": [float(np.abs(g).sum()) for g in e["grads"]]}


def write_full_size_json(path=FULL_SIZE_JSON):
    import json
    out = []
    for spec in FULL_SIZE_SPECS:
        out.append({"spec": list(spec), "summary": full_size_summary(full_size_case(spec))})
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("%d full-size summaries in %s" % (len(out), path))


def check_ignore_matters(name, case):
    """A case with truths must have anchors without truth on both sides of the threshold
    among those that overlap a truth, so that the ignore mask really decides something."""
    res = case["expect"]
    if res["stats"][:, 0].sum() == 0:
        return
    above = below = 0
    for l, best in enumerate(res["best_iou"]):
        noobj = ref._as5d(res["y_true_f64"][l])[..., 4] == 0
        above += int(np.sum(noobj & (best >= case["thresh"])))
        below += int(np.sum(noobj & (best > 0) & (best < case["thresh"])))
    assert above > 0 and below > 0, "%s: ignore mask decides nothing (%d above, %d below)" \
        % (name, above, below)


def main(argv):
    if len(argv) > 1 and argv[1] == "--full-size":
        write_full_size_json()
        return
    root = argv[1] if len(argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "golden")
    root = os.path.normpath(root)
    os.makedirs(root, exist_ok=True)
    names = []
    for name, case, error in golden_cases():
        if error is None:
            check_ignore_matters(name, case)
        write_case(root, name, case, error)
        names.append(name)
    for entry in sorted(os.listdir(root)):       # drop cases that are no longer made
        if entry not in names and os.path.isdir(os.path.join(root, entry)):
            shutil.rmtree(os.path.join(root, entry))
    total = sum(os.path.getsize(os.path.join(dp, f))
                for dp, _, fs in os.walk(root) for f in fs)
    print("%d cases, %.2f MB in %s" % (len(names), total / 1e6, root))


if __name__ == "__main__":
    main(sys.argv)
