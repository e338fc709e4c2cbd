"""Compact tensors (docs/protocol.md, "yololoss_compact"): which anchor rows a request must
carry, the split of a dense head into its box channels and those rows, and the dense
gradient rebuilt from the compact answer.

keras-yolo3 reads the class logits (and the box channels) of an anchor only when the anchor
holds a truth, and its gradient is zero everywhere but channel 4 of the other anchors. So a
request may carry, per layer, the 5 box channels of every anchor plus the full rows of the
anchors that may hold a truth; the answer is the objectness gradient of every anchor plus
the gradient rows. The dense gradient is zeros with those values put back: the same bits.

Rows chosen with boxes: for each box row of positive width, all 3 anchors of its cell in
every layer, the cell computed exactly as keras's preprocess_true_boxes (and the core)
computes it (float32 boxes, centre (min + max) // 2 in float32, divided by the input size
into float32, times the grid in float64, floored), together with the cell of the same
computation in float64 (the wire contract's rule): a superset of keras's assignment.
With y_true: the anchors whose objectness (channel 4) is nonzero.
"""

from __future__ import annotations

from typing import Any, List, Sequence, Tuple

import numpy as np

__all__ = ["rows_for_boxes", "rows_for_y_true", "head5", "dense_grad"]


def head5(shape: Sequence[int]) -> Tuple[int, int, int, int]:
    """(B, H, W, 5+C) of a head given as [B, H, W, 3*(5+C)] or [B, H, W, 3, 5+C]."""
    if len(shape) == 5:
        if shape[3] != 3:
            raise ValueError("a 5-D head must be [B, H, W, 3, 5+C], not %s" % (tuple(shape),))
        return int(shape[0]), int(shape[1]), int(shape[2]), int(shape[4])
    if len(shape) != 4 or shape[3] % 3:
        raise ValueError("a head must be [B, H, W, 3*(5+C)] or [B, H, W, 3, 5+C], not %s"
                         % (tuple(shape),))
    return int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3]) // 3


def rows_for_boxes(boxes: Any, grids: Sequence[Tuple[int, int]]) -> List[np.ndarray]:
    """The flat anchor indices ((b*H + j)*W + i)*3 + k to send per layer (sorted, int64).
    boxes: [B, T, 5] pixels; grids: (H_l, W_l) per layer, the coarsest first."""
    b64 = np.asarray(boxes, dtype=np.float64)
    if b64.ndim != 3 or b64.shape[2] != 5:
        return [np.zeros(0, np.int64) for _ in grids]     # the server names the error
    b32 = b64.astype(np.float32)
    in_h, in_w = 32 * grids[0][0], 32 * grids[0][1]
    with np.errstate(invalid="ignore", over="ignore"):
        valid = ((b32[..., 2] - b32[..., 0]) > 0) | ((b64[..., 2] - b64[..., 0]) > 0)
        bi, ti = np.nonzero(valid)
        # keras: float32 centre (min + max) // 2, divided by the input size into float32
        c32 = (b32[bi, ti, 0:2] + b32[bi, ti, 2:4]) // np.float32(2)
        x32 = (c32[:, 0].astype(np.float64) / in_w).astype(np.float32).astype(np.float64)
        y32 = (c32[:, 1].astype(np.float64) / in_h).astype(np.float32).astype(np.float64)
        # the wire contract's float64 rule
        x64 = (b64[bi, ti, 0] + b64[bi, ti, 2]) / 2 / in_w
        y64 = (b64[bi, ti, 1] + b64[bi, ti, 3]) / 2 / in_h
    out = []
    for H, W in grids:
        cells = []
        for x, y in ((x32, y32), (x64, y64)):
            i = np.clip(np.nan_to_num(np.floor(x * W), nan=0.0), 0, W - 1).astype(np.int64)
            j = np.clip(np.nan_to_num(np.floor(y * H), nan=0.0), 0, H - 1).astype(np.int64)
            cells.append(((bi.astype(np.int64) * H + j) * W + i) * 3)
        base = np.concatenate(cells)
        idx = (base[:, None] + np.arange(3, dtype=np.int64)[None, :]).reshape(-1)
        out.append(np.unique(idx))
    return out


def rows_for_y_true(y_true: Sequence[Any]) -> List[np.ndarray]:
    """The anchors whose objectness is nonzero, per layer (sorted, int64)."""
    out = []
    for y in y_true:
        a = np.asarray(y)
        if a.dtype == np.uint16:                       # BF16 bits: nonzero but -0.0
            obj = a.reshape(a.shape[0], a.shape[1], a.shape[2], 3, -1)[..., 4] & 0x7FFF
        else:
            obj = a.reshape(a.shape[0], a.shape[1], a.shape[2], 3, -1)[..., 4]
        out.append(np.flatnonzero(obj != 0).astype(np.int64))
    return out


def dense_grad(obj: np.ndarray, rows: np.ndarray, index: np.ndarray,
               shape: Sequence[int]) -> np.ndarray:
    """The dense gradient [B, H, W, 3, 5+C] (reshaped to `shape`) from grad_l_obj
    [B, H, W, 3] and grad_l_rows [N, 5+C] of the rows `index`."""
    B, H, W, K = head5(shape)
    # an explicit fill and a 2-D column write: np.zeros' lazily zeroed pages faulted in by
    # the strided write took 6x as long (bench/bench_client_python.py)
    g = np.empty((B * H * W * 3, K), dtype=obj.dtype)
    g.fill(0)
    g[:, 4] = obj.reshape(-1)
    if len(index):
        g[index] = rows
    return g.reshape(tuple(shape))
