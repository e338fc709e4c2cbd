"""Result: what one compute() returned, as numpy arrays and floats."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ._compact import dense_grad

__all__ = ["Result", "TERM_NAMES", "STAT_NAMES"]

TERM_NAMES = ("xy", "wh", "confidence", "class")
STAT_NAMES = ("count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50",
              "recall75", "ignored")
_COUNT_STATS = ("count", "ignored")


class Result:
    """What one compute() returned.

    loss: float. terms: {"xy", "wh", "confidence", "class"} -> float (they sum to loss).
    layer_terms: float32 [L, 4]; image_terms: float32 [B, 4] (per image, not divided by B).
    stats: {"count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50",
    "recall75", "ignored"} -> array [L] (darknet's statistics per layer; count and ignored
    as int64). grads: list of L arrays shaped like the outputs sent (float32, or float64
    with grad_datatype="FP64"), or None when not asked for. outputs: every output as the
    server sent it (name -> array). Plain data: it pickles and deep-copies.
    """

    loss: float
    terms: Dict[str, float]
    layer_terms: np.ndarray
    image_terms: Optional[np.ndarray]
    stats: Dict[str, np.ndarray]
    outputs: Dict[str, np.ndarray]
    model_name: Optional[str]
    id: Optional[str]

    def __init__(self, outputs: Mapping[str, np.ndarray], model_name: Optional[str] = None,
                 request_id: Optional[str] = None,
                 compact: Optional[List[Tuple[np.ndarray, Tuple[int, ...]]]] = None) -> None:
        self.outputs = dict(outputs)
        self.model_name = model_name
        self.id = request_id
        self.loss = float(outputs["loss"].reshape(-1)[0])
        self.terms = {n: float(v) for n, v in zip(TERM_NAMES, outputs["loss_terms"].reshape(-1))}
        self.layer_terms = outputs["layer_terms"]
        self.image_terms = outputs.get("image_terms")
        st = outputs["stats"]
        self.stats = {}
        for k, name in enumerate(STAT_NAMES):
            col = st[:, k]
            self.stats[name] = col.astype(np.int64) if name in _COUNT_STATS else col
        # compact answers: (row index, dense shape) per layer; the dense gradients are
        # rebuilt from grad_l_obj and grad_l_rows when first read
        self.compact = compact
        self._grads: Optional[List[np.ndarray]] = None
        if compact is None:
            found: List[np.ndarray] = []
            while "grad_%d" % len(found) in outputs:
                found.append(outputs["grad_%d" % len(found)])
            self._grads = found or None

    @property
    def grads(self) -> Optional[List[np.ndarray]]:
        """d loss / d output_l, shaped like the outputs sent (float32, or float64 with
        grad_datatype="FP64"); None when not asked for."""
        if self._grads is None and self.compact is not None and "grad_0_obj" in self.outputs:
            self._grads = [dense_grad(self.outputs["grad_%d_obj" % l],
                                      self.outputs["grad_%d_rows" % l], idx, shape)
                           for l, (idx, shape) in enumerate(self.compact)]
        return self._grads

    @grads.setter
    def grads(self, value: Optional[List[np.ndarray]]) -> None:
        self._grads = value

    def to_dict(self) -> Dict[str, Any]:
        """Plain Python values (for JSON logs); gradients left out."""
        return {"loss": self.loss, "terms": dict(self.terms),
                "layer_terms": self.layer_terms.tolist(),
                "image_terms": None if self.image_terms is None else self.image_terms.tolist(),
                "stats": {k: v.tolist() for k, v in self.stats.items()}}

    def __repr__(self) -> str:
        return "Result(loss=%.6g, terms=%s)" % (
            self.loss, ", ".join("%s=%.6g" % kv for kv in self.terms.items()))
