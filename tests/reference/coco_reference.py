"""An independent numpy port of pycocotools' COCOeval (iouType "bbox") and of
py-faster-rcnn's voc_eval.py, written from their algorithms, for comparing the C
evaluator (core/yleval.h) with them value for value.

    ev = COCOevalRef(gt_dataset, dt_list, params)   # dicts as in COCO's JSON files
    ev.evaluate(); ev.accumulate(); stats = ev.summarize()
    ev.eval["precision"]  # [T,R,K,A,M] float64, as pycocotools'

Conventions this project fixes where the references leave a choice (docs/metrics.md):
- a truth without "area" gets width * height (pycocotools raises KeyError);
- a truth without "iscrowd" is not a crowd;
- voc_eval's detections are sorted with kind='mergesort' over the file order of
  py-faster-rcnn's writer (image order, then each image's detections), where voc_eval's
  default quicksort leaves equal scores in an unspecified order.
"""

from collections import defaultdict

import numpy as np


def linspace_params(start, stop, step):
    """Params.setDetParams' thresholds: np.linspace with np.round'ed counts."""
    return np.linspace(start, stop, int(np.round((stop - start) / step)) + 1, endpoint=True)


class Params:
    def __init__(self):
        self.imgIds = []
        self.catIds = []
        self.iouThrs = linspace_params(.5, 0.95, .05)
        self.recThrs = linspace_params(.0, 1.00, .01)
        self.maxDets = [1, 10, 100]
        self.areaRng = [[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]]
        self.areaRngLbl = ['all', 'small', 'medium', 'large']
        self.useCats = 1


def bbox_iou(d, g, iscrowd):
    """maskApi.c bbIou: o[d][g], intersection over the detection's area for a crowd."""
    o = np.zeros((len(d), len(g)))
    for j, G in enumerate(g):
        ga = G[2] * G[3]
        for i, D in enumerate(d):
            da = D[2] * D[3]
            w = min(D[2] + D[0], G[2] + G[0]) - max(D[0], G[0])
            if w <= 0:
                continue
            h = min(D[3] + D[1], G[3] + G[1]) - max(D[1], G[1])
            if h <= 0:
                continue
            inter = w * h
            u = da if iscrowd[j] else da + ga - inter
            o[i, j] = inter / u
    return o


class COCOevalRef:
    def __init__(self, gt, dt, params=None):
        self.gt_anns = []
        for a in gt["annotations"]:
            a = dict(a)
            a["bbox"] = [float(v) for v in a["bbox"]]
            if "area" not in a:
                a["area"] = a["bbox"][2] * a["bbox"][3]
            a.setdefault("iscrowd", 0)
            self.gt_anns.append(a)
        self.dt_anns = []
        for i, d in enumerate(dt):  # COCO.loadRes: id = position + 1, area = w * h
            d = dict(d)
            d["bbox"] = [float(v) for v in d["bbox"]]
            d["area"] = d["bbox"][2] * d["bbox"][3]
            d["id"] = i + 1
            d["iscrowd"] = 0
            self.dt_anns.append(d)
        self.params = params or Params()
        if params is None:
            self.params.imgIds = sorted(im["id"] for im in gt["images"])
            self.params.catIds = sorted(c["id"] for c in gt["categories"])

    def _prepare(self):
        p = self.params
        img_set, cat_set = set(p.imgIds), set(p.catIds)
        # COCO.getAnnIds(imgIds=..., catIds=...): image by image in imgIds order, each
        # image's annotations in file order
        def select(anns):
            by_img = defaultdict(list)
            for a in anns:
                by_img[a["image_id"]].append(a)
            out = []
            for i in p.imgIds:
                out.extend(a for a in by_img.get(i, [])
                           if not p.useCats or a["category_id"] in cat_set)
            return out
        gts, dts = select(self.gt_anns), select(self.dt_anns)
        for g in gts:
            g["ignore"] = "iscrowd" in g and g["iscrowd"]  # overwrites any "ignore" given
        self._gts, self._dts = defaultdict(list), defaultdict(list)
        for g in gts:
            self._gts[g["image_id"], g["category_id"]].append(g)
        for d in dts:
            self._dts[d["image_id"], d["category_id"]].append(d)
        del img_set

    def _lists(self, imgId, catId):
        p = self.params
        if p.useCats:
            return self._gts[imgId, catId], self._dts[imgId, catId]
        return ([g for c in p.catIds for g in self._gts[imgId, c]],
                [d for c in p.catIds for d in self._dts[imgId, c]])

    def computeIoU(self, imgId, catId):
        p = self.params
        gt, dt = self._lists(imgId, catId)
        if len(gt) == 0 and len(dt) == 0:
            return []
        inds = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in inds][:p.maxDets[-1]]
        if len(gt) == 0 or len(dt) == 0:
            return []
        return bbox_iou([d["bbox"] for d in dt], [g["bbox"] for g in gt],
                        [int(g["iscrowd"]) for g in gt])

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        p = self.params
        gt, dt = self._lists(imgId, catId)
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g["_ignore"] = 1 if (g["ignore"] or g["area"] < aRng[0] or g["area"] > aRng[1]) else 0
        gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
        gt = [gt[i] for i in gtind]
        dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dtind[0:maxDet]]
        iscrowd = [int(o["iscrowd"]) for o in gt]
        ious = self.ious[imgId, catId]
        ious = ious[:, gtind] if len(ious) > 0 else ious
        T, G, D = len(p.iouThrs), len(gt), len(dt)
        gtm, dtm = np.zeros((T, G)), np.zeros((T, D))
        gtIg = np.array([g["_ignore"] for g in gt])
        dtIg = np.zeros((T, D))
        if len(ious) != 0:
            for tind, t in enumerate(p.iouThrs):
                for dind, d in enumerate(dt):
                    iou = min([t, 1 - 1e-10])
                    m = -1
                    for gind, g in enumerate(gt):
                        if gtm[tind, gind] > 0 and not iscrowd[gind]:
                            continue
                        if m > -1 and gtIg[m] == 0 and gtIg[gind] == 1:
                            break
                        if ious[dind, gind] < iou:
                            continue
                        iou = ious[dind, gind]
                        m = gind
                    if m == -1:
                        continue
                    dtIg[tind, dind] = gtIg[m]
                    dtm[tind, dind] = gt[m]["id"]
                    gtm[tind, m] = d["id"]
        a = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, len(dt)))
        dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
        return {"dtIds": [d["id"] for d in dt], "dtMatches": dtm, "dtScores": [d["score"] for d in dt],
                "gtIgnore": gtIg, "dtIgnore": dtIg}

    def evaluate(self):
        p = self.params
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        self._prepare()
        catIds = p.catIds if p.useCats else [-1]
        self.ious = {(i, c): self.computeIoU(i, c) for i in p.imgIds for c in catIds}
        maxDet = p.maxDets[-1]
        self.evalImgs = [self.evaluateImg(i, c, a, maxDet)
                         for c in catIds for a in p.areaRng for i in p.imgIds]

    def accumulate(self):
        p = self.params
        T, R = len(p.iouThrs), len(p.recThrs)
        K = len(p.catIds) if p.useCats else 1
        A, M = len(p.areaRng), len(p.maxDets)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        scores = -np.ones((T, R, K, A, M))
        I0, A0 = len(p.imgIds), A
        for k in range(K):
            for a in range(A):
                for m, maxDet in enumerate(p.maxDets):
                    E = [self.evalImgs[k * A0 * I0 + a * I0 + i] for i in range(I0)]
                    E = [e for e in E if e is not None]
                    if len(E) == 0:
                        continue
                    dtScores = np.concatenate([e["dtScores"][0:maxDet] for e in E])
                    inds = np.argsort(-dtScores, kind="mergesort")
                    dtScoresSorted = dtScores[inds]
                    dtm = np.concatenate([e["dtMatches"][:, 0:maxDet] for e in E], axis=1)[:, inds]
                    dtIg = np.concatenate([e["dtIgnore"][:, 0:maxDet] for e in E], axis=1)[:, inds]
                    gtIg = np.concatenate([e["gtIgnore"] for e in E])
                    npig = np.count_nonzero(gtIg == 0)
                    if npig == 0:
                        continue
                    tps = np.logical_and(dtm, np.logical_not(dtIg))
                    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtIg))
                    tp_sum = np.cumsum(tps, axis=1).astype(dtype=np.float64)
                    fp_sum = np.cumsum(fps, axis=1).astype(dtype=np.float64)
                    for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
                        tp, fp = np.array(tp), np.array(fp)
                        nd = len(tp)
                        rc = tp / npig
                        pr = tp / (fp + tp + np.spacing(1))
                        q, ss = np.zeros((R,)), np.zeros((R,))
                        recall[t, k, a, m] = rc[-1] if nd else 0
                        pr, q = pr.tolist(), q.tolist()
                        for i in range(nd - 1, 0, -1):
                            if pr[i] > pr[i - 1]:
                                pr[i - 1] = pr[i]
                        pis = np.searchsorted(rc, p.recThrs, side="left")
                        try:
                            for ri, pi in enumerate(pis):
                                q[ri] = pr[pi]
                                ss[ri] = dtScoresSorted[pi]
                        except IndexError:
                            pass
                        precision[t, :, k, a, m] = np.array(q)
                        scores[t, :, k, a, m] = np.array(ss)
        self.eval = {"counts": [T, R, K, A, M], "precision": precision, "recall": recall,
                     "scores": scores}

    def _summarize(self, ap=1, iouThr=None, areaRng="all", maxDets=100):
        p = self.params
        aind = [i for i, l in enumerate(p.areaRngLbl) if l == areaRng]
        mind = [i for i, mDet in enumerate(p.maxDets) if mDet == maxDets]
        s = self.eval["precision"] if ap == 1 else self.eval["recall"]
        if iouThr is not None:
            s = s[np.where(iouThr == p.iouThrs)[0]]
        s = s[:, :, :, aind, mind] if ap == 1 else s[:, :, aind, mind]
        return -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])

    def summarize(self):
        md = self.params.maxDets
        S = self._summarize
        self.stats = np.array([
            S(1), S(1, iouThr=.5, maxDets=md[2]), S(1, iouThr=.75, maxDets=md[2]),
            S(1, areaRng="small", maxDets=md[2]), S(1, areaRng="medium", maxDets=md[2]),
            S(1, areaRng="large", maxDets=md[2]), S(0, maxDets=md[0]), S(0, maxDets=md[1]),
            S(0, maxDets=md[2]), S(0, areaRng="small", maxDets=md[2]),
            S(0, areaRng="medium", maxDets=md[2]), S(0, areaRng="large", maxDets=md[2])],
            dtype=np.float64)
        return self.stats


# --- py-faster-rcnn lib/datasets/voc_eval.py ---

def voc_ap(rec, prec, use_07_metric=False):
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.
    else:
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.concatenate(([0.], prec, [0.]))
        for i in range(mpre.size - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return ap


def voc_eval_class(recs, dets, ovthresh=0.5, use_07_metric=False):
    """voc_eval for one class. recs: {image: [(xmin, ymin, xmax, ymax, difficult), ...]}
    over the image set; dets: [(image, score, xmin, ymin, xmax, ymax), ...] in file order."""
    class_recs = {}
    npos = 0
    for name, objs in recs.items():
        bbox = np.array([o[:4] for o in objs])
        difficult = np.array([o[4] for o in objs]).astype(bool)
        npos = npos + sum(~difficult)
        class_recs[name] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(objs)}
    image_ids = [d[0] for d in dets]
    confidence = np.array([d[1] for d in dets], dtype=np.float64)
    BB = np.array([d[2:] for d in dets], dtype=np.float64).reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="mergesort")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    with np.errstate(divide="ignore", invalid="ignore"):
        for d in range(nd):
            R = class_recs[image_ids[d]]
            bb = BB[d, :].astype(float)
            ovmax = -np.inf
            BBGT = R["bbox"].astype(float)
            if BBGT.size > 0:
                ixmin = np.maximum(BBGT[:, 0], bb[0])
                iymin = np.maximum(BBGT[:, 1], bb[1])
                ixmax = np.minimum(BBGT[:, 2], bb[2])
                iymax = np.minimum(BBGT[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin + 1., 0.)
                ih = np.maximum(iymax - iymin + 1., 0.)
                inters = iw * ih
                uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                       (BBGT[:, 2] - BBGT[:, 0] + 1.) * (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > ovthresh:
                if not R["difficult"][jmax]:
                    if not R["det"][jmax]:
                        tp[d] = 1.
                        R["det"][jmax] = 1
                    else:
                        fp[d] = 1.
            else:
                fp[d] = 1.
        fp = np.cumsum(fp)
        tp = np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return voc_ap(rec, prec, use_07_metric)


def voc_from_coco(gt, dt, img_ids, cat_ids, ovthresh=0.5, use_07_metric=False):
    """Per-class AP (list over cat_ids) of COCO-format truths and results, boxes turned into
    (x, y, x + w, y + h), difficult from the annotation's "difficult" (0 when absent), the
    results written image by image (img_ids order) as py-faster-rcnn's writer does."""
    img_set = set(img_ids)
    aps = []
    for c in cat_ids:
        recs = {i: [] for i in img_ids}
        for a in gt["annotations"]:
            if a["category_id"] == c and a["image_id"] in img_set:
                x, y, w, h = [float(v) for v in a["bbox"]]
                recs[a["image_id"]].append((x, y, x + w, y + h, int(a.get("difficult", 0))))
        by_img = defaultdict(list)
        for d in dt:
            if d["category_id"] == c and d["image_id"] in img_set:
                x, y, w, h = [float(v) for v in d["bbox"]]
                by_img[d["image_id"]].append((d["image_id"], float(d["score"]), x, y, x + w, y + h))
        dets = [d for i in img_ids for d in by_img[i]]
        aps.append(voc_eval_class(recs, dets, ovthresh, use_07_metric))
    return np.array(aps, dtype=np.float64)
