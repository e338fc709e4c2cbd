"""The C core (through build/eval_case) against the independent float64 numpy reference
(tests/reference/yolo_reference.py) on random cases made at test time, plus checks of the
reference itself (closed-form gradient vs central differences) and of invariances.

    YL_EVAL_CASE=build/eval_case /usr/bin/python3 -m pytest -q tests/python

Seeds are fixed (YL_TEST_SEED moves the whole list, to explore other cases).
Tolerances: loss, terms, layer/image terms, stats relative 1e-6 (absolute 1e-12 near 0),
counts exact; fp32 gradients 1e-6 absolute plus 1.2e-7 relative (their fp32 storage), fp64
gradients 1e-9 absolute with no relative allowance; dense y_true bit-exact.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import make_golden as mg  # noqa: E402
import yolo_reference as ref  # noqa: E402

EVAL = os.environ.get("YL_EVAL_CASE", os.path.join(ROOT, "build", "eval_case"))
if not os.path.isabs(EVAL):
    EVAL = os.path.join(ROOT, EVAL)
BASE_SEED = int(os.environ.get("YL_TEST_SEED", "1000"))
SEEDS = [BASE_SEED + i for i in range(40)]
ERROR_SEEDS = [BASE_SEED + 500 + i for i in range(8)]

needs_core = pytest.mark.skipif(not os.access(EVAL, os.X_OK),
                                reason="%s not built (make build/eval_case)" % EVAL)


def run_core(case_dir, out_dir, threads=1, grad=True):
    """grad: True (fp32), "f64" or False."""
    cmd = [EVAL, str(case_dir), str(out_dir), "--threads", str(threads)]
    if not grad:
        cmd.append("--no-grad")
    elif grad == "f64":
        cmd.append("--grad-f64")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 2), "eval_case failed (%d): %s" % (p.returncode, p.stderr)
    return p.returncode, p.stderr.strip()


def first_bad(name, got, want, bad):
    idx = np.argwhere(bad)[0]
    return "%s%s: got %.17g, want %.17g (%d mismatches)" % (
        name, list(idx), got[tuple(idx)], want[tuple(idx)], int(bad.sum()))


def assert_close(name, got, want, exact=None):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "%s: shape %s, want %s" % (name, got.shape, want.shape)
    d = np.abs(got - want)
    bad = ~((d <= 1e-12) | (d <= 1e-6 * np.abs(want)))
    if exact is not None:
        bad = np.where(exact, got != want, bad)
    assert not bad.any(), first_bad(name, got, want, bad)


def assert_matches_reference(case, out_dir, label, grad_dtype=np.float32):
    e = case["expect"]
    L = case["L"]
    assert_close(label + " loss", np.load(out_dir / "loss.npy"), [e["loss"]])
    assert_close(label + " terms", np.load(out_dir / "terms.npy"), e["terms"])
    assert_close(label + " layer_terms", np.load(out_dir / "layer_terms.npy"), e["layer_terms"])
    assert_close(label + " image_terms", np.load(out_dir / "image_terms.npy"), e["image_terms"])
    exact = np.zeros((L, 8), bool)
    exact[:, [0, 7]] = True
    assert_close(label + " stats", np.load(out_dir / "stats.npy"), e["stats"], exact)
    for l in range(L):
        got = np.load(out_dir / ("grad_%d.npy" % l))
        want = e["grads"][l]
        assert got.dtype == grad_dtype and got.shape == want.shape, label + " grad shape"
        if grad_dtype == np.float64:  # no storage rounding: no relative allowance
            bad = ~(np.abs(got - want) <= 1e-9)
        else:
            got = got.astype(np.float64)
            bad = ~(np.abs(got - want) <= 1e-6 + 1.2e-7 * np.abs(want))
        assert not bad.any(), first_bad(label + " grad_%d" % l, got, want, bad)
    if e["y_true"] is not None:
        for l in range(L):
            got = np.load(out_dir / ("y_true_%d.npy" % l))
            want = e["y_true"][l]
            assert got.dtype == np.float32 and got.shape == want.shape, label + " y_true"
            bad = got.view(np.uint32) != want.view(np.uint32)
            assert not bad.any(), first_bad(label + " y_true_%d" % l, got, want, bad)


def describe(case):
    kind = "boxes" if "boxes" in case else "dense %s" % case["y_true_dtypes"]
    shapes = [o.shape for o in case["outputs"]]
    return "L=%d outputs %s %s, %s, thresh %g" % (case["L"], case["out_dtypes"], shapes, kind,
                                                 case["thresh"])


@needs_core
@pytest.mark.parametrize("seed", SEEDS)
def test_random_case_matches_reference(seed, tmp_path):
    case = mg.random_case(seed)
    case_dir = mg.write_case(str(tmp_path), "case", case)
    threads = 1 + seed % 4
    rc, err = run_core(case_dir, tmp_path / "out", threads=threads)
    label = "seed %d (%s, %d threads)" % (seed, describe(case), threads)
    assert rc == 0, "%s: core refused: %s" % (label, err)
    assert_matches_reference(case, tmp_path / "out", label)


@needs_core
@pytest.mark.parametrize("seed", SEEDS)
def test_random_case_fp64_gradients_match_reference(seed, tmp_path):
    case = mg.random_case(seed)
    case_dir = mg.write_case(str(tmp_path), "case", case)
    rc, err = run_core(case_dir, tmp_path / "out", threads=2, grad="f64")
    label = "seed %d (%s, fp64 gradients)" % (seed, describe(case))
    assert rc == 0, "%s: core refused: %s" % (label, err)
    assert_matches_reference(case, tmp_path / "out", label, grad_dtype=np.float64)


def break_one_row(rng, case):
    """Make one valid row of a boxes case invalid; return (code, 'boxes[b][t]')."""
    boxes = np.array(case["boxes"], dtype=np.float64)
    valid = np.argwhere(boxes[..., 2] - boxes[..., 0] > 0)
    b, t = valid[rng.integers(len(valid))]
    C = case["outputs"][0].shape[-1] // 3 - 5 if case["outputs"][0].ndim == 4 \
        else case["outputs"][0].shape[-1] - 5
    kind = rng.integers(6)
    if kind == 0:
        boxes[b, t, 4] = C + rng.integers(0, 3)
    elif kind == 1:
        boxes[b, t, 4] = 0.5
    elif kind == 2:
        boxes[b, t, 4] = -1
    elif kind == 3:
        boxes[b, t, 3] = boxes[b, t, 1] - rng.integers(0, 3)
    elif kind == 4:
        w = 32 * (case["outputs"][0].shape[2])
        boxes[b, t, [0, 2]] = [w + 2, w + 10]
    else:
        boxes[b, t, rng.integers(5)] = [np.nan, np.inf, -np.inf][rng.integers(3)]
    case["boxes"] = boxes.astype(case["boxes"].dtype)
    outs, _ = mg.case_inputs_f64(case)
    try:
        ref.evaluate(outs, case["anchors"], case["thresh"], boxes=case["boxes"])
    except ref.YoloError as e:
        return e.code, e.message.split(":")[0]
    raise AssertionError("the reference accepted the broken row")


@needs_core
@pytest.mark.parametrize("seed", ERROR_SEEDS)
def test_invalid_rows_are_refused_like_the_reference(seed, tmp_path):
    rng = np.random.default_rng(seed)
    case = mg.random_case(seed)
    while "boxes" not in case or not np.any(case["boxes"][..., 2] > case["boxes"][..., 0]):
        seed += 1000
        case = mg.random_case(seed)
    code, where = break_one_row(rng, case)
    case_dir = mg.write_case(str(tmp_path), "case", case, error=(code, where))
    rc, err = run_core(case_dir, tmp_path / "out", threads=2)
    assert rc == 2, "seed %d: core accepted a row the reference refuses (%s %s)" % (
        seed, code, where)
    assert err.startswith(code + ":"), "seed %d: got '%s', want %s" % (seed, err, code)
    assert where in err, "seed %d: '%s' does not name %s" % (seed, err, where)
    with open(tmp_path / "out" / "error.txt") as f:
        assert f.read().strip() == err


def test_reference_gradient_matches_finite_differences():
    for seed in (7, 11, 12, 31):
        case = mg.random_case(seed)
        outs, yts = mg.case_inputs_f64(case)
        if yts is None:
            yts = case["expect"]["y_true_f64"]
        worst, n = ref.finite_difference_check(outs, yts, case["anchors"], case["thresh"],
                                               n_samples=60, seed=seed)
        assert n > 60 and worst < 1e-6


def test_reference_gradient_with_soft_objectness():
    rng = np.random.default_rng(5)
    boxes = mg.random_boxes(rng, 2, 5, (64, 64), mg.SCALED9, 3)
    yt = [y.astype(np.float64) for y in ref.preprocess_true_boxes(boxes, (64, 64), mg.SCALED9, 3)]
    mg.soften(yt, [0.7, 0.3])
    outs = mg.gen_outputs(rng, yt, mg.SCALED9, (64, 64))
    assert any(((y[..., 4] > 0) & (y[..., 4] < 1)).any() for y in yt)
    worst, _ = ref.finite_difference_check(outs, yt, mg.SCALED9, 0.5, n_samples=60)
    assert worst < 1e-6


def padding_variants(boxes, rng):
    """The same valid rows in the same order, padding rows moved around."""
    B, T, _ = boxes.shape
    out = np.zeros((B, T + 3, 5), dtype=boxes.dtype)
    for b in range(B):
        valid = [r for r in boxes[b] if r[2] - r[0] > 0]
        slots = np.sort(rng.choice(T + 3, size=len(valid), replace=False))
        for t in range(T + 3):
            out[b, t] = mg.padding_row(rng, int(rng.integers(2)))
        for s, r in zip(slots, valid):
            out[b, s] = r
    return out


@needs_core
def test_moving_padding_rows_changes_nothing(tmp_path):
    rng = np.random.default_rng(77)
    done = 0
    for seed in SEEDS:
        case = mg.random_case(seed)
        if "boxes" not in case:
            continue
        a_dir = mg.write_case(str(tmp_path), "a%d" % seed, case)
        moved = dict(case)
        moved["boxes"] = padding_variants(case["boxes"], rng)
        outs, _ = mg.case_inputs_f64(moved)
        res = ref.evaluate(outs, case["anchors"], case["thresh"], boxes=moved["boxes"])
        for y0, y1 in zip(case["expect"]["y_true"], res["y_true"]):
            assert np.array_equal(y0.view(np.uint32), y1.view(np.uint32))
        assert res["loss"] == case["expect"]["loss"]
        moved["expect"] = res
        b_dir = mg.write_case(str(tmp_path), "b%d" % seed, moved)
        for d in (a_dir, b_dir):
            rc, err = run_core(d, d + "_out", threads=2)
            assert rc == 0, err
        for f in sorted(os.listdir(a_dir + "_out")):
            x = np.load(os.path.join(a_dir + "_out", f))
            y = np.load(os.path.join(b_dir + "_out", f))
            assert x.tobytes() == y.tobytes(), "seed %d: %s changed when padding moved" % (
                seed, f)
        done += 1
        if done == 6:
            break
    assert done == 6


@needs_core
def test_4d_and_5d_layouts_agree(tmp_path):
    case = mg.random_case(SEEDS[3])
    a_dir = mg.write_case(str(tmp_path), "a", case)
    other = dict(case)
    other["outputs"] = [o.reshape(o.shape[:3] + (3, -1)) if o.ndim == 4 else
                        o.reshape(o.shape[:3] + (-1,)) for o in case["outputs"]]
    if "y_true" in case:
        other["y_true"] = [y.reshape(y.shape[:3] + (3, -1)) if y.ndim == 4 else
                           y.reshape(y.shape[:3] + (-1,)) for y in case["y_true"]]
    b_dir = mg.write_case(str(tmp_path), "b", other)
    for d in (a_dir, b_dir):
        assert run_core(d, d + "_out")[0] == 0
    for f in sorted(os.listdir(a_dir + "_out")):
        x = np.load(os.path.join(a_dir + "_out", f))
        y = np.load(os.path.join(b_dir + "_out", f))
        assert x.reshape(-1).tobytes() == y.reshape(-1).tobytes(), f


# Freshness tolerances, relative: one unit in the last place of the stored dtype for
# inputs (numpy's exp and log may differ by an ulp between CPUs and numpy builds, and a
# logit made from them may then round the other way), 1e-9 for the float64 expectations
# (which such an input ulp would move far more than that only with probability ~1e-13).
FRESH_RTOL = {"f2": 2.0 ** -10, "f4": 2.0 ** -23, "f8": 1e-12, "bf16": 2.0 ** -7}
FRESH_EXPECT_RTOL = 1e-9


def golden_values(path, bf16_names):
    a = np.load(path)
    name = os.path.basename(path)[:-4]
    if name in bf16_names:
        return ref.bf16_bits_to_f64(a), "bf16"
    if name.startswith("expect_y_true"):  # float32 bit patterns of keras's float32 steps
        return a, "exact"
    return a.astype(np.float64), ("expect" if name.startswith("expect_") else a.dtype.str[1:])


def test_golden_files_are_current(tmp_path):
    """tests/golden is what make_golden.py writes (no hand edits, no drift), to a tolerance:
    same files, shapes and dtypes, text files identical, values within FRESH_RTOL."""
    golden = os.path.join(ROOT, "tests", "golden")
    mg.main(["make_golden.py", str(tmp_path)])
    made = sorted(os.listdir(tmp_path))
    assert made == sorted(os.listdir(golden))
    for name in made:
        files = sorted(os.listdir(tmp_path / name))
        assert files == sorted(os.listdir(os.path.join(golden, name))), name
        with open(os.path.join(golden, name, "config.txt")) as f:
            bf16_names = {ln.split()[1] for ln in f if ln.startswith("bf16 ")}
        for f in files:
            new, old = str(tmp_path / name / f), os.path.join(golden, name, f)
            label = "%s/%s differs from make_golden.py" % (name, f)
            if not f.endswith(".npy"):
                with open(new, "rb") as x, open(old, "rb") as y:
                    assert x.read() == y.read(), label
                continue
            a, b = np.load(new), np.load(old)
            assert a.dtype == b.dtype and a.shape == b.shape, label + " (dtype or shape)"
            (x, kind), (y, _) = golden_values(new, bf16_names), golden_values(old, bf16_names)
            if kind == "exact":
                assert a.tobytes() == b.tobytes(), label
                continue
            rtol = FRESH_EXPECT_RTOL if kind == "expect" else FRESH_RTOL[kind]
            with np.errstate(invalid="ignore"):  # inf - inf
                same = (x == y) | (np.isnan(x) & np.isnan(y)) | \
                    (np.abs(x - y) <= 1e-12 + rtol * np.abs(y))
            assert same.all(), first_bad(label, x, y, ~same)


def test_golden_freshness_sees_a_change(tmp_path):
    """The tolerance is not blind: a relative change of 1e-7 in an expectation fails it."""
    x = np.array([1.0, 2.0])
    y = x * (1 + 1e-7)
    assert not (np.abs(x - y) <= 1e-12 + FRESH_EXPECT_RTOL * np.abs(y)).all()


def test_reference_bf16_rounds_once():
    """float64 -> bf16 in one rounding, ties to even, sticky bits beyond float32 seen."""
    cases = [(1 + 2.0 ** -8 + 2.0 ** -40, 0x3f81), (-(1 + 2.0 ** -8 + 2.0 ** -40), 0xbf81),
             (1 + 2.0 ** -8, 0x3f80), (1 + 3 * 2.0 ** -8, 0x3f82),
             (1 + 3 * 2.0 ** -8 - 2.0 ** -40, 0x3f81), (2.0 ** -134, 0x0000),
             (3 * 2.0 ** -134, 0x0002), (2.0 ** -134 + 2.0 ** -170, 0x0001),
             (127 * 2.0 ** -133 + 2.0 ** -134, 0x0080), (255 * 2.0 ** 120, 0x7f7f),
             (511 * 2.0 ** 119, 0x7f80), (511 * 2.0 ** 119 - 2.0 ** 100, 0x7f7f),
             (1e300, 0x7f80), (-np.inf, 0xff80), (np.nan, 0x7fc0), (-0.0, 0x8000)]
    got = ref.f64_to_bf16_bits(np.array([v for v, _ in cases]))
    for (v, want), g in zip(cases, got):
        assert int(g) == want, "%r -> %#06x, want %#06x" % (v, int(g), want)
    h = np.arange(0, 0x7f80, dtype=np.uint16)  # every finite positive bf16 round-trips
    assert (ref.f64_to_bf16_bits(ref.bf16_bits_to_f64(h)) == h).all()
