"""darknet's [yolo] layer loss in float64, written from pjreddie/darknet src/yolo_layer.c
(forward_yolo_layer, last change 481d9d98), src/box.c and src/activations.h, independent of
the C core.

It runs darknet's own loops on darknet's own layout: the service's NHWC anchor-major outputs
are first rearranged to darknet's NCHW [b][n][entry][h][w], the delta array is filled as
darknet fills it (including the overwrites and the `if (delta[index])` class quirk), and the
gradient is -delta mapped back. The implicit loss is tracked beside it: for every delta
element set from a target, which target; the loss is
  xy      scale * BCE(t, x)   (t = truth.x * W - i, x the raw logit)
  wh      scale / 2 * (t - raw)^2
  obj     BCE(target, logit)  (ignored anchors: nothing)
  class   BCE(target, logit)  (slots whose classes were set)
with scale = 2 - w * h of the truth that wrote the box last. No 1/B.

    darknet_loss(outputs, truths, anchors, masks, net_hw, num_classes,
                 ignore_thresh=.7, truth_thresh=1., max_truths=90)
returns a dict: loss, terms (4,), layer_terms (L, 4), grads (list, NHWC like outputs),
cost (L,), stats (L, 8) in the core's order (count, avg_iou, avg_class, avg_obj,
avg_noobj, recall50, recall75, ignored: anchors whose objectness ends with no delta).
"""

import numpy as np


def logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def bce(z, x):
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def overlap(x1, w1, x2, w2):
    left = np.maximum(x1 - w1 / 2, x2 - w2 / 2)
    right = np.minimum(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def box_iou(a, b):
    """a, b: (..., 4) arrays of x, y, w, h, broadcast."""
    w = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    h = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = np.where((w < 0) | (h < 0), 0.0, w * h)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


def truth_list(truths_b, max_truths):
    rows = []
    for t in range(min(len(truths_b), max_truths)):
        if truths_b[t][0] == 0:
            break
        rows.append(np.asarray(truths_b[t], dtype=np.float64))
    return rows


def darknet_loss(outputs, truths, anchors, masks, net_hw, num_classes, ignore_thresh=0.7,
                 truth_thresh=1.0, max_truths=90):
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    total = len(anchors)
    net_h, net_w = net_hw
    C = num_classes
    L = len(outputs)
    res = {"terms": np.zeros(4), "layer_terms": np.zeros((L, 4)), "grads": [],
           "cost": np.zeros(L), "stats": np.zeros((L, 8))}
    for l, out in enumerate(outputs):
        out = np.asarray(out, dtype=np.float64)
        B, H, W = out.shape[:3]
        mask = list(masks[l])
        n_a = len(mask)
        x = out.reshape(B, H, W, n_a, 5 + C).transpose(0, 3, 4, 1, 2).copy()  # darknet's
        act = x.copy()
        act[:, :, 0:2] = logistic(x[:, :, 0:2])
        act[:, :, 4:] = logistic(x[:, :, 4:])
        delta = np.zeros_like(x)
        # the implicit loss's targets: NaN where an element carries no loss
        tgt = np.full_like(x, np.nan)
        scale = np.zeros((B, n_a, H, W))
        avg_iou = avg_cat = avg_obj = avg_any = 0.0
        recall = recall75 = 0
        count = ignored = 0
        jj, ii = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        for b in range(B):
            tl = truth_list(truths[b], max_truths)
            tb = np.array(tl).reshape(-1, 5)
            for n in range(n_a):
                aw, ah = anchors[mask[n]]
                pred = np.stack([(ii + act[b, n, 0]) / W, (jj + act[b, n, 1]) / H,
                                 np.exp(x[b, n, 2]) * aw / net_w,
                                 np.exp(x[b, n, 3]) * ah / net_h], axis=-1)  # (H, W, 4)
                if len(tb):
                    ious = box_iou(pred[:, :, None, :], tb[None, None, :, :4])
                    ious = np.where(np.isnan(ious), -1.0, ious)
                    best_t = np.argmax(ious, axis=2)
                    best = np.max(ious, axis=2)
                    best_t = np.where(best > 0, best_t, 0)
                    best = np.maximum(best, 0.0)
                else:
                    best = np.zeros((H, W))
                    best_t = np.zeros((H, W), dtype=int)
                avg_any += act[b, n, 4].sum()
                delta[b, n, 4] = 0 - act[b, n, 4]
                tgt[b, n, 4] = 0.0
                ign = best > ignore_thresh
                delta[b, n, 4][ign] = 0
                tgt[b, n, 4][ign] = np.nan
                for j, i in zip(*np.nonzero(best > truth_thresh)):
                    t = tb[best_t[j, i]]
                    delta[b, n, 4, j, i] = 1 - act[b, n, 4, j, i]
                    tgt[b, n, 4, j, i] = 1.0
                    set_class(delta, tgt, act, b, n, j, i, int(t[4]), C, None)
                    set_box(delta, tgt, scale, x, act, b, n, j, i, t, anchors[mask[n]],
                            W, H, net_w, net_h)
            for t in tl:
                i = int(t[0] * W)
                j = int(t[1] * H)
                shape_ious = []
                for a in range(total):
                    shape_ious.append(box_iou(np.array([0, 0, anchors[a, 0] / net_w,
                                                        anchors[a, 1] / net_h]),
                                              np.array([0, 0, t[2], t[3]])))
                best_iou, best_n = 0.0, 0
                for a, v in enumerate(shape_ious):
                    if v > best_iou:
                        best_iou, best_n = v, a
                if best_n not in mask:
                    continue
                n = mask.index(best_n)
                iou = set_box(delta, tgt, scale, x, act, b, n, j, i, t, anchors[best_n],
                              W, H, net_w, net_h)
                avg_obj += act[b, n, 4, j, i]
                delta[b, n, 4, j, i] = 1 - act[b, n, 4, j, i]
                tgt[b, n, 4, j, i] = 1.0
                avg_cat += set_class(delta, tgt, act, b, n, j, i, int(t[4]), C, True)
                count += 1
                recall += iou > 0.5
                recall75 += iou > 0.75
                avg_iou += iou
        # anchors whose objectness ends with no delta (ignored, and no truth set it again)
        ignored = int(np.isnan(tgt[:, :, 4]).sum())
        # the implicit loss
        lt = np.zeros(4)
        s = scale[:, :, None]
        has = ~np.isnan(tgt)
        z = np.where(has, tgt, 0.0)
        for e in (0, 1):
            m = has[:, :, e]
            lt[0] += (scale * bce(z[:, :, e], x[:, :, e]))[m].sum()
        for e in (2, 3):
            m = has[:, :, e]
            lt[1] += (scale * 0.5 * (z[:, :, e] - x[:, :, e]) ** 2)[m].sum()
        lt[2] = bce(z[:, :, 4], x[:, :, 4])[has[:, :, 4]].sum()
        lt[3] = bce(z[:, :, 5:], x[:, :, 5:])[has[:, :, 5:]].sum()
        del s
        res["layer_terms"][l] = lt
        res["terms"] += lt
        res["cost"][l] = float((delta ** 2).sum())
        grad = -delta.transpose(0, 3, 4, 1, 2).reshape(np.asarray(outputs[l]).shape)
        res["grads"].append(grad)
        div = lambda a, c: a / c if c else 0.0  # noqa: E731
        res["stats"][l] = [count, div(avg_iou, count), div(avg_cat, count),
                           div(avg_obj, count), avg_any / (B * H * W * n_a),
                           div(recall, count), div(recall75, count), ignored]
    res["loss"] = float(res["terms"].sum())
    return res


def set_class(delta, tgt, act, b, n, j, i, cls, C, stat):
    """delta_yolo_class; returns the class's sigmoid for avg_cat."""
    if delta[b, n, 5, j, i]:
        delta[b, n, 5 + cls, j, i] = 1 - act[b, n, 5 + cls, j, i]
        tgt[b, n, 5 + cls, j, i] = 1.0
        return act[b, n, 5 + cls, j, i]
    for c in range(C):
        delta[b, n, 5 + c, j, i] = (1.0 if c == cls else 0.0) - act[b, n, 5 + c, j, i]
        tgt[b, n, 5 + c, j, i] = 1.0 if c == cls else 0.0
    return act[b, n, 5 + cls, j, i]


def set_box(delta, tgt, scale, x, act, b, n, j, i, t, anchor, W, H, net_w, net_h):
    """delta_yolo_box; returns IoU(pred, truth)."""
    pred = np.array([(i + act[b, n, 0, j, i]) / W, (j + act[b, n, 1, j, i]) / H,
                     np.exp(x[b, n, 2, j, i]) * anchor[0] / net_w,
                     np.exp(x[b, n, 3, j, i]) * anchor[1] / net_h])
    iou = float(box_iou(pred, t[:4]))
    sc = 2 - t[2] * t[3]
    target = [t[0] * W - i, t[1] * H - j, np.log(t[2] * net_w / anchor[0]),
              np.log(t[3] * net_h / anchor[1])]
    for e in range(4):
        delta[b, n, e, j, i] = sc * (target[e] - act[b, n, e, j, i])
        tgt[b, n, e, j, i] = target[e]
    scale[b, n, j, i] = sc
    return iou
