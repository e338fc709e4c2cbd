"""yololoss.metrics against the project's numpy port of pycocotools (tests/reference/
coco_reference.py, written from pycocotools' algorithm): the drop-in's arrays must be the
same float64 bytes on randomised sets (crowds, tied scores and IoUs, empty categories,
images without truths or detections, custom Params). With PYCOCOTOOLS_PATH (a cocoapi
PythonAPI folder built with cython3; not committed) the drop-in is also compared with the
real pycocotools, and the speed ratio printed; skipped with a reason otherwise.

    YL_DAEMON=build/yololossd /usr/bin/python3 -m pytest -q clients/python/tests/test_metrics.py
"""

import contextlib
import copy
import io
import json
import os
import sys
import time

import numpy as np
import pytest

from yololoss import YoloLossClient, YoloLossHTTPError
from yololoss.metrics import COCOeval, MeanAveragePrecision, Params, evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
from test_eval_vs_reference import configs, random_set, same_bytes  # noqa: E402
import coco_reference as ref  # noqa: E402

SEEDS = [int(os.environ.get("YL_TEST_SEED", "2000")) + i for i in range(6)]


def reference(gt, dets, cfg):
    p = ref.Params()
    p.imgIds = sorted(i["id"] for i in gt["images"])
    p.catIds = sorted(c["id"] for c in gt["categories"])
    for k, v in cfg.items():
        setattr(p, k, v)
    ev = ref.COCOevalRef(copy.deepcopy(gt), copy.deepcopy(dets), p)
    ev.evaluate()
    ev.accumulate()
    stats = ev.summarize() if len(p.maxDets) >= 3 else None
    return ev, stats


def quiet(f, *a):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        f(*a)
    return out.getvalue()


@pytest.fixture(scope="module")
def client(url):
    return YoloLossClient(url)


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_in_equals_numpy_port(client, seed):
    gt, dets = random_set(seed)
    for ci, cfg in enumerate(configs(gt, seed)):
        ev, stats = reference(gt, dets, cfg)
        E = COCOeval(gt, dets, "bbox", client=client)
        for k, v in cfg.items():
            setattr(E.params, k, v)
        E.evaluate()
        E.accumulate()
        for name in ("precision", "recall", "scores"):
            same_bytes("%s (config %d %s)" % (name, ci, cfg), E.eval[name], ev.eval[name])
        T, R, K, A, M = E.eval["counts"]
        assert E.eval["precision"].shape == (T, R, K, A, M)
        if stats is not None:
            lines = quiet(E.summarize).splitlines()
            assert len(lines) == 12 and lines[0].startswith(" Average Precision  (AP) @[ IoU=")
            same_bytes("stats (config %d)" % ci, E.stats, stats)


def test_iou_thresholds_as_a_list_as_pycocotools(client):
    # pycocotools' summarize looks AP50/AP75 up with np.where(iouThr == p.iouThrs): with a
    # list there (not an array) it finds nothing and gives -1
    gt, dets = random_set(SEEDS[5])
    ev, stats = reference(gt, dets, {"iouThrs": [0.3, 0.5, 0.7]})
    E = COCOeval(gt, dets, client=client)
    E.params.iouThrs = [0.3, 0.5, 0.7]
    E.evaluate()
    E.accumulate()
    quiet(E.summarize)
    assert stats[1] == -1 and stats[2] == -1
    same_bytes("stats", E.stats, stats)
    same_bytes("precision", E.eval["precision"], ev.eval["precision"])


class FakeCOCO:
    """What the drop-in reads of a pycocotools COCO object: .dataset (duck-typed)."""

    def __init__(self, dataset):
        self.dataset = dataset


def test_inputs_objects_dicts_files_and_arrays(client, tmp_path):
    gt, dets = random_set(SEEDS[0])
    ev, stats = reference(gt, dets, {})
    g, d = tmp_path / "gt.json", tmp_path / "dt.json"
    g.write_text(json.dumps(gt))
    d.write_text(json.dumps(dets))
    rows = np.array([[x["image_id"], *x["bbox"], x["score"], x["category_id"]] for x in dets])
    for a, b in ((FakeCOCO(gt), FakeCOCO({"annotations": dets})), (gt, dets), (str(g), str(d)),
                 (g, rows)):
        E = COCOeval(a, b, client=client)
        E.evaluate()
        E.accumulate()
        quiet(E.summarize)
        same_bytes("precision", E.eval["precision"], ev.eval["precision"])
        same_bytes("stats", E.stats, stats)


def test_summarize_prints_pycocotools_lines(client):
    gt, dets = random_set(SEEDS[1])
    ev, stats = reference(gt, dets, {})
    E = COCOeval(gt, dets, client=client)
    E.evaluate()
    E.accumulate()
    out = quiet(E.summarize).splitlines()
    # the format strings of pycocotools' _summarize, filled from the reference's stats
    iStr = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    want = []
    for i, (ap, thr, area, m) in enumerate(
            [(1, None, "all", 100), (1, .5, "all", 100), (1, .75, "all", 100), (1, None, "small", 100),
             (1, None, "medium", 100), (1, None, "large", 100), (0, None, "all", 1),
             (0, None, "all", 10), (0, None, "all", 100), (0, None, "small", 100),
             (0, None, "medium", 100), (0, None, "large", 100)]):
        want.append(iStr.format("Average Precision" if ap else "Average Recall",
                                "(AP)" if ap else "(AR)",
                                "0.50:0.95" if thr is None else "%0.2f" % thr, area, m, stats[i]))
    assert out == want
    # the first line is _summarize's default maxDets (the literal 100), the others
    # params.maxDets[2]: with other maxDets they differ
    E.params.maxDets = [1, 3, 5]
    E.evaluate()
    E.accumulate()
    out = quiet(E.summarize).splitlines()
    assert "maxDets=100 ]" in out[0] and "maxDets=  5 ]" in out[1], out[:2]


def test_per_class_ap_is_mean_of_precision_slice(client):
    gt, dets = random_set(SEEDS[2])
    ev, _ = reference(gt, dets, {})
    a = evaluate(gt, dets, client=client)
    prec = ev.eval["precision"]
    for k in range(prec.shape[2]):
        s = prec[:, :, k, 0, -1]
        want = np.mean(s[s > -1]) if (s > -1).any() else -1.0
        same_bytes("ap[%d]" % k, a["ap"][k], want)


@pytest.mark.parametrize("mode", ["voc07", "voc"])
def test_voc_models_equal_numpy_port(client, mode):
    gt, dets = random_set(SEEDS[3], crowd=0.0)
    rng = np.random.default_rng(5)
    for x in gt["annotations"]:
        x["difficult"] = int(rng.random() < 0.15)
    imgs = sorted(i["id"] for i in gt["images"])
    cats = sorted(c["id"] for c in gt["categories"])
    want = ref.voc_from_coco(gt, dets, imgs, cats, 0.5, mode == "voc07")
    a = evaluate(gt, dets, client=client, model=mode)
    same_bytes("ap", a["ap"][0], want)
    with np.errstate(invalid="ignore"):
        same_bytes("map", a["map"], [np.mean(want)])


def test_bad_input_is_a_400_naming_tensor_and_index(client):
    gt, dets = random_set(SEEDS[0])
    dets = copy.deepcopy(dets)
    dets[3]["score"] = 1.5
    with pytest.raises(YoloLossHTTPError) as e:
        evaluate(gt, dets, client=client)
    assert e.value.status == 400 and "dt_score[3]" in e.value.message
    dets[3]["score"] = 0.5
    dets[5]["image_id"] = 10 ** 6
    with pytest.raises(YoloLossHTTPError) as e:
        evaluate(gt, dets, client=client)
    assert e.value.status == 400 and "dt_image_id[5]" in e.value.message


def test_torchmetrics_style_accumulator(client):
    gt, dets = random_set(SEEDS[4])
    ev, stats = reference(gt, dets, {})
    m = MeanAveragePrecision(box_format="xywh", client=client)
    by_img = {}
    for x in gt["annotations"]:
        by_img.setdefault(x["image_id"], ([], []))[0].append(x)
    for x in dets:
        by_img.setdefault(x["image_id"], ([], []))[1].append(x)
    ids = [i["id"] for i in gt["images"]]
    for start in range(0, len(ids), 4):  # batches of 4 images
        preds, targets = [], []
        for im in ids[start:start + 4]:
            g, d = by_img.get(im, ([], []))
            targets.append({"image_id": im, "boxes": np.array([x["bbox"] for x in g]).reshape(-1, 4),
                            "labels": np.array([x["category_id"] for x in g], dtype=np.int64),
                            "iscrowd": np.array([x["iscrowd"] for x in g], dtype=np.int64),
                            "area": np.array([x.get("area", x["bbox"][2] * x["bbox"][3]) for x in g])})
            preds.append({"boxes": np.array([x["bbox"] for x in d]).reshape(-1, 4),
                          "scores": np.array([x["score"] for x in d]),
                          "labels": np.array([x["category_id"] for x in d], dtype=np.int64)})
        m.update(preds, targets)
    # the detections' order across batches is image by image: pycocotools' order within
    # an image is the file order, which the batches keep
    out = m.compute()
    assert out["map"] == stats[0] and out["mar_100"] == stats[8]


def _pycocotools():
    # the loader of tests/python's optional comparison (matplotlib stubbed when absent)
    from test_eval_pycocotools import load_pycocotools
    return load_pycocotools()


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_drop_in_equals_real_pycocotools(client, seed):
    COCO, RealCOCOeval = _pycocotools()
    gt, dets = random_set(seed)
    for a in gt["annotations"]:  # pycocotools needs every truth's area
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
    for cfg in configs(gt, seed):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        quiet(cg.createIndex)
        cd = [None]
        quiet(lambda: cd.__setitem__(0, cg.loadRes(copy.deepcopy(dets))))
        R = RealCOCOeval(cg, cd[0], "bbox")
        E = COCOeval(cg, cd[0], "bbox", client=client)
        for k, v in cfg.items():
            setattr(R.params, k, v)
            setattr(E.params, k, v)
        t0 = time.perf_counter()
        quiet(R.evaluate)
        quiet(R.accumulate)
        t1 = time.perf_counter()
        E.evaluate()
        E.accumulate()
        t2 = time.perf_counter()
        for name in ("precision", "recall", "scores"):
            same_bytes("%s %s" % (name, cfg), E.eval[name], R.eval[name])
        if len(R.params.maxDets) >= 3:
            assert quiet(R.summarize) == quiet(E.summarize)
            same_bytes("stats", E.stats, R.stats)
    print("pycocotools %.3f s, drop-in %.3f s (last set): %.1fx"
          % (t1 - t0, t2 - t1, (t1 - t0) / max(t2 - t1, 1e-9)))
