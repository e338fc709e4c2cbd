"""Detection metrics through yololossd: a drop-in for pycocotools' COCOeval, and a
torchmetrics-style accumulator for training loops.

    from yololoss.metrics import COCOeval
    E = COCOeval(cocoGt, cocoDt, "bbox")        # COCO objects, dicts, result lists, paths
    E.params.maxDets = [1, 10, 100]             # pycocotools' Params, by the same names
    E.evaluate(); E.accumulate(); E.summarize() # prints pycocotools' 12 lines
    E.stats, E.eval["precision"]                # the same float64 values as pycocotools

The evaluation runs in the daemon's C evaluator (the model "coco-bbox", docs/protocol.md);
this module only packs the truths and detections into binary tensors and unpacks the
arrays. pycocotools need not be installed: a COCO object is read through its `.dataset`.
"""

import copy
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, cast

import numpy as np

from ._errors import YoloLossHTTPError, YoloLossProtocolError

__all__ = ["COCOeval", "Params", "MeanAveragePrecision", "evaluate"]

_DEFAULT_URL = "http://127.0.0.1:8000"


def _client(client: Any, model: str) -> Any:
    """A client of `model` with client's settings (a copy: the caller's keeps its model)."""
    if client is None:
        from ._client import YoloLossClient
        client = YoloLossClient(os.environ.get("YOLOLOSS_URL") or _DEFAULT_URL)
    c = copy.copy(client)
    c.model = model
    return c


class Params:
    """pycocotools' Params for iouType "bbox": the same attribute names and defaults
    (iouThrs and recThrs by np.linspace as setDetParams builds them)."""

    def __init__(self, iouType: str = "bbox") -> None:
        if iouType != "bbox":
            raise ValueError("iouType %r is not supported (the service evaluates 'bbox')"
                             % (iouType,))
        self.imgIds: List[int] = []
        self.catIds: List[int] = []
        self.iouThrs = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
        self.recThrs = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
        self.maxDets = [1, 10, 100]
        self.areaRng = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2],
                        [96 ** 2, 1e5 ** 2]]
        self.areaRngLbl = ["all", "small", "medium", "large"]
        self.useCats = 1
        self.iouType = iouType

    def wire(self) -> Dict[str, str]:
        """The request parameters (JSON text in strings: Open Inference Protocol
        parameters are scalars). Floats as repr, which gives every double back."""
        def floats(v: Any) -> str:
            return "[" + ",".join(repr(float(x)) for x in np.asarray(v, dtype=np.float64).ravel()) + "]"
        return {
            "iouThrs": floats(self.iouThrs),
            "recThrs": floats(self.recThrs),
            "maxDets": json.dumps([int(m) for m in self.maxDets]),
            "areaRng": "[" + ",".join("[%r,%r]" % (float(a[0]), float(a[1]))
                                      for a in cast(Sequence[Sequence[float]], self.areaRng)) + "]",
            "areaRngLbl": json.dumps([str(s) for s in self.areaRngLbl]),
            "useCats": str(int(bool(self.useCats))),
            "imgIds": json.dumps([int(i) for i in np.unique(np.asarray(self.imgIds, dtype=np.int64))]),
            "catIds": json.dumps([int(i) for i in np.unique(np.asarray(self.catIds, dtype=np.int64))]),
        }


# -- inputs ------------------------------------------------------------------------------

def _load(x: Any) -> Any:
    if isinstance(x, (str, bytes, os.PathLike)):
        with open(x) as f:
            return json.load(f)
    return x


def _gt_dataset(gt: Any) -> Mapping[str, Any]:
    d = getattr(gt, "dataset", None)
    d = _load(gt) if d is None else d
    if not isinstance(d, Mapping) or "annotations" not in d or "images" not in d:
        raise ValueError("cocoGt must be a pycocotools COCO object, a COCO-format dict or its "
                         "JSON file (with 'images', 'annotations', 'categories')")
    return d


def _results(dt: Any) -> List[Mapping[str, Any]]:
    """A result list as COCO.loadRes reads it: a COCO object (its annotations), a list of
    {image_id, category_id, bbox, score}, a JSON file of one, or an [N, 7] array of
    (image_id, x, y, w, h, score, category_id) rows."""
    d = getattr(dt, "dataset", None)
    if d is not None:
        return list(d.get("annotations", []))
    dt = _load(dt)
    if isinstance(dt, Mapping):
        return list(dt.get("annotations", []))
    if isinstance(dt, np.ndarray):
        if dt.ndim != 2 or dt.shape[1] != 7:
            raise ValueError("a results array must be [N, 7]: image_id, x, y, w, h, score, "
                             "category_id")
        return [{"image_id": int(r[0]), "bbox": [r[1], r[2], r[3], r[4]], "score": r[5],
                 "category_id": int(r[6])} for r in dt]
    if not isinstance(dt, (list, tuple)):
        raise ValueError("cocoDt must be a COCO object, a result list, its JSON file or an "
                         "[N, 7] array")
    return list(dt)


class _Tensors:
    """The truths and detections as the columns the evaluation models take."""

    def __init__(self, gt: Mapping[str, Any], dts: Sequence[Mapping[str, Any]]) -> None:
        anns = gt["annotations"]
        self.gt_image_id = np.array([a["image_id"] for a in anns], dtype=np.int64)
        self.gt_category_id = np.array([a["category_id"] for a in anns], dtype=np.int64)
        self.gt_bbox = np.array([[float(v) for v in a["bbox"]] for a in anns],
                                dtype=np.float64).reshape(-1, 4)
        # pycocotools reads "area" (a truth without one gets w * h here: docs/metrics.md)
        self.gt_area = np.array([float(a["area"]) if "area" in a else
                                 float(a["bbox"][2]) * float(a["bbox"][3]) for a in anns],
                                dtype=np.float64)
        # _prepare: ignore = "iscrowd" in gt and gt["iscrowd"] (any "ignore" is overwritten)
        self.gt_iscrowd = np.array([1 if a.get("iscrowd", 0) else 0 for a in anns], dtype=np.int32)
        self.gt_difficult = np.array([1 if a.get("difficult", 0) else 0 for a in anns],
                                     dtype=np.int32)
        self.gt_id = np.array([a.get("id", i + 1) for i, a in enumerate(anns)], dtype=np.int64)
        self.dt_image_id = np.array([d["image_id"] for d in dts], dtype=np.int64)
        self.dt_category_id = np.array([d["category_id"] for d in dts], dtype=np.int64)
        self.dt_bbox = np.array([[float(v) for v in d["bbox"]] for d in dts],
                                dtype=np.float64).reshape(-1, 4)
        self.dt_score = np.array([float(d["score"]) for d in dts], dtype=np.float64)
        self.image_ids = np.unique(np.array([im["id"] for im in gt["images"]], dtype=np.int64))
        self.category_ids = np.unique(np.array([c["id"] for c in gt.get("categories", [])],
                                               dtype=np.int64))

    def items(self) -> List[Tuple[str, np.ndarray]]:
        names = ("gt_image_id", "gt_category_id", "gt_bbox", "gt_area", "gt_iscrowd",
                 "gt_difficult", "gt_id", "dt_image_id", "dt_category_id", "dt_bbox", "dt_score",
                 "image_ids", "category_ids")
        return [(n, getattr(self, n)) for n in names]


_DTYPES = {"FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
_WIRE = {np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}


class _EvalCall:
    """One request to an evaluation model, in the form YoloLossClient.send takes: encode()
    gives the body, result() reads the answer."""

    binary = False  # no shared memory: the tensors go on the wire

    def __init__(self, tensors: Sequence[Tuple[str, np.ndarray]], parameters: Mapping[str, Any]):
        self.tensors = [(n, np.ascontiguousarray(a)) for n, a in tensors]
        self.parameters = dict(parameters)

    def shm_bytes(self) -> int:
        return 0

    def encode(self, shm: Any = None) -> Tuple[List[Any], Dict[str, str]]:
        inputs = [{"name": n, "datatype": _WIRE[a.dtype], "shape": list(a.shape),
                   "parameters": {"binary_data_size": a.nbytes}} for n, a in self.tensors]
        params = dict(self.parameters)
        params["binary_data_output"] = True
        head = json.dumps({"inputs": inputs, "parameters": params}).encode()
        body = [head] + [a.reshape(-1).view(np.uint8) for _, a in self.tensors if a.nbytes]
        return body, {"Content-Type": "application/octet-stream",
                      "Inference-Header-Content-Length": str(len(head))}

    def result(self, status: int, rh: Mapping[str, str], data: Any,
               shm: Any = None) -> Dict[str, np.ndarray]:
        raw = memoryview(data).cast("B") if data is not None else memoryview(b"")
        if status != 200:
            try:
                msg = json.loads(bytes(raw).decode("utf-8", "replace")).get("error", "")
            except (ValueError, AttributeError):
                msg = bytes(raw[:200]).decode("utf-8", "replace")
            raise YoloLossHTTPError(status, msg, rh)
        try:
            hlen = int(rh.get("inference-header-content-length", len(raw)))
            js = json.loads(bytes(raw[:hlen]))
            out, at = {}, hlen
            for o in js["outputs"]:
                dt = np.dtype(_DTYPES[o["datatype"]])
                shape = tuple(int(s) for s in o["shape"])
                if "data" in o:
                    a = np.array([np.nan if v is None else v for v in o["data"]], dtype=dt)
                else:
                    n = int(o["parameters"]["binary_data_size"])
                    a = np.frombuffer(bytes(raw[at:at + n]), dtype=dt)
                    at += n
                out[o["name"]] = a.reshape(shape).copy()
            return out
        except (KeyError, ValueError, TypeError) as e:
            raise YoloLossProtocolError(200, "malformed answer from the server: %s" % e,
                                        rh) from None


def evaluate(gt: Any, dt: Any, params: Optional[Params] = None, client: Any = None,
             model: str = "coco-bbox", timeout: Optional[float] = None) -> Dict[str, np.ndarray]:
    """One evaluation: the model's output arrays by name (coco-bbox: stats, ap, precision,
    recall, scores, counts; voc07/voc: ap, map, counts)."""
    ds = _gt_dataset(gt)
    t = _Tensors(ds, _results(dt))
    p = params
    if p is None:
        p = Params()
        p.imgIds = t.image_ids.tolist()
        p.catIds = t.category_ids.tolist()
    wire = p.wire() if model == "coco-bbox" else {"iouThrs": p.wire()["iouThrs"]} if params else {}
    return _client(client, model).send(_EvalCall(t.items(), wire), timeout)


# -- the drop-in -------------------------------------------------------------------------

# (ap, iouThr, areaRng, maxDets index) of pycocotools' _summarizeDets; the first line's
# maxDets is _summarize's default, the literal 100, whatever params.maxDets holds
_LINES = [(1, None, "all", None), (1, .5, "all", 2), (1, .75, "all", 2), (1, None, "small", 2),
          (1, None, "medium", 2), (1, None, "large", 2), (0, None, "all", 0),
          (0, None, "all", 1), (0, None, "all", 2), (0, None, "small", 2),
          (0, None, "medium", 2), (0, None, "large", 2)]


class COCOeval:
    """pycocotools.cocoeval.COCOeval for iouType "bbox", computed by the service.

    cocoGt: a pycocotools COCO object (read through .dataset), a COCO-format dict or its
    JSON file. cocoDt: a COCO object (cocoGt.loadRes(...)), a result list, its JSON file or
    an [N, 7] array, read as COCO.loadRes reads them (area = w * h, iscrowd 0, ids from 1).
    client: a YoloLossClient (default: $YOLOLOSS_URL, else http://127.0.0.1:8000).

    evaluate() sends the set and fetches every array, accumulate() fills .eval, summarize()
    prints pycocotools' 12 lines and fills .stats. .evalImgs and .ious (pycocotools'
    per-image intermediate lists) are not computed: the service keeps them in C.
    """

    def __init__(self, cocoGt: Any = None, cocoDt: Any = None, iouType: str = "bbox",
                 client: Any = None) -> None:
        if not iouType:
            print("iouType not specified. use default iouType bbox")
            iouType = "bbox"
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.params = Params(iouType=iouType)
        self.eval: Dict[str, Any] = {}
        self.stats = np.zeros(0)
        self.evalImgs: List[Any] = []
        self.ious: Dict[Any, Any] = {}
        self._paramsEval: Optional[Params] = None
        self._client = client
        self._arrays: Optional[Dict[str, np.ndarray]] = None
        self._gt = _gt_dataset(cocoGt) if cocoGt is not None else None
        if self._gt is not None:
            self.params.imgIds = sorted(int(im["id"]) for im in self._gt["images"])
            self.params.catIds = sorted(int(c["id"]) for c in self._gt.get("categories", []))

    def evaluate(self) -> None:
        if self._gt is None or self.cocoDt is None:
            raise ValueError("COCOeval needs cocoGt and cocoDt to evaluate")
        p = self.params
        if not p.useCats:
            pass  # pycocotools evaluates every category as one (catIds = [-1] internally)
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self.params = p
        self._paramsEval = copy.deepcopy(p)
        self._arrays = evaluate(self._gt, self.cocoDt, p, self._client)

    def accumulate(self, p: Optional[Params] = None) -> None:
        if self._arrays is None:
            print("Please run evaluate() first")
            return
        a = self._arrays
        if not self.params.useCats:
            self.params.catIds = [-1]  # pycocotools' accumulate does the same
        self.eval = {"params": p or self._paramsEval or self.params,
                     "counts": [int(v) for v in a["counts"]],
                     "precision": a["precision"], "recall": a["recall"], "scores": a["scores"]}

    def summarize(self) -> None:
        if not self.eval:
            raise Exception("Please run accumulate() first")
        p = self.params
        arrays = self._arrays or {}
        if "stats" not in arrays:
            raise IndexError("summarize() needs at least 3 maxDets (it reads maxDets[2])")
        stats = arrays["stats"].copy()
        if not isinstance(p.iouThrs, np.ndarray):
            # pycocotools finds AP50/AP75 by np.where(iouThr == p.iouThrs): a float compared
            # with a list is False, so with a list they are -1 there; so here
            stats[1] = stats[2] = -1.0
        for i, (ap, thr, area, m) in enumerate(_LINES):
            title = "Average Precision" if ap else "Average Recall"
            typ = "(AP)" if ap else "(AR)"
            iou = "{:0.2f}:{:0.2f}".format(p.iouThrs[0], p.iouThrs[-1]) if thr is None \
                else "{:0.2f}".format(thr)
            print(" {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}".format(
                title, typ, iou, area, 100 if m is None else p.maxDets[m], stats[i]))
        self.stats = stats.copy()

    @property
    def per_class_ap(self) -> Dict[int, float]:
        """AP@[.50:.95] of each category (area all, maxDets[2]; -1 without truths)."""
        if self._arrays is None or "ap" not in self._arrays:
            return {}
        ids = self.params.catIds if self.params.useCats else [-1]
        return {int(c): float(v) for c, v in zip(ids, self._arrays["ap"])}

    def __str__(self) -> str:
        self.summarize()
        return ""


# -- a training-loop accumulator -----------------------------------------------------------

class MeanAveragePrecision:
    """torchmetrics-style mAP: update(preds, targets) per batch, compute() at the end.

    preds: one dict per image with "boxes" [N, 4], "scores" [N], "labels" [N];
    targets: one dict per image with "boxes" [G, 4], "labels" [G], and optionally
    "iscrowd" [G], "area" [G], "image_id" (an int; default: images numbered in update
    order). Arrays may be numpy arrays, lists or torch tensors. box_format: "xyxy"
    (torchmetrics' default) or "xywh" (COCO's). compute() returns {"map", "map_50",
    "map_75", "map_small", "map_medium", "map_large", "mar_1", "mar_10", "mar_100",
    "mar_small", "mar_medium", "mar_large", "map_per_class", "classes"} as pycocotools
    computes them, through the service. reset() forgets the images.
    """

    def __init__(self, box_format: str = "xyxy", client: Any = None,
                 params: Optional[Params] = None) -> None:
        if box_format not in ("xyxy", "xywh"):
            raise ValueError("box_format must be 'xyxy' or 'xywh'")
        self.box_format = box_format
        self.client = client
        self.params = params
        self.reset()

    def reset(self) -> None:
        self._images: List[Dict[str, Any]] = []
        self._anns: List[Dict[str, Any]] = []
        self._dets: List[Dict[str, Any]] = []
        self._cats: set = set()

    def _xywh(self, b: Any) -> np.ndarray:
        a = np.asarray(_numpy(b), dtype=np.float64).reshape(-1, 4)
        if self.box_format == "xyxy":
            a = np.stack([a[:, 0], a[:, 1], a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)
        return a

    def update(self, preds: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> None:
        if len(preds) != len(targets):
            raise ValueError("preds and targets must hold the same images (%d and %d)"
                             % (len(preds), len(targets)))
        for pr, tg in zip(preds, targets):
            im = int(_numpy(tg["image_id"])) if "image_id" in tg else len(self._images) + 1
            self._images.append({"id": im})
            gb = self._xywh(tg["boxes"])
            gl = np.asarray(_numpy(tg["labels"]), dtype=np.int64).reshape(-1)
            crowd = np.asarray(_numpy(tg.get("iscrowd", np.zeros(len(gl)))), dtype=np.int64).reshape(-1)
            area = tg.get("area")
            area = None if area is None else np.asarray(_numpy(area), dtype=np.float64).reshape(-1)
            for j in range(len(gl)):
                a = {"id": len(self._anns) + 1, "image_id": im, "category_id": int(gl[j]),
                     "bbox": gb[j].tolist(), "iscrowd": int(crowd[j])}
                if area is not None:
                    a["area"] = float(area[j])
                self._anns.append(a)
                self._cats.add(int(gl[j]))
            db = self._xywh(pr["boxes"])
            ds = np.asarray(_numpy(pr["scores"]), dtype=np.float64).reshape(-1)
            dl = np.asarray(_numpy(pr["labels"]), dtype=np.int64).reshape(-1)
            for j in range(len(dl)):
                self._dets.append({"image_id": im, "category_id": int(dl[j]),
                                   "bbox": db[j].tolist(), "score": float(ds[j])})
                self._cats.add(int(dl[j]))

    def compute(self) -> Dict[str, Any]:
        gt = {"images": self._images, "annotations": self._anns,
              "categories": [{"id": c} for c in sorted(self._cats)]}
        p = copy.deepcopy(self.params) if self.params is not None else Params()
        if self.params is None or not p.imgIds:
            p.imgIds = sorted(im["id"] for im in self._images)
        if self.params is None or not p.catIds:
            p.catIds = sorted(self._cats)
        a = evaluate(gt, self._dets, p, self.client)
        names = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_1",
                 "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")
        out: Dict[str, Any] = {n: float(v) for n, v in zip(names, a["stats"])}
        out["map_per_class"] = a["ap"]
        out["classes"] = np.array(p.catIds, dtype=np.int64)
        return out


def _numpy(x: Any) -> Any:
    """numpy of a torch tensor (without importing torch), or x."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    return x

