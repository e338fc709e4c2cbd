"""Adapters between yolov5/ultralytics-style YOLOv3 tensors and the keras layout the server
takes. They change layouts only: the loss stays keras-yolo3's (docs/python-client.md).

The two sides, exactly:

    ultralytics heads   list of L tensors [B, 3, H_l, W_l, 5+C], the FINEST grid first
                        (strides 8, 16, 32 for YOLOv3); channel order t_x, t_y, t_w, t_h,
                        t_o, class logits; anchor a of a head = that head's a-th anchor.
    keras heads         list of L tensors [B, H_l, W_l, 3, 5+C], the COARSEST grid first
                        (strides 32, 16, 8), same channels, same anchor order.
    ultralytics targets [N, 6]: image index in the batch, class, x_centre, y_centre, width,
                        height, the last four normalised to [0, 1] by the input size.
    keras boxes         [B, T, 5] float64 pixels: x_min, y_min, x_max, y_max, class; T the
                        most targets of any image, shorter images padded with zero rows.
    input size          32 x the coarsest grid: (32 * H_coarsest, 32 * W_coarsest).

Head conversion is a permute and a list reversal: on torch tensors it is part of the
autograd graph, so the server's gradient flows back to the ultralytics heads unchanged
in value; `grads_to_ultralytics` does the same for numpy gradients from the plain client.
Works on numpy arrays and torch tensors alike (torch is never imported here).
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

__all__ = ["heads_from_ultralytics", "grads_to_ultralytics", "boxes_from_ultralytics",
           "input_size_of"]


def _permute(x: Any, axes: Tuple[int, ...]) -> Any:
    if hasattr(x, "permute"):                 # torch: a differentiable view
        return x.permute(*axes)
    return np.transpose(x, axes)


def heads_from_ultralytics(heads: Sequence[Any]) -> List[Any]:
    """[B, 3, H, W, 5+C] finest first -> [B, H, W, 3, 5+C] coarsest first (views)."""
    out = []
    for l, h in enumerate(heads):
        if len(h.shape) != 5 or h.shape[1] != 3:
            raise ValueError("ultralytics head %d: shape %s, want [B, 3, H, W, 5+C]"
                             % (l, tuple(h.shape)))
        out.append(_permute(h, (0, 2, 3, 1, 4)))
    return out[::-1]


def grads_to_ultralytics(grads: Sequence[Any]) -> List[Any]:
    """The server's gradients (coarsest first, [B, H, W, 3, 5+C] or [B, H, W, 3*(5+C)])
    -> [B, 3, H, W, 5+C] finest first, matching the ultralytics heads."""
    out = []
    for g in grads:
        if len(g.shape) == 4:
            g = g.reshape(g.shape[0], g.shape[1], g.shape[2], 3, g.shape[3] // 3)
        out.append(_permute(g, (0, 3, 1, 2, 4)))
    return out[::-1]


def input_size_of(keras_heads: Sequence[Any]) -> Tuple[int, int]:
    """(height, width) of the network input: 32 x the coarsest (first) grid."""
    return 32 * int(keras_heads[0].shape[1]), 32 * int(keras_heads[0].shape[2])


def boxes_from_ultralytics(targets: Any, batch_size: int,
                           input_size: Tuple[int, int]) -> np.ndarray:
    """[N, 6] (image, class, x, y, w, h normalised) -> [B, T, 5] pixel corners (float64).

    Computed in float64: x_min = (x - w/2) * input_w, x_max = (x + w/2) * input_w (same
    for y with input_h). Targets keep their order within an image."""
    if hasattr(targets, "detach"):
        targets = targets.detach().cpu().double().numpy()
    t = np.asarray(targets, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 6:
        raise ValueError("targets: shape %s, want [N, 6] (image, class, x, y, w, h)"
                         % (t.shape,))
    img = t[:, 0]
    if t.shape[0] and (np.any(img != np.floor(img)) or img.min() < 0 or img.max() >= batch_size):
        bad = int(np.argmax((img != np.floor(img)) | (img < 0) | (img >= batch_size)))
        raise ValueError("targets[%d][0]: image index %g is not an integer in [0, %d)"
                         % (bad, img[bad], batch_size))
    img = img.astype(np.int64)
    counts = np.bincount(img, minlength=batch_size)
    T = max(1, int(counts.max()) if counts.size else 1)
    boxes = np.zeros((batch_size, T, 5), np.float64)
    ih, iw = float(input_size[0]), float(input_size[1])
    x, y, w, h = t[:, 2], t[:, 3], t[:, 4], t[:, 5]
    rows = np.stack([(x - w / 2) * iw, (y - h / 2) * ih, (x + w / 2) * iw, (y + h / 2) * ih,
                     t[:, 1]], axis=1)
    slot = np.zeros(batch_size, np.int64)
    for n in range(t.shape[0]):          # stable: each image's targets in their order
        b = img[n]
        boxes[b, slot[b]] = rows[n]
        slot[b] += 1
    return boxes
