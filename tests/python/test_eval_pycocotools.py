"""Optional: the C evaluator (build/yololoss-eval --dump) against the real pycocotools,
bit for bit, on the randomised sets of test_eval_vs_reference.py.

    PYCOCOTOOLS_PATH=/path/to/cocoapi/PythonAPI /usr/bin/python3 -m pytest -q -rs \
        tests/python/test_eval_pycocotools.py

PYCOCOTOOLS_PATH is a cocoapi checkout's PythonAPI directory with pycocotools/_mask built
(docs/metrics.md: cython3 on _mask.pyx, then gcc); its code is never committed here.
Skipped, saying why, without it. cocoeval.py's accumulate uses np.float (gone since numpy
1.24) and coco.py imports matplotlib for showAnns: the test supplies float for the first
and an empty stand-in module for the second; neither touches the evaluation.
"""

import contextlib
import io
import json
import os
import sys
import types

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_eval_vs_reference as tv  # noqa: E402

PATH = os.environ.get("PYCOCOTOOLS_PATH")


def load_pycocotools():
    if not PATH:
        pytest.skip("PYCOCOTOOLS_PATH is not set (a cocoapi PythonAPI directory with "
                    "_mask built; see docs/metrics.md)")
    if not os.path.isdir(os.path.join(PATH, "pycocotools")):
        pytest.skip("PYCOCOTOOLS_PATH=%s has no pycocotools/" % PATH)
    if "matplotlib" not in sys.modules:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            mpl = types.ModuleType("matplotlib")
            mpl.use = lambda *a, **k: None
            sys.modules["matplotlib"] = mpl
            for sub in ("collections", "patches", "pyplot"):
                m = types.ModuleType("matplotlib." + sub)
                m.PatchCollection = m.Polygon = object
                sys.modules["matplotlib." + sub] = m
    if not hasattr(np, "float"):
        np.float = float
    sys.path.insert(0, PATH)
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        pytest.skip("pycocotools from %s does not import: %s" % (PATH, e))
    return COCO, COCOeval


def pycocotools_eval(COCO, COCOeval, gt, dets, cfg):
    gt = json.loads(json.dumps(gt))
    for a in gt["annotations"]:  # the project's convention where "area" is absent
        a.setdefault("area", a["bbox"][2] * a["bbox"][3])
    with contextlib.redirect_stdout(io.StringIO()) as out:
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        cd = cg.loadRes(json.loads(json.dumps(dets)))
        ev = COCOeval(cg, cd, "bbox")
        for k, v in cfg.items():
            setattr(ev.params, k, v)
        ev.evaluate()
        ev.accumulate()
        if len(ev.params.maxDets) >= 3:
            ev.summarize()
    return ev, out.getvalue()


@pytest.mark.parametrize("seed", tv.SEEDS)
def test_coco_equals_pycocotools(tmp_path, seed):
    COCO, COCOeval = load_pycocotools()
    if not os.access(tv.CLI, os.X_OK):
        pytest.skip("%s not built" % tv.CLI)
    gt, dets = tv.random_set(seed)
    for ci, cfg in enumerate(tv.configs(gt, seed)):
        ev, printed = pycocotools_eval(COCO, COCOeval, gt, dets, dict(cfg))
        sub = tmp_path / ("c%d" % ci)
        sub.mkdir()
        out, d = tv.run_cli(sub, gt, dets, tv.cli_args(cfg))
        for name in ("precision", "recall", "scores"):
            tv.same_bytes("%s (config %d %s)" % (name, ci, cfg), np.load(d / (name + ".npy")),
                          ev.eval[name])
        if len(ev.params.maxDets) >= 3:
            tv.same_bytes("stats (config %d)" % ci, np.load(d / "stats.npy"), np.array(ev.stats))
            lines = [l for l in printed.splitlines() if "@[" in l]
            assert out.splitlines() == lines
