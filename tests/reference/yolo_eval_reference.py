"""Independent float64 port of keras-yolo3's detection decode (qqwweee/keras-yolo3,
yolo3/model.py: yolo_head, yolo_correct_boxes, yolo_boxes_and_scores, yolo_eval) and of
tensorflow's tf.image.non_max_suppression (core/kernels/image/non_max_suppression_op.cc),
in numpy. Written from those sources, never from core/decode.c.

Transcription choices, so that the C core can be compared bit for bit:
- float64 throughout (keras and tensorflow run float32);
- exp is libm's (math.exp, element by element): numpy's vectorised exp differs from libm's
  in the last bit for about a quarter of float64 inputs, and the C core calls libm;
- the sigmoid is the overflow-free form 1/(1+e) for x >= 0, e/(1+e) otherwise (e = exp(-|x|)),
  the form the project's loss reference uses too;
- boxes are returned as x_min, y_min, x_max, y_max (keras: y_min, x_min, y_max, x_max).
"""

import math

import numpy as np

FULL_MASK = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
TINY_MASK = [[3, 4, 5], [1, 2, 3]]

_libm_exp = np.frompyfunc(math.exp, 1, 1)


def libm_exp(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.asarray(_libm_exp(x), dtype=np.float64).reshape(x.shape)


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = libm_exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def yolo_head(feats, anchors, num_classes, input_shape):
    """feats (H, W, 3*(5+C)) or (H, W, 3, 5+C) of one image; anchors (3, 2) in pixels;
    input_shape (h, w)."""
    H, W = feats.shape[0], feats.shape[1]
    feats = np.asarray(feats, dtype=np.float64).reshape(H, W, 3, num_classes + 5)
    grid_y = np.tile(np.arange(H, dtype=np.float64).reshape(-1, 1, 1, 1), [1, W, 1, 1])
    grid_x = np.tile(np.arange(W, dtype=np.float64).reshape(1, -1, 1, 1), [H, 1, 1, 1])
    grid = np.concatenate([grid_x, grid_y], axis=-1)
    box_xy = (sigmoid(feats[..., :2]) + grid) / np.array([W, H], dtype=np.float64)
    box_wh = (libm_exp(feats[..., 2:4]) * np.asarray(anchors, np.float64).reshape(1, 1, 3, 2)
              / np.array([input_shape[1], input_shape[0]], dtype=np.float64))
    box_confidence = sigmoid(feats[..., 4:5])
    box_class_probs = sigmoid(feats[..., 5:])
    return box_xy, box_wh, box_confidence, box_class_probs


def yolo_correct_boxes(box_xy, box_wh, input_shape, image_shape):
    box_yx = box_xy[..., ::-1]
    box_hw = box_wh[..., ::-1]
    input_shape = np.asarray(input_shape, dtype=np.float64)
    image_shape = np.asarray(image_shape, dtype=np.float64)
    new_shape = np.round(image_shape * np.min(input_shape / image_shape))  # half to even
    offset = (input_shape - new_shape) / 2. / input_shape
    scale = input_shape / new_shape
    box_yx = (box_yx - offset) * scale
    box_hw = box_hw * scale
    box_mins = box_yx - (box_hw / 2.)
    box_maxes = box_yx + (box_hw / 2.)
    boxes = np.concatenate([box_mins[..., 0:1], box_mins[..., 1:2],
                            box_maxes[..., 0:1], box_maxes[..., 1:2]], axis=-1)
    boxes = boxes * np.concatenate([image_shape, image_shape])
    return boxes  # y_min, x_min, y_max, x_max


def yolo_boxes_and_scores(feats, anchors, num_classes, input_shape, image_shape):
    box_xy, box_wh, box_confidence, box_class_probs = yolo_head(
        feats, anchors, num_classes, input_shape)
    boxes = yolo_correct_boxes(box_xy, box_wh, input_shape, image_shape)
    boxes = boxes.reshape(-1, 4)
    box_scores = (box_confidence * box_class_probs).reshape(-1, num_classes)
    return boxes, box_scores


def tf_iou(boxes, i, j):
    """non_max_suppression_op.cc's IOU, boxes (n, 4) as y1, x1, y2, x2."""
    ymin_i, xmin_i = min(boxes[i, 0], boxes[i, 2]), min(boxes[i, 1], boxes[i, 3])
    ymax_i, xmax_i = max(boxes[i, 0], boxes[i, 2]), max(boxes[i, 1], boxes[i, 3])
    ymin_j, xmin_j = min(boxes[j, 0], boxes[j, 2]), min(boxes[j, 1], boxes[j, 3])
    ymax_j, xmax_j = max(boxes[j, 0], boxes[j, 2]), max(boxes[j, 1], boxes[j, 3])
    area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i)
    area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j)
    if area_i <= 0 or area_j <= 0:
        return 0.0
    iymin, ixmin = max(ymin_i, ymin_j), max(xmin_i, xmin_j)
    iymax, ixmax = min(ymax_i, ymax_j), min(xmax_i, xmax_j)
    inter = max(iymax - iymin, 0.0) * max(ixmax - ixmin, 0.0)
    return inter / (area_i + area_j - inter)


def non_max_suppression(boxes, scores, max_output_size, iou_threshold=0.5,
                        score_threshold=-np.inf):
    """tf.image.non_max_suppression (hard NMS): a priority queue by score, equal scores by
    the lower index; a candidate is compared with the selected boxes, newest first, and
    dropped at the first IoU > iou_threshold."""
    order = sorted((i for i in range(len(scores)) if scores[i] > score_threshold),
                   key=lambda i: (-scores[i], i))
    selected = []
    for i in order:
        if len(selected) >= max_output_size:
            break
        if any(tf_iou(boxes, i, s) > iou_threshold for s in reversed(selected)):
            continue
        selected.append(i)
    return np.array(selected, dtype=np.int64)


def yolo_eval(yolo_outputs, anchors, num_classes, image_shape=None, max_boxes=20,
              score_threshold=.6, iou_threshold=.5):
    """One image: yolo_outputs[l] (H_l, W_l, 3*(5+C)), coarsest first; anchors (n, 2);
    image_shape (h, w) or None for the input size. Returns boxes (N, 4) as x_min, y_min,
    x_max, y_max, scores (N,), classes (N,), in keras's order (class, then NMS order)."""
    num_layers = len(yolo_outputs)
    anchor_mask = FULL_MASK if num_layers == 3 else TINY_MASK
    anchors = np.asarray(anchors, dtype=np.float64)
    input_shape = np.array(yolo_outputs[0].shape[0:2], dtype=np.float64) * 32
    if image_shape is None:
        image_shape = input_shape
    boxes, box_scores = [], []
    for l in range(num_layers):
        b, s = yolo_boxes_and_scores(yolo_outputs[l], anchors[anchor_mask[l]], num_classes,
                                     input_shape, image_shape)
        boxes.append(b)
        box_scores.append(s)
    boxes = np.concatenate(boxes, axis=0)
    box_scores = np.concatenate(box_scores, axis=0)
    mask = box_scores >= score_threshold
    boxes_, scores_, classes_ = [], [], []
    for c in range(num_classes):
        class_boxes = boxes[mask[:, c]]
        class_box_scores = box_scores[:, c][mask[:, c]]
        nms_index = non_max_suppression(class_boxes, class_box_scores, max_boxes,
                                        iou_threshold=iou_threshold)
        boxes_.append(class_boxes[nms_index].reshape(-1, 4))
        scores_.append(class_box_scores[nms_index])
        classes_.append(np.full(len(nms_index), c, dtype=np.int64))
    boxes_ = np.concatenate(boxes_, axis=0)
    return (boxes_[:, [1, 0, 3, 2]], np.concatenate(scores_), np.concatenate(classes_))
