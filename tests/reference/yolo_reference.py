"""Independent float64 reference of the keras-yolo3 YOLOv3 loss (qqwweee/keras-yolo3,
yolo3/model.py: yolo_head, box_iou, yolo_loss, preprocess_true_boxes), in numpy.

This file is written from keras-yolo3 and docs/semantics.md only, never from core/*.c,
so that the golden cases and the randomised tests check the C core against something
that was derived independently.

What differs from a literal transcription (all documented in semantics.md):
- yolo_loss is evaluated in float64 (keras runs in float32), from the inputs exactly as
  they are stored (fp16 / bf16 / fp32 / fp64 values converted to float64).
- preprocess_true_boxes reproduces keras's numerics (float32 boxes, float64 anchor IoU,
  float32 normalised coordinates, float64 cell index) but follows the project policy:
  padding rows (width <= 0) may stand anywhere and are skipped, so each valid row gets
  its own best anchor; invalid rows raise YoloError instead of producing inf/NaN.
- The loss returns, besides the scalar, the four terms, per layer and per image sums,
  darknet-style statistics and the closed-form gradient with respect to the raw outputs.
"""

import numpy as np

FULL_MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
TINY_MASK = [[3, 4, 5], [1, 2, 3]]
YOLOV3_ANCHORS = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119],
                           [116, 90], [156, 198], [373, 326]], dtype=np.float64)
TINY_ANCHORS = np.array([[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]],
                        dtype=np.float64)

TERM_NAMES = ("xy", "wh", "conf", "class")
STAT_NAMES = ("count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50",
              "recall75", "ignored")


class YoloError(Exception):
    """An input the project refuses; code is the C name ("YL_EBOX", "YL_ECLASS", ...)."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message


def anchor_mask(num_layers):
    return FULL_MASK if num_layers == 3 else TINY_MASK


# ------------------------------------------------------------------------------------
# Storage conversions (numpy has no bf16: bf16 tensors are uint16 bit patterns)
# ------------------------------------------------------------------------------------

def f64_to_bf16_bits(x):
    """float64 values -> bf16 bit patterns (uint16), rounded once to nearest even (not
    through float32, which would round twice); NaN -> 0x7fc0 with its sign."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    m, e = np.frexp(a)                              # a = m * 2^e, m in [0.5, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        normal = np.ldexp(np.rint(m * 256.0), e - 8)  # 8 significant bits, ties to even
        sub = np.rint(a * 2.0 ** 133) * 2.0 ** -133   # units of the smallest subnormal
        v = np.where(a < 2.0 ** -126, sub, normal)
        v = np.where(v >= 2.0 ** 128, np.inf, v)      # includes the tie above the largest
    bits = (v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    bits = np.where(np.isnan(x), np.uint16(0x7fc0), bits)
    return (bits | np.where(np.signbit(x), np.uint16(0x8000), np.uint16(0))).astype(np.uint16)


def bf16_bits_to_f64(bits):
    b = np.ascontiguousarray(np.asarray(bits, dtype=np.uint16))
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def quantize(x, dtype):
    """float64 values -> the array stored for dtype in ("f2", "f4", "f8", "bf16")."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "bf16":
        return f64_to_bf16_bits(x)
    return x.astype({"f2": np.float16, "f4": np.float32, "f8": np.float64}[dtype])


def stored_to_f64(arr, is_bf16=False):
    """A stored array -> float64 values, exactly."""
    if is_bf16:
        return bf16_bits_to_f64(arr)
    return np.asarray(arr).astype(np.float64)


# ------------------------------------------------------------------------------------
# preprocess_true_boxes
# ------------------------------------------------------------------------------------

def validate_boxes(boxes, input_shape, num_classes):
    """The project's policy checks, in image and row order. Raises YoloError."""
    raw = np.asarray(boxes)
    if raw.ndim != 3 or raw.shape[2] != 5:
        raise YoloError("YL_ESHAPE", "boxes must be (B, T, 5)")
    h_in, w_in = int(input_shape[0]), int(input_shape[1])
    tb = raw.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):   # non-finite rows raise below
        xy = (tb[..., 0:2] + tb[..., 2:4]) // 2
        wh = tb[..., 2:4] - tb[..., 0:2]
    for b in range(raw.shape[0]):
        for t in range(raw.shape[1]):
            where = "boxes[%d][%d]" % (b, t)
            if not np.all(np.isfinite(raw[b, t])):
                raise YoloError("YL_ENONFINITE", where + ": non-finite value")
            if not wh[b, t, 0] > 0:
                continue  # padding: never looked at again
            if not wh[b, t, 1] > 0:
                raise YoloError("YL_EBOX", where + ": height <= 0")
            c = float(raw[b, t, 4])
            if not (c == np.floor(c) and 0 <= c < num_classes):
                raise YoloError("YL_ECLASS", where + ": class id %r is not an integer in "
                                "[0, %d)" % (c, num_classes))
            if not (0 <= xy[b, t, 0] < w_in and 0 <= xy[b, t, 1] < h_in):
                raise YoloError("YL_EBOX", where + ": centre outside the input")


def best_anchors(boxes_wh_valid, anchors):
    """keras's shape-IoU argmax for the (n, 2) float32 sizes of one image's valid rows."""
    anchors = np.expand_dims(np.asarray(anchors, dtype=np.float64), 0)
    anchor_maxes = anchors / 2.
    anchor_mins = -anchor_maxes
    wh = np.expand_dims(boxes_wh_valid, -2)          # float32
    box_maxes = wh / 2.
    box_mins = -box_maxes
    intersect_mins = np.maximum(box_mins, anchor_mins)      # float64
    intersect_maxes = np.minimum(box_maxes, anchor_maxes)
    intersect_wh = np.maximum(intersect_maxes - intersect_mins, 0.)
    intersect_area = intersect_wh[..., 0] * intersect_wh[..., 1]
    box_area = wh[..., 0] * wh[..., 1]                  # float32 product, as in keras
    anchor_area = anchors[..., 0] * anchors[..., 1]
    iou = intersect_area / (box_area + anchor_area - intersect_area)
    return np.argmax(iou, axis=-1), iou


def preprocess_true_boxes(boxes, input_shape, anchors, num_classes):
    """boxes (B, T, 5) absolute x_min, y_min, x_max, y_max, class -> list of float32
    y_true (B, H_l, W_l, 3, 5+C). input_shape is (h, w)."""
    validate_boxes(boxes, input_shape, num_classes)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    num_layers = len(anchors) // 3
    mask = anchor_mask(num_layers)

    true_boxes = np.array(boxes, dtype='float32')
    input_shape = np.array(input_shape, dtype='int32')
    boxes_xy = (true_boxes[..., 0:2] + true_boxes[..., 2:4]) // 2
    boxes_wh = true_boxes[..., 2:4] - true_boxes[..., 0:2]
    true_boxes[..., 0:2] = boxes_xy / input_shape[::-1]     # float64 division, to float32
    true_boxes[..., 2:4] = boxes_wh / input_shape[::-1]

    m = true_boxes.shape[0]
    grid_shapes = [input_shape // {0: 32, 1: 16, 2: 8}[l] for l in range(num_layers)]
    y_true = [np.zeros((m, grid_shapes[l][0], grid_shapes[l][1], len(mask[l]),
                        5 + num_classes), dtype='float32') for l in range(num_layers)]
    valid_mask = boxes_wh[..., 0] > 0

    for b in range(m):
        rows = np.nonzero(valid_mask[b])[0]   # policy: padding may stand anywhere
        if len(rows) == 0:
            continue
        best, _ = best_anchors(boxes_wh[b, rows], anchors)
        for t, n in zip(rows, best):
            for l in range(num_layers):
                if n in mask[l]:
                    i = np.floor(true_boxes[b, t, 0] * grid_shapes[l][1]).astype('int32')
                    j = np.floor(true_boxes[b, t, 1] * grid_shapes[l][0]).astype('int32')
                    k = mask[l].index(n)
                    c = true_boxes[b, t, 4].astype('int32')
                    y_true[l][b, j, i, k, 0:4] = true_boxes[b, t, 0:4]
                    y_true[l][b, j, i, k, 4] = 1
                    y_true[l][b, j, i, k, 5 + c] = 1
    return y_true


# ------------------------------------------------------------------------------------
# yolo_head, box_iou, yolo_loss
# ------------------------------------------------------------------------------------

def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def bce_logits(z, x):
    """tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x)."""
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def box_iou(b1, b2):
    """b1 (..., 4), b2 (j, 4), xywh -> (..., j)."""
    b1 = np.expand_dims(b1, -2)
    b1_xy = b1[..., :2]
    b1_wh = b1[..., 2:4]
    b1_wh_half = b1_wh / 2.
    b1_mins = b1_xy - b1_wh_half
    b1_maxes = b1_xy + b1_wh_half

    b2 = np.expand_dims(b2, 0)
    b2_xy = b2[..., :2]
    b2_wh = b2[..., 2:4]
    b2_wh_half = b2_wh / 2.
    b2_mins = b2_xy - b2_wh_half
    b2_maxes = b2_xy + b2_wh_half

    intersect_mins = np.maximum(b1_mins, b2_mins)
    intersect_maxes = np.minimum(b1_maxes, b2_maxes)
    intersect_wh = np.maximum(intersect_maxes - intersect_mins, 0.)
    intersect_area = intersect_wh[..., 0] * intersect_wh[..., 1]
    with np.errstate(invalid="ignore"):
        b1_area = b1_wh[..., 0] * b1_wh[..., 1]
        b2_area = b2_wh[..., 0] * b2_wh[..., 1]
        iou = intersect_area / (b1_area + b2_area - intersect_area)
    # A decoded box of width inf (t_w > ~709) and height 0 (t_h < ~-745) has area inf * 0:
    # the IoU is NaN, and keras would let that NaN decide the ignore mask by accident
    # (NaN < thresh is false). The project's rule (docs/core.md, decisions): such an IoU is 0.
    return np.where(np.isnan(iou), 0.0, iou)


def yolo_head(feats, anchors, input_shape):
    """feats (B, H, W, 3, 5+C) float64; anchors (3, 2); input_shape (h, w).
    Returns grid (H, W, 1, 2), pred_xy, pred_wh."""
    H, W = feats.shape[1:3]
    grid_y = np.tile(np.arange(H, dtype=np.float64).reshape(-1, 1, 1, 1), [1, W, 1, 1])
    grid_x = np.tile(np.arange(W, dtype=np.float64).reshape(1, -1, 1, 1), [H, 1, 1, 1])
    grid = np.concatenate([grid_x, grid_y], axis=-1)
    box_xy = (sigmoid(feats[..., :2]) + grid) / np.array([W, H], dtype=np.float64)
    with np.errstate(over="ignore"):  # t_w > ~709 decodes to an infinite width, as in C
        box_wh = (np.exp(feats[..., 2:4]) * anchors.reshape(1, 1, 1, 3, 2)
                  / np.array([input_shape[1], input_shape[0]], dtype=np.float64))
    return grid, box_xy, box_wh


def _as5d(x, C=None):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 5:
        return x
    B, H, W, ch = x.shape
    return x.reshape(B, H, W, 3, ch // 3)


def layer_ious(outputs, y_true, anchors):
    """Per layer: (pred_box (B,H,W,3,4), truth mask (B,H,W,3) bool,
    best_iou (B,H,W,3) with -inf where the image has no truth on the layer,
    own_iou (B,H,W,3): IoU of each prediction with its own truth box (0 where none))."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    L = len(anchors) // 3
    mask = anchor_mask(L)
    outs = [_as5d(o) for o in outputs]
    yts = [_as5d(y) for y in y_true]
    input_shape = (32 * outs[0].shape[1], 32 * outs[0].shape[2])
    res = []
    for l in range(L):
        _, pxy, pwh = yolo_head(outs[l], anchors[mask[l]], input_shape)
        pred_box = np.concatenate([pxy, pwh], axis=-1)
        obj = yts[l][..., 4] != 0
        best = np.full(obj.shape, -np.inf)
        for b in range(outs[l].shape[0]):
            true_box = yts[l][b, ..., 0:4][obj[b]]
            if len(true_box):
                best[b] = np.max(box_iou(pred_box[b], true_box), axis=-1)
        own = np.zeros(obj.shape)
        for idx in zip(*np.nonzero(obj)):
            own[idx] = box_iou(pred_box[idx], yts[l][idx][None, 0:4])[0]
        res.append((pred_box, obj, best, own))
    return res


def yolo_loss(outputs, y_true, anchors, ignore_thresh=0.5, fixed_ignore=None,
              want_grad=True):
    """outputs: list of L arrays (B, H_l, W_l, 3*(5+C)) or 5-D; y_true: list of L dense
    arrays, 4-D or 5-D; anchors (N, 2) or flat. All values taken as float64.
    fixed_ignore: optional list of L ignore masks (B,H,W,3) to use instead of the IoU
    test (for finite differences).
    Returns a dict: loss, terms [4], layer_terms [L,4], image_terms [B,4], stats [L,8],
    grads (list like outputs, float64), ignore (list of masks), best_iou (list)."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    L = len(anchors) // 3
    mask = anchor_mask(L)
    if len(outputs) != L or len(y_true) != L:
        raise YoloError("YL_ESHAPE", "need %d outputs and y_true tensors" % L)
    for l in range(L):
        if not np.all(np.isfinite(np.asarray(outputs[l], dtype=np.float64))):
            raise YoloError("YL_ENONFINITE", "output_%d: non-finite value" % l)
        if not np.all(np.isfinite(np.asarray(y_true[l], dtype=np.float64))):
            raise YoloError("YL_ENONFINITE", "y_true_%d: non-finite value" % l)
    outs = [_as5d(o) for o in outputs]
    yts = [_as5d(y) for y in y_true]
    B = outs[0].shape[0]
    input_shape = (32 * outs[0].shape[1], 32 * outs[0].shape[2])   # (h, w)
    mf = float(B)

    layer_terms = np.zeros((L, 4))
    image_terms = np.zeros((B, 4))
    stats = np.zeros((L, 8))
    grads, ignores, bests = [], [], []
    ious = layer_ious(outs, yts, anchors)
    for l in range(L):
        feats = outs[l]
        yt = yts[l]
        H, W = feats.shape[1:3]
        anch = anchors[mask[l]]
        grid, pred_xy, pred_wh = yolo_head(feats, anch, input_shape)
        object_mask = yt[..., 4:5]
        true_class_probs = yt[..., 5:]

        raw_true_xy = yt[..., :2] * np.array([W, H], dtype=np.float64) - grid
        with np.errstate(divide='ignore', invalid='ignore'):
            raw_true_wh = np.log(yt[..., 2:4] / anch.reshape(1, 1, 1, 3, 2)
                                 * np.array([input_shape[1], input_shape[0]],
                                            dtype=np.float64))
        raw_true_wh = np.where(object_mask != 0, raw_true_wh, 0.0)
        box_loss_scale = 2 - yt[..., 2:3] * yt[..., 3:4]

        _, objb, best_iou, own_iou = ious[l]
        if fixed_ignore is not None:
            ignore = np.asarray(fixed_ignore[l], dtype=np.float64)
        else:
            ignore = (best_iou < ignore_thresh).astype(np.float64)
        ignores.append(ignore)
        bests.append(best_iou)
        ignore_mask = ignore[..., None]

        xy_loss = object_mask * box_loss_scale * bce_logits(raw_true_xy, feats[..., 0:2])
        wh_loss = object_mask * box_loss_scale * 0.5 * np.square(raw_true_wh - feats[..., 2:4])
        confidence_loss = (object_mask * bce_logits(object_mask, feats[..., 4:5])
                           + (1 - object_mask) * bce_logits(object_mask, feats[..., 4:5])
                           * ignore_mask)
        class_loss = object_mask * bce_logits(true_class_probs, feats[..., 5:])

        per_image = np.stack([x.reshape(B, -1).sum(axis=1) for x in
                              (xy_loss, wh_loss, confidence_loss, class_loss)], axis=1)
        image_terms += per_image
        layer_terms[l] = per_image.sum(axis=0) / mf

        if want_grad:
            s = sigmoid(feats)
            g = object_mask * box_loss_scale
            grad = np.zeros_like(feats)
            grad[..., 0:2] = g * (s[..., 0:2] - raw_true_xy)
            grad[..., 2:4] = g * (feats[..., 2:4] - raw_true_wh)
            grad[..., 4:5] = (object_mask + (1 - object_mask) * ignore_mask) \
                * (s[..., 4:5] - object_mask)
            grad[..., 5:] = object_mask * (s[..., 5:] - true_class_probs)
            grad /= mf
            grads.append(grad.reshape(np.asarray(outputs[l]).shape))

        # darknet-style statistics over the whole batch
        so = sigmoid(feats[..., 4])
        count = int(objb.sum())
        st = np.zeros(8)
        st[0] = count
        if count:
            st[1] = own_iou[objb].mean()
            cls_t = true_class_probs[objb]
            cls_s = sigmoid(feats[..., 5:][objb])
            hot = cls_t > 0.5
            st[2] = cls_s[hot].sum() / hot.sum() if hot.any() else 0.0
            st[3] = so[objb].mean()
            st[5] = (own_iou[objb] > 0.5).mean()
            st[6] = (own_iou[objb] > 0.75).mean()
        noobj = ~objb
        st[4] = so[noobj].mean() if noobj.any() else 0.0
        st[7] = int(np.sum(noobj & (best_iou >= ignore_thresh)))
        stats[l] = st

    terms = layer_terms.sum(axis=0)
    return {"loss": float(terms.sum()), "terms": terms, "layer_terms": layer_terms,
            "image_terms": image_terms, "stats": stats, "grads": grads,
            "ignore": ignores, "best_iou": bests}


def evaluate(outputs, anchors, ignore_thresh=0.5, boxes=None, y_true=None):
    """Whole pipeline as the C core runs it: boxes -> float32 y_true -> loss.
    Returns the yolo_loss dict plus "y_true" (float32 dense list, boxes case only)."""
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    outs = [np.asarray(o, dtype=np.float64) for o in outputs]
    for l, o in enumerate(outs):
        if not np.all(np.isfinite(o)):
            raise YoloError("YL_ENONFINITE", "output_%d: non-finite value" % l)
    o5 = _as5d(outs[0])
    C = o5.shape[4] - 5
    input_shape = (32 * o5.shape[1], 32 * o5.shape[2])
    yt32 = None
    if boxes is not None:
        yt32 = preprocess_true_boxes(boxes, input_shape, anchors, C)
        yts = [y.astype(np.float64) for y in yt32]
    else:
        yts = [np.asarray(y, dtype=np.float64) for y in y_true]
    res = yolo_loss(outs, yts, anchors, ignore_thresh)
    res["y_true"] = yt32
    res["y_true_f64"] = yts
    return res


def near_threshold_entries(outputs, y_true, anchors, ignore_thresh, margin=1e-5):
    """(l, b, j, i, k) of every anchor whose best IoU is within margin of ignore_thresh,
    or whose own-truth IoU is within margin of 0.5 or 0.75 (recall thresholds), so that
    test data can be moved away from decisions that hinge on rounding."""
    res = []
    for l, (_, obj, best, own) in enumerate(layer_ious(outputs, y_true, anchors)):
        bad = np.abs(best - ignore_thresh) < margin
        bad |= obj & ((np.abs(own - 0.5) < margin) | (np.abs(own - 0.75) < margin))
        for idx in zip(*np.nonzero(bad)):
            res.append((l,) + tuple(int(v) for v in idx))
    return res


# ------------------------------------------------------------------------------------
# Finite-difference self-check
# ------------------------------------------------------------------------------------

def finite_difference_check(outputs, y_true, anchors, ignore_thresh=0.5, n_samples=200,
                            h=1e-6, seed=0, tol=1e-6):
    """Compare the closed-form gradients with central differences of the reference loss,
    the ignore mask held at its value at the base point. Checks every channel of every
    truth anchor plus n_samples random elements. Returns (max_abs_err, n_checked);
    raises AssertionError with the element when an error exceeds tol (absolute, with a
    relative allowance of tol for large gradients)."""
    outs = [np.array(o, dtype=np.float64) for o in outputs]
    yts = [np.asarray(y, dtype=np.float64) for y in y_true]
    base = yolo_loss(outs, yts, anchors, ignore_thresh)
    fixed = base["ignore"]
    rng = np.random.default_rng(seed)
    picks = []
    for l, o in enumerate(outs):
        o5 = _as5d(o)
        y5 = _as5d(yts[l])
        for idx in zip(*np.nonzero(y5[..., 4] != 0)):
            for ch in range(o5.shape[4]):
                flat = np.ravel_multi_index(idx + (ch,), o5.shape)
                picks.append((l, flat))
        for flat in rng.integers(0, o.size, size=n_samples // len(outs) + 1):
            picks.append((l, int(flat)))
    worst = 0.0
    for l, flat in picks:
        plus = [o.copy() for o in outs]
        minus = [o.copy() for o in outs]
        plus[l].reshape(-1)[flat] += h
        minus[l].reshape(-1)[flat] -= h
        fp = yolo_loss(plus, yts, anchors, ignore_thresh, fixed_ignore=fixed,
                       want_grad=False)["loss"]
        fm = yolo_loss(minus, yts, anchors, ignore_thresh, fixed_ignore=fixed,
                       want_grad=False)["loss"]
        numeric = (fp - fm) / (2 * h)
        analytic = base["grads"][l].reshape(-1)[flat]
        err = abs(numeric - analytic)
        worst = max(worst, err)
        if err > tol * max(1.0, abs(analytic)):
            raise AssertionError("output_%d element %d: closed form %.12g, central "
                                 "difference %.12g" % (l, flat, analytic, numeric))
    return worst, len(picks)
