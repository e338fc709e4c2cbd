"""mAP@0.5 as PASCAL VOC defines it (2010 and later): per class, detections sorted by
score are matched greedily to the unmatched ground-truth box of the same image with the
highest IoU >= 0.5; AP is the area under the precision-recall curve made monotone from the
right (all points, no 11-point sampling); mAP is the mean over classes that have ground
truth. Boxes are x_min, y_min, x_max, y_max in pixels (continuous, no +1)."""

import numpy as np


def box_iou(a, b):
    """a (4,), b (n, 4) -> (n,) IoU."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def average_precision(recall, precision):
    """All-point interpolated AP from cumulative recall and precision arrays."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def mean_average_precision(detections, truths, num_classes, iou_thresh=0.5):
    """detections: per image (boxes [n, 4], scores [n], classes [n]) (arrays or tensors);
    truths: per image float (k, 5) x_min, y_min, x_max, y_max, class.
    Returns (mAP, [AP per class, None where the class has no ground truth])."""
    aps = []
    for c in range(num_classes):
        gts = [np.asarray(t)[np.asarray(t)[:, 4] == c, :4].astype(np.float64) for t in truths]
        n_gt = sum(len(g) for g in gts)
        if n_gt == 0:
            aps.append(None)
            continue
        used = [np.zeros(len(g), dtype=bool) for g in gts]
        dets = []
        for img, (bx, sc, cl) in enumerate(detections):
            bx, sc, cl = (np.asarray(v) for v in (bx, sc, cl))
            for j in np.nonzero(cl == c)[0]:
                dets.append((float(sc[j]), img, bx[j].astype(np.float64)))
        dets.sort(key=lambda d: -d[0])
        tp = np.zeros(len(dets))
        for k, (_, img, box) in enumerate(dets):
            if len(gts[img]) == 0:
                continue
            iou = box_iou(box, gts[img])
            iou[used[img]] = -1.0
            j = int(np.argmax(iou))
            if iou[j] >= iou_thresh:
                used[img][j] = True
                tp[k] = 1.0
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(dets) + 1)
        aps.append(average_precision(recall, precision))
    have = [a for a in aps if a is not None]
    return (float(np.mean(have)) if have else 0.0), aps
