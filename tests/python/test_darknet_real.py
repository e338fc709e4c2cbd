"""Optional: the core's darknet definition against the real darknet, forward_yolo_layer of a
pjreddie/darknet checkout (DARKNET_SRC=/path/to/darknet) built here with Debian's gcc as a
shared library beside tests/reference/darknet_shim.c, and called on the same inputs in
darknet's own layout. Skipped without DARKNET_SRC. darknet's code is never committed.

    DARKNET_SRC=/tmp/darknet YL_EVAL_CASE=build/eval_case python3 -m pytest -q \
        tests/python/test_darknet_real.py

DARKNET_OPTS (default -O2) are its compiler flags; darknet's own Makefile says -Ofast,
which lets gcc reorder float arithmetic, so bit-identity is asserted only without it.
What must match: the gradient = -delta bit for bit (fp32 arithmetic, fp32 gradients), the
count exactly; cost and the printed statistics within darknet's float accumulation (it
sums in float, the core in double) and %f printing.
"""

import ctypes
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import test_darknet_vs_reference as t  # noqa: E402

SRC = os.environ.get("DARKNET_SRC")
OPTS = os.environ.get("DARKNET_OPTS", "-O2").split()
pytestmark = [
    pytest.mark.skipif(not SRC, reason="DARKNET_SRC (a pjreddie/darknet checkout) not given"),
    t.needs_core,
]


@pytest.fixture(scope="module")
def darknet(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("darknet") / "libdarknet_yolo.so")
    srcs = [os.path.join(SRC, "src", f) for f in
            ("yolo_layer.c", "box.c", "activations.c", "blas.c", "utils.c", "cuda.c", "list.c")]
    cmd = (["gcc"] + OPTS + ["-fPIC", "-shared", "-w", "-I" + os.path.join(SRC, "include"),
                            "-I" + os.path.join(SRC, "src"),
                            os.path.join(ROOT, "tests", "reference", "darknet_shim.c")]
           + srcs + ["-o", out, "-lm"])
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip("darknet did not build: %s" % p.stderr[-400:])
    lib = ctypes.CDLL(out)
    lib.yl_dk_forward.restype = ctypes.c_int
    return lib


def fptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def run_darknet(lib, case, l):
    """delta (NHWC like the output), cost, and darknet's printed statistics line."""
    o = case["outputs"][l]
    mask = case["masks"][l]
    B, H, W = o.shape[:3]
    n, C = len(mask), case["C"]
    x = np.ascontiguousarray(o.reshape(B, H, W, n, 5 + C).transpose(0, 3, 4, 1, 2),
                             dtype=np.float32)
    truth = np.zeros((B, 90 * 5), dtype=np.float32)
    T = min(case["truths"].shape[1], 90)
    truth[:, :T * 5] = case["truths"][:, :T].reshape(B, -1)
    delta = np.zeros_like(x)
    cost = ctypes.c_float()
    masks = (ctypes.c_int * n)(*mask)
    biases = np.asarray(case["anchors"], dtype=np.float32)
    net_h, net_w = case["net_hw"]
    with tempfile.TemporaryFile() as cap:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(cap.fileno(), 1)
        try:
            lib.yl_dk_forward(B, W, H, n, len(biases) // 2, masks, C, fptr(biases),
                              ctypes.c_float(case["ignore"]), ctypes.c_float(case["truth_thresh"]),
                              case["max_truths"], net_w, net_h, fptr(x), fptr(truth),
                              fptr(delta), ctypes.byref(cost))
            libc = ctypes.CDLL(None)
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        cap.seek(0)
        line = cap.read().decode()
    d = delta.transpose(0, 3, 4, 1, 2).reshape(o.shape)
    return d, cost.value, line


def parse_stats(line):
    nums = re.findall(r"(?:Avg IOU|Class|Obj|No Obj|\.5R|\.75R):\s*(-?nan|[-0-9.]+)", line)
    count = int(re.search(r"count:\s*(\d+)", line).group(1))
    vals = [float("nan") if "nan" in v else float(v) for v in nums]
    return vals, count  # avg_iou, class, obj, no_obj, recall50, recall75


@pytest.mark.parametrize("seed", t.SEEDS)
def test_core_equals_real_darknet(darknet, seed, tmp_path):
    case = t.random_case(seed)
    t.write_case(tmp_path / "case", case, fp32=1)
    t.run_core(tmp_path / "case", tmp_path / "out", grad="f32")
    grads = [np.load(tmp_path / "out" / ("grad_%d.npy" % l)) for l in range(len(case["masks"]))]
    cost = np.load(tmp_path / "out" / "cost.npy")
    stats = np.load(tmp_path / "out" / "stats.npy")
    for l in range(len(case["masks"])):
        d, dk_cost, line = run_darknet(darknet, case, l)
        g = grads[l]
        # bit for bit, except the sign of zero (-0 delta = +0 gradient)
        same = (np.float32(0) - d).view(np.uint32) == (g + np.float32(0)).view(np.uint32)
        if "-Ofast" not in OPTS:
            assert same.all(), "layer %d: %d of %d gradient elements differ, first at %s: %r vs %r" % (
                l, (~same).sum(), same.size, np.argwhere(~same)[0], g[tuple(np.argwhere(~same)[0])],
                -d[tuple(np.argwhere(~same)[0])])
        else:
            assert np.allclose(g, -d, rtol=1e-5, atol=1e-6)
        assert abs(cost[l] - dk_cost) <= 1e-4 * abs(cost[l]) + 1e-6, (l, cost[l], dk_cost)
        vals, count = parse_stats(line)
        assert count == stats[l, 0]
        ours = [stats[l, 1], stats[l, 2], stats[l, 3], stats[l, 4], stats[l, 5], stats[l, 6]]
        for name, a, b in zip(("iou", "class", "obj", "noobj", "r50", "r75"), ours, vals):
            if count == 0 and name != "noobj":
                assert np.isnan(b), (name, b)  # darknet divides by a zero count
                continue
            assert abs(a - b) <= 2e-6 + 1e-5 * abs(a), (l, name, a, b, line)
