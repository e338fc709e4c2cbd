"""darknet's loss in the C core (through build/eval_case) against the independent float64
reference tests/reference/darknet_reference.py, on random cases made at test time that reach
every branch: the truth list cut by an x == 0 row, ignore_thresh and truth_thresh crossed,
several truths in one slot (box overwritten, the class quirk adding labels), truths on a
layer whose mask does not hold their best anchor, tiny and huge boxes, non-square inputs,
one layer with 4 anchors. Plus central differences of the reference's implicit loss against
its -delta, so the loss the core reports is the one whose gradient it returns.

Tolerances: with fp32 0 (float64 arithmetic): terms, cost, stats 1e-6 relative, counts exact,
fp64 gradients 1e-9 absolute. With fp32 1 (darknet's float32 arithmetic, the default): the
same terms and stats at 1e-5 relative and gradients 1e-5 absolute + 1e-5 relative: darknet
rounds each of its float operations, the reference does not.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import darknet_reference as dref  # noqa: E402

EVAL = os.environ.get("YL_EVAL_CASE", os.path.join(ROOT, "build", "eval_case"))
if not os.path.isabs(EVAL):
    EVAL = os.path.join(ROOT, EVAL)
BASE_SEED = int(os.environ.get("YL_TEST_SEED", "2000"))
SEEDS = [BASE_SEED + i for i in range(30)]
needs_core = pytest.mark.skipif(not os.access(EVAL, os.X_OK),
                                reason="%s not built (make build/eval_case)" % EVAL)

YOLOV3 = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326]


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def random_case(seed):
    """outputs (NHWC, anchor-major), truths (B, T, 5) float32, and the model."""
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:  # yolov3: 3 layers of 3, strides 32/16/8
        anchors = np.array(YOLOV3, dtype=np.float64) * rng.uniform(0.2, 0.5)
        masks = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
        strides = [32, 16, 8]
    elif kind == 1:  # yolov3-tiny's masks (345 / 012), strides 32/16
        anchors = np.array([10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319.0]) * 0.3
        masks = [[3, 4, 5], [0, 1, 2]]
        strides = [32, 16]
    else:  # one layer of 4 anchors out of 5 (anchor 2 on no layer)
        anchors = np.array([3, 4, 8, 6, 20, 30, 12, 10, 40, 25.0])
        masks = [[0, 1, 3, 4]]
        strides = [16]
    H0, W0 = int(rng.integers(2, 5)), int(rng.integers(2, 6))  # non-square
    net_h, net_w = H0 * strides[0], W0 * strides[0]
    C = int(rng.integers(1, 6))
    B = int(rng.integers(1, 4))
    T = int(rng.integers(3, 9))
    truths = np.zeros((B, T, 5), dtype=np.float32)
    for b in range(B):
        n = int(rng.integers(0, T + 1))
        for t in range(n):
            size = rng.choice(["tiny", "huge", "mid"])
            if size == "tiny":
                w, h = rng.uniform(0.002, 0.03, 2)
            elif size == "huge":
                w, h = rng.uniform(0.7, 1.0, 2)
            else:
                w, h = rng.uniform(0.05, 0.5, 2)
            x, y = rng.uniform(0.01, 0.99, 2)
            truths[b, t] = [x, y, w, h, rng.integers(0, C)]
            if t > 0 and rng.random() < 0.25:  # a second truth in the same slot
                truths[b, t, :4] = truths[b, t - 1, :4] * np.float32(1 + 1e-3)
                truths[b, t, 4] = rng.integers(0, C)
        if n < T and rng.random() < 0.5:  # rows after the x == 0 row are never read
            truths[b, n + 1:] = [0.5, 0.5, 0.2, 0.2, 0]
            truths[b, n, 0] = 0
            truths[b, n, 1:] = [0.3, 0.1, 0.1, 0]
    outputs = []
    for l, mask in enumerate(masks):
        H, W = net_h // strides[l], net_w // strides[l]
        o = rng.normal(0, 1.5, (B, H, W, len(mask), 5 + C))
        # plant predictions near truths so that ignore_thresh and truth_thresh are crossed
        for b in range(B):
            for t in range(T):
                tx, ty, tw, th = truths[b, t, :4]
                if tx == 0:
                    break
                i, j = min(int(tx * W), W - 1), min(int(ty * H), H - 1)
                for k, a in enumerate(mask):
                    if rng.random() < 0.6:
                        o[b, j, i, k, 0] = logit(tx * W - i + rng.normal(0, 0.02))
                        o[b, j, i, k, 1] = logit(ty * H - j + rng.normal(0, 0.02))
                        o[b, j, i, k, 2] = np.log(tw * net_w / anchors[2 * a]) + rng.normal(0, 0.05)
                        o[b, j, i, k, 3] = np.log(th * net_h / anchors[2 * a + 1]) + rng.normal(0, 0.05)
        o = o.reshape(B, H, W, len(mask) * (5 + C)).astype(np.float32)
        outputs.append(o)
    ignore = float(rng.choice([0.7, 0.5, 0.3]))
    truth_thresh = float(rng.choice([1.0, 0.85, 0.6]))
    max_truths = int(rng.choice([90, 90, 3]))
    return dict(outputs=outputs, truths=truths, anchors=anchors, masks=masks, strides=strides,
                net_hw=(net_h, net_w), C=C, ignore=ignore, truth_thresh=truth_thresh,
                max_truths=max_truths)


def write_case(d, case, fp32):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.txt"), "w") as f:
        f.write("definition darknet\n")
        f.write("anchors %s\n" % " ".join("%.17g" % v for v in case["anchors"]))
        f.write("ignore_thresh %.17g\n" % case["ignore"])
        f.write("truth_thresh %.17g\n" % case["truth_thresh"])
        f.write("max_truths %d\n" % case["max_truths"])
        f.write("fp32 %d\n" % fp32)
        for l, m in enumerate(case["masks"]):
            f.write("layer %d %d %s\n" % (l, case["strides"][l], " ".join(map(str, m))))
    for l, o in enumerate(case["outputs"]):
        np.save(os.path.join(d, "output_%d.npy" % l), o)
    np.save(os.path.join(d, "truths.npy"), case["truths"])


def run_core(case_dir, out_dir, grad="f64", threads=1):
    cmd = [EVAL, str(case_dir), str(out_dir), "--threads", str(threads)]
    if grad == "f64":
        cmd.append("--grad-f64")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "eval_case failed (%d): %s" % (p.returncode, p.stderr)


def reference(case):
    return dref.darknet_loss([o.astype(np.float64) for o in case["outputs"]],
                             case["truths"].astype(np.float64), case["anchors"], case["masks"],
                             case["net_hw"], case["C"], case["ignore"], case["truth_thresh"],
                             case["max_truths"])


def close(name, got, want, rel, abs_=1e-12):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    bad = ~(np.abs(got - want) <= abs_ + rel * np.abs(want))
    if bad.any():
        idx = tuple(np.argwhere(bad)[0])
        raise AssertionError("%s%s: got %.17g want %.17g (%d bad)" % (
            name, list(idx), got[idx], want[idx], int(bad.sum())))


@needs_core
@pytest.mark.parametrize("seed", SEEDS)
def test_core_matches_reference_fp64(seed, tmp_path):
    case = random_case(seed)
    write_case(tmp_path / "case", case, fp32=0)
    run_core(tmp_path / "case", tmp_path / "out", grad="f64", threads=1 + seed % 3)
    want = reference(case)
    out = lambda n: np.load(tmp_path / "out" / (n + ".npy"))  # noqa: E731
    close("loss", out("loss")[0], want["loss"], 1e-6)
    close("terms", out("terms"), want["terms"], 1e-6)
    close("layer_terms", out("layer_terms"), want["layer_terms"], 1e-6)
    close("cost", out("cost"), want["cost"], 1e-6)
    st = out("stats")
    assert np.array_equal(st[:, 0], want["stats"][:, 0]), "count"
    assert np.array_equal(st[:, 7], want["stats"][:, 7]), "ignored"
    close("stats", st, want["stats"], 1e-6)
    for l, g in enumerate(want["grads"]):
        close("grad_%d" % l, out("grad_%d" % l), g, 0.0, 1e-9)


@needs_core
@pytest.mark.parametrize("seed", SEEDS[:12])
def test_core_fp32_arithmetic_near_reference(seed, tmp_path):
    case = random_case(seed)
    write_case(tmp_path / "case", case, fp32=1)
    run_core(tmp_path / "case", tmp_path / "out", grad="f32")
    want = reference(case)
    out = lambda n: np.load(tmp_path / "out" / (n + ".npy"))  # noqa: E731
    close("terms", out("terms"), want["terms"], 1e-5, 1e-9)
    close("cost", out("cost"), want["cost"], 1e-5, 1e-9)
    assert np.array_equal(out("stats")[:, 0], want["stats"][:, 0]), "count"
    for l, g in enumerate(want["grads"]):
        close("grad_%d" % l, out("grad_%d" % l), g, 1e-5, 1e-5)


def test_cases_reach_every_branch():
    """The seeds above cross both thresholds, share slots, cut lists and skip layers."""
    seen = dict(ignored=0, tt=0, shared=0, cut=0, off_mask=0)
    for seed in SEEDS:
        case = random_case(seed)
        want = reference(case)
        seen["ignored"] += want["stats"][:, 7].sum() > 0
        for b in range(case["truths"].shape[0]):
            rows = dref.truth_list(case["truths"][b], case["max_truths"])
            seen["cut"] += len(rows) < case["truths"].shape[1]
            keys = [tuple(np.floor(r[:2] * 100)) for r in rows]
            seen["shared"] += len(keys) != len(set(keys))
        n_truths = sum(len(dref.truth_list(t, case["max_truths"])) for t in case["truths"])
        seen["off_mask"] += want["stats"][:, 0].sum() < n_truths
        # truth_thresh crossed: a slot with a box delta that no truth assigned
        if case["truth_thresh"] < 1:
            seen["tt"] += tt_crossed(case)
    for k, v in seen.items():
        assert v > 0, "no case reaches %s: %s" % (k, seen)


def tt_crossed(case):
    lower = dict(case)
    lower["truth_thresh"] = 1.0
    a, b = reference(case), reference(lower)
    return not np.allclose(a["terms"], b["terms"])


@pytest.mark.parametrize("seed", SEEDS[:6])
def test_reference_delta_is_minus_gradient_of_its_loss(seed):
    """Central differences of the reference's implicit loss against its -delta at random
    elements (away from the ignore and truth_thresh boundaries, which are step changes of
    the loss: there darknet's delta has no loss it is the gradient of)."""
    case = random_case(seed)
    base = reference(case)
    rng = np.random.default_rng(seed)
    h = 1e-6
    checked = 0
    for l, o in enumerate(case["outputs"]):
        o64 = o.astype(np.float64)
        g = base["grads"][l]
        nz = np.argwhere(g != 0)
        picks = nz[rng.choice(len(nz), size=min(12, len(nz)), replace=False)] if len(nz) else []
        for idx in picks:
            idx = tuple(idx)
            vals = []
            for sgn in (1, -1):
                outs = [x.astype(np.float64) for x in case["outputs"]]
                outs[l] = o64.copy()
                outs[l][idx] += sgn * h
                r = dref.darknet_loss(outs, case["truths"].astype(np.float64), case["anchors"],
                                      case["masks"], case["net_hw"], case["C"], case["ignore"],
                                      case["truth_thresh"], case["max_truths"])
                vals.append(r)
            if not (np.array_equal(vals[0]["stats"][:, 7], vals[1]["stats"][:, 7])
                    and np.array_equal(vals[0]["stats"][:, 7], base["stats"][:, 7])):
                continue  # a step of the ignore rule lies inside [x - h, x + h]
            fd = (vals[0]["loss"] - vals[1]["loss"]) / (2 * h)
            assert abs(fd - g[idx]) <= 1e-5 * max(1.0, abs(g[idx])), (l, idx, fd, g[idx])
            checked += 1
    assert checked > 0
