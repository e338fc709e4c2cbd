"""The C core against the numpy reference at the size users run: 416x416 inputs (grids
13/26/52, tiny 13/26), C = 80, B up to 4, tens of truths per image, every dtype, boxes and
dense y_true. The data is regenerated from the seeds in tests/reference/full_size.json
(make_golden.py --full-size writes it); the reference's answer must still match the stored
summary, then the core must match the reference on every element: results to 1e-6
relative, fp32 gradients to 1e-6 absolute (+ fp32 storage), fp64 gradients to 1e-9
absolute with no relative allowance, y_true bit for bit.

    YL_EVAL_CASE=build/eval_case /usr/bin/python3 -m pytest -q tests/python
"""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_core_vs_reference as tc  # noqa: E402

mg, ref = tc.mg, tc.ref

with open(mg.FULL_SIZE_JSON) as f:
    STORED = json.load(f)


def test_stored_specs_are_the_generators():
    """full_size.json lists exactly FULL_SIZE_SPECS (regenerate it when they change)."""
    assert [tuple(s["spec"]) for s in STORED] == [tuple(s) for s in mg.FULL_SIZE_SPECS]


def culling_branches(case):
    """How many anchors without a truth fall in each branch of the core's culling (the
    windows and t_w, t_h bounds described in core/image.c): far from every truth, near
    but outside every truth's size bounds, decoded below the threshold, decoded at or
    above it (ignored). Computed here from the definitions, on the reference's inputs."""
    outs, _ = mg.case_inputs_f64(case)
    e = case["expect"]
    thresh = case["thresh"]
    anchors = np.asarray(case["anchors"], dtype=np.float64).reshape(-1, 2)
    mask = ref.anchor_mask(case["L"])
    counts = {"far": 0, "near_size_out": 0, "decoded_below": 0, "decoded_ignored": 0}
    for l in range(case["L"]):
        o = ref._as5d(outs[l])
        yt = ref._as5d(e["y_true_f64"][l])
        best = e["best_iou"][l]
        B, H, W = o.shape[:3]
        in_h, in_w = 32 * ref._as5d(outs[0]).shape[1], 32 * ref._as5d(outs[0]).shape[2]
        anch = anchors[mask[l]]
        jj, ii = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        for b in range(B):
            obj = yt[b, ..., 4] != 0
            near = np.zeros((H, W), bool)
            admit = np.zeros((H, W, 3), bool)
            for x, y, w, h in yt[b][obj][:, 0:4]:
                rx, ry = w * (1 + 1 / thresh) / 2, h * (1 + 1 / thresh) / 2
                win = ((ii >= np.floor((x - rx) * W) - 1) & (ii <= np.floor((x + rx) * W) + 1) &
                       (jj >= np.floor((y - ry) * H) - 1) & (jj <= np.floor((y + ry) * H) + 1))
                near |= win
                tw = np.log(w * in_w / anch[:, 0])
                th = np.log(h * in_h / anch[:, 1])
                lt = np.log(thresh)
                ok = ((o[b, ..., 2] >= tw + lt) & (o[b, ..., 2] <= tw - lt) &
                      (o[b, ..., 3] >= th + lt) & (o[b, ..., 3] <= th - lt))
                admit |= win[..., None] & ok
            noobj = ~obj
            near3 = np.broadcast_to(near[..., None], noobj.shape)
            counts["far"] += int(np.sum(noobj & ~near3))
            counts["near_size_out"] += int(np.sum(noobj & near3 & ~admit))
            counts["decoded_below"] += int(np.sum(noobj & admit & (best[b] < thresh)))
            counts["decoded_ignored"] += int(np.sum(noobj & (best[b] >= thresh)))
    return counts


@tc.needs_core
@pytest.mark.parametrize("stored", STORED, ids=[s["spec"][0] for s in STORED])
def test_full_size_case(stored, tmp_path):
    spec = tuple(stored["spec"])
    case = mg.full_size_case(spec)
    got, want = mg.full_size_summary(case), stored["summary"]
    for key in ("loss", "terms", "stats", "grad_abs_sum"):
        a, b = np.asarray(got[key], float), np.asarray(want[key], float)
        assert np.allclose(a, b, rtol=1e-9, atol=1e-12), \
            "%s: the reference's %s drifted from full_size.json: %s vs %s" % (spec[0], key, a, b)
    counts = culling_branches(case)
    assert all(v > 0 for v in counts.values()), \
        "%s: a culling branch is never taken: %s" % (spec[0], counts)
    assert sum(float(s[0]) for s in got["stats"]) >= 20 * spec[3] / 2, "too few truths"
    case_dir = mg.write_case(str(tmp_path), "case", case)
    for grad, dtype in ((True, np.float32), ("f64", np.float64)):
        out = tmp_path / ("out_%s" % dtype.__name__)
        rc, err = tc.run_core(case_dir, out, threads=2, grad=grad)
        label = "%s (%s gradients)" % (spec[0], dtype.__name__)
        assert rc == 0, "%s: core refused: %s" % (label, err)
        tc.assert_matches_reference(case, out, label, grad_dtype=dtype)
