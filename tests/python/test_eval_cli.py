"""yololoss-eval on hand-made JSON files: the reading rules of clients/c/coco_json.h (an
annotation's "ignore" never read, "area" absent = width * height, "iscrowd" absent = 0)
and its refusals (exit status 1, a message naming the array and index)."""

import json
import os
import subprocess

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLI = os.environ.get("YL_EVAL_CLI", os.path.join(ROOT, "build", "yololoss-eval"))
if not os.path.isabs(CLI):
    CLI = os.path.join(ROOT, CLI)
pytestmark = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="%s not built" % CLI)

P1 = "1.000"


def run(tmp_path, gt, dt, *args):
    (tmp_path / "g.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps(dt))
    return subprocess.run([CLI, "--gt", str(tmp_path / "g.json"), "--dt", str(tmp_path / "d.json"), *args],
                          capture_output=True, text=True)


def gt_of(*anns):
    return {"images": [{"id": 1}], "categories": [{"id": 3, "name": "cat"}], "annotations": list(anns)}


DET = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9}]


def test_ignore_field_is_overwritten_by_iscrowd(tmp_path):
    # pycocotools' _prepare sets ignore = iscrowd: "ignore": 1 on a non-crowd truth is not
    # honoured, the truth counts (AP 1.000, not -1.000 as an ignored truth would give)
    r = run(tmp_path, gt_of({"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10],
                             "area": 100, "iscrowd": 0, "ignore": 1}), DET)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].endswith("= " + P1)


def test_area_absent_is_width_times_height(tmp_path):
    # a 40 x 40 truth without "area" has area 1600: "medium", not "small"; given an area of
    # 500 it is "small"
    det = [{"image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 40], "score": 0.9}]
    r = run(tmp_path, gt_of({"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 40]}), det)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[3].endswith("= -1.000") and lines[4].endswith("= " + P1), lines
    r = run(tmp_path, gt_of({"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 40, 40],
                             "area": 500}), det)
    lines = r.stdout.splitlines()
    assert lines[3].endswith("= " + P1) and lines[4].endswith("= -1.000"), lines


@pytest.mark.parametrize("dt,msg", [
    ([{"image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}],
     "results[0].image_id: 7 is not among the truths' images"),
    ([DET[0], {"image_id": 1, "category_id": 4, "bbox": [0, 0, 1, 1], "score": 0.5}],
     "results[1].category_id: 4 is not among the truths' categories"),
    ([DET[0], {"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1.5}],
     "det[1].score: 1.5 is outside [0, 1]"),
    ([{"image_id": 1, "category_id": 3, "bbox": [0, 0, -1, 1], "score": 0.5}],
     "det[0].box[2]: width -1 is negative"),
    ([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1], "score": 0.5}],
     "results[0].bbox is not 4 numbers"),
])
def test_refused(tmp_path, dt, msg):
    r = run(tmp_path, gt_of({"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10]}), dt)
    assert r.returncode == 1
    assert msg in r.stderr, r.stderr


def test_voc_lines(tmp_path):
    r = run(tmp_path, gt_of({"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10]}), DET, "--voc")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["AP for cat = 1.0000", "Mean AP = 1.0000"]
