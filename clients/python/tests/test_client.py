"""yololoss.YoloLossClient against a live yololossd: answers equal the independent numpy
reference (tests/reference, itself checked against the C core to 1e-6), in every mode
(binary, JSON, gzip, deflate) and dtype; errors, auth, overload retries, metadata,
keep-alive, and the offline pip install."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import make_golden as mg
import yolo_reference as ref
from conftest import Daemon, HERE

from yololoss import BF16, STAT_NAMES, TERM_NAMES, YoloLossClient, YoloLossError, bf16

SEEDS = [7000 + i for i in range(14)]


# ---- helpers --------------------------------------------------------------------------

def model_of(case):
    return "yolov3" if case["L"] == 3 else "yolov3-tiny"


def case_args(case):
    """compute() arguments for a make_golden case (bf16 tensors wrapped as BF16)."""
    outs = [BF16(o) if d == "bf16" else o for o, d in zip(case["outputs"], case["out_dtypes"])]
    if "boxes" in case:
        truth = {"boxes": case["boxes"]}
    else:
        truth = {"y_true": [BF16(y) if d == "bf16" else y
                            for y, d in zip(case["y_true"], case["y_true_dtypes"])]}
    return outs, dict(truth, anchors=case["anchors"], ignore_thresh=case["thresh"])


def assert_close(name, got, want, exact=None):
    """The core's tolerance against the reference (1e-6 relative, 1e-12 absolute), plus
    the float32 rounding of the wire."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, "%s: shape %s, want %s" % (name, got.shape, want.shape)
    d = np.abs(got - want)
    bad = ~((d <= 1e-12) | (d <= 1.2e-6 * np.abs(want)))
    if exact is not None:
        bad = np.where(exact, got != want, bad)
    assert not bad.any(), "%s%s: got %r, want %r" % (
        name, list(np.argwhere(bad)[0]), got[bad][0], want[bad][0])


def assert_matches(res, expect, L, grads=True):
    assert_close("loss", [res.loss], [expect["loss"]])
    assert_close("terms", [res.terms[k] for k in TERM_NAMES], expect["terms"])
    assert_close("layer_terms", res.layer_terms, expect["layer_terms"])
    assert_close("image_terms", res.image_terms, expect["image_terms"])
    stats = np.stack([res.stats[k] for k in STAT_NAMES], axis=1)
    exact = np.zeros((L, 8), bool)
    exact[:, [0, 7]] = True
    assert_close("stats", stats, expect["stats"], exact)
    if grads:
        assert len(res.grads) == L
        for l in range(L):
            got, want = res.grads[l], expect["grads"][l]
            assert got.dtype == np.float32 and got.shape == want.shape
            bad = ~(np.abs(got - want) <= 1e-6 + 1.2e-7 * np.abs(want))
            assert not bad.any(), "grad_%d differs at %s" % (l, np.argwhere(bad)[0])
    else:
        assert res.grads is None


def same_bits(a, b):
    assert a.loss == b.loss and a.terms == b.terms
    for name in a.outputs:
        x, y = np.asarray(a.outputs[name]), np.asarray(b.outputs[name])
        assert x.shape == y.shape and x.tobytes() == y.tobytes(), name


# ---- results ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_random_case_matches_reference(url, seed):
    case = mg.random_case(seed)
    outs, kw = case_args(case)
    with YoloLossClient(url, model=model_of(case)) as c:
        res = c.compute(outs, grads=True, **kw)
    assert res.model_name == model_of(case)
    assert_matches(res, case["expect"], case["L"])
    for l, o in enumerate(case["outputs"]):
        assert res.grads[l].shape == o.shape


def test_every_mode_gives_the_same_bits(url):
    case = mg.random_case(SEEDS[0] + 100)
    case["outputs"] = [o.astype(np.float32) if d == "bf16" else o
                       for o, d in zip(case["outputs"], case["out_dtypes"])]
    case["out_dtypes"] = ["f4" if d == "bf16" else d for d in case["out_dtypes"]]
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    base = c.compute(outs, grads=True, **kw)
    for binary in (True, False):
        for compress in (None, "gzip", "deflate"):
            same_bits(base, c.compute(outs, grads=True, binary=binary, compress=compress, **kw))


def test_bf16_inputs_travel_binary_even_in_json_mode(url):
    rng = np.random.default_rng(5)
    outs = [rng.normal(0, 1, (2, 2, 2, 18)), rng.normal(0, 1, (2, 4, 4, 18))]
    boxes = np.array([[[10, 12, 40, 50, 0]], [[3, 3, 20, 60, 0]]], np.float32)
    c = YoloLossClient(url, model="yolov3-tiny")
    as_bf16 = [bf16(o) for o in outs]
    as_f32 = [b.to_float32() for b in as_bf16]       # the same values, exactly
    r1 = c.compute(as_bf16, boxes=boxes, grads=True)
    r2 = c.compute(as_bf16, boxes=boxes, grads=True, binary=False)
    r3 = c.compute(as_f32, boxes=boxes, grads=True)
    same_bits(r1, r2)
    same_bits(r1, r3)


def test_dtypes_are_passed_through_not_converted(url):
    """fp16 and fp64 arrays go out as FP16 and FP64: the same values in another dtype
    give the same bits back; values that fp16 cannot hold change the answer."""
    rng = np.random.default_rng(6)
    o16 = [rng.normal(0, 2, (1, 2, 2, 24)).astype(np.float16),
           rng.normal(0, 2, (1, 4, 4, 24)).astype(np.float16)]
    boxes = np.array([[[5, 5, 30, 40, 2], [0, 0, 0, 0, 0]]])   # int64: sent as FP64
    c = YoloLossClient(url, model="yolov3-tiny")
    r16 = c.compute(o16, boxes=boxes, grads=True)
    r32 = c.compute([o.astype(np.float32) for o in o16], boxes=boxes, grads=True)
    r64 = c.compute([o.astype(np.float64) for o in o16], boxes=boxes, grads=True)
    same_bits(r16, r32)
    same_bits(r16, r64)
    fine = [o.astype(np.float64) + 1e-4 for o in o16]
    assert c.compute(fine, boxes=boxes).loss != c.compute(
        [f.astype(np.float16) for f in fine], boxes=boxes).loss
    want = ref.evaluate([o.astype(np.float64) for o in o16], ref.TINY_ANCHORS, 0.5, boxes=boxes)
    assert_matches(r16, want, 2)


def test_model_defaults_and_overrides(url):
    rng = np.random.default_rng(8)
    C = 3
    outs = [rng.normal(0, 1.5, (2, h, h, 3 * (5 + C))) for h in (2, 4, 8)]
    boxes = mg.random_boxes(rng, 2, 4, (64, 64), ref.YOLOV3_ANCHORS * 64 / 416, C)
    c = YoloLossClient(url)           # yolov3 by default
    plain = c.compute(outs, boxes=boxes, grads=True)
    assert_matches(plain, ref.evaluate(outs, ref.YOLOV3_ANCHORS, 0.5, boxes=boxes), 3)
    small = ref.YOLOV3_ANCHORS * 64 / 416
    for thresh in (0.05, 0.5, 0.9):
        res = c.compute(outs, boxes=boxes, anchors=small, ignore_thresh=thresh, grads=True,
                        run="pytest", step=3)
        assert_matches(res, ref.evaluate(outs, small, thresh, boxes=boxes), 3)
    as_string = c.compute(outs, boxes=boxes, anchors=",".join("%g" % v for v in small.ravel()))
    assert as_string.loss == pytest.approx(
        ref.evaluate(outs, small, 0.5, boxes=boxes)["loss"], rel=1e-6)


def test_loss_only_and_five_d_outputs(url):
    case = mg.random_case(SEEDS[3])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    res = c.compute(outs, **kw)
    assert_matches(res, case["expect"], case["L"], grads=False)
    assert "grad_0" not in res.outputs


def test_request_id_is_echoed_and_arrays_are_usable(url):
    rng = np.random.default_rng(9)
    outs = [rng.normal(size=(1, 1, 1, 18)).astype(np.float32),
            rng.normal(size=(1, 2, 2, 18)).astype(np.float32)]
    res = YoloLossClient(url, model="yolov3-tiny").compute(
        outs, boxes=np.zeros((1, 1, 5)), grads=True, request_id="batch-17")
    assert res.id == "batch-17"
    g = res.grads[1]
    assert g.flags.writeable and g.flags.aligned
    g *= 2                                           # a normal, writable array
    d = res.to_dict()
    assert json.loads(json.dumps(d))["terms"].keys() == set(TERM_NAMES)
    assert d["stats"]["count"] == [0, 0]


# ---- connection, metadata ---------------------------------------------------------------

def test_keep_alive_reuses_one_connection(url):
    case = mg.random_case(SEEDS[1])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    c.compute(outs, **kw)
    sock = c._local.conn.sock
    assert sock is not None
    for _ in range(3):
        c.compute(outs, grads=True, **kw)
        assert c._local.conn.sock is sock
    c.close()


def test_threads_share_a_client(url):
    cases = [mg.random_case(s) for s in SEEDS[:6]]
    clients = {m: YoloLossClient(url, model=m) for m in ("yolov3", "yolov3-tiny")}
    errors = []

    def work(case):
        try:
            outs, kw = case_args(case)
            for _ in range(3):
                res = clients[model_of(case)].compute(outs, grads=True, **kw)
                assert_matches(res, case["expect"], case["L"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in cases]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]
    for c in clients.values():
        c.close()


def test_metadata(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    assert c.live() and c.ready() and c.model_ready()
    assert not c.model_ready("no-such-model")
    meta = c.server_metadata()
    assert meta["name"] == "yololossd" and "binary_tensor_data" in meta["extensions"]
    m = c.model_metadata()
    names = [i["name"] for i in m["inputs"]]
    assert names[:2] == ["output_0", "output_1"] and "boxes" in names
    assert "grad_1" in [o["name"] for o in m["outputs"]]
    assert YoloLossClient(url).model_metadata()["name"] == "yolov3"
    cfg = c.model_config()
    assert cfg["parameters"]["anchors"]["string_value"].startswith("10,14,23,27")
    before = c.statistics()["model_stats"][0]["inference_stats"]["success"]["count"]
    c.compute([np.zeros((1, 1, 1, 18)), np.zeros((1, 2, 2, 18))], boxes=np.zeros((1, 1, 5)))
    after = c.statistics()["model_stats"][0]["inference_stats"]["success"]["count"]
    assert after == before + 1
    assert len(c.statistics("*")["model_stats"]) >= 2


# ---- errors -----------------------------------------------------------------------------

def tiny_batch(C=2):
    rng = np.random.default_rng(10)
    return [rng.normal(size=(1, 2, 2, 3 * (5 + C))).astype(np.float32),
            rng.normal(size=(1, 4, 4, 3 * (5 + C))).astype(np.float32)]


def test_server_errors_carry_status_and_message(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    outs = tiny_batch()
    with pytest.raises(YoloLossError) as e:
        c.compute(outs, boxes=np.array([[[10, 10, 20, 20, 7]]], np.float32))
    assert e.value.status == 400 and "class id" in e.value.message
    assert "boxes[0][0]" in e.value.message
    bad = [o.copy() for o in outs]
    bad[1][0, 1, 2, 3] = np.nan
    with pytest.raises(YoloLossError) as e:
        c.compute(bad, boxes=np.zeros((1, 1, 5)))
    assert e.value.status == 400 and "output_1" in e.value.message
    with pytest.raises(YoloLossError) as e:
        c.compute(outs[:1], boxes=np.zeros((1, 1, 5)))
    assert e.value.status == 400 and "output_1" in e.value.message
    with pytest.raises(YoloLossError) as e:
        c.compute(outs, boxes=np.zeros((1, 1, 5)), anchors="1,2,3")
    assert e.value.status == 400 and "anchors" in e.value.message
    with pytest.raises(YoloLossError) as e:
        YoloLossClient(url, model="yolov9").compute(outs, boxes=np.zeros((1, 1, 5)))
    assert e.value.status == 404 and "yolov9" in e.value.message
    # the connection survives errors
    assert c.compute(outs, boxes=np.zeros((1, 1, 5))).loss > 0


def test_client_side_refusals(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    outs = tiny_batch()
    with pytest.raises(ValueError):
        c.compute(outs)
    with pytest.raises(ValueError):
        c.compute(outs, boxes=np.zeros((1, 1, 5)), y_true=outs)
    with pytest.raises(TypeError):
        c.compute(outs[0], boxes=np.zeros((1, 1, 5)))
    with pytest.raises(TypeError):
        c.compute([o.astype(np.complex64) for o in outs], boxes=np.zeros((1, 1, 5)))
    nan = [o.copy() for o in outs]
    nan[0][0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="JSON"):
        c.compute(nan, boxes=np.zeros((1, 1, 5)), binary=False)
    with pytest.raises(TypeError):
        BF16(np.zeros(3, np.float32))


def test_no_server_is_an_error_without_status():
    c = YoloLossClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(YoloLossError) as e:
        c.compute(tiny_batch(), boxes=np.zeros((1, 1, 5)))
    assert e.value.status is None and "127.0.0.1:9" in e.value.message


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    tok = tmp_path_factory.mktemp("tok") / "token"
    tok.write_text("s3cret-token\n")
    d = Daemon("--threads", "1", "--token-file", str(tok), "--max-body", "256K", "--timeout", "1")
    yield d
    d.stop()


def test_bearer_token(guarded):
    outs, boxes = tiny_batch(), np.zeros((1, 1, 5))
    anon = YoloLossClient(guarded.url, model="yolov3-tiny")
    assert anon.live()                                   # health needs no token
    with pytest.raises(YoloLossError) as e:
        anon.compute(outs, boxes=boxes)
    assert e.value.status == 401
    with pytest.raises(YoloLossError) as e:
        YoloLossClient(guarded.url, model="yolov3-tiny", token="wrong").model_metadata()
    assert e.value.status == 401
    ok = YoloLossClient(guarded.url, model="yolov3-tiny", token="s3cret-token")
    assert ok.compute(outs, boxes=boxes).loss > 0
    assert ok.model_metadata()["name"] == "yolov3-tiny"


def test_body_too_large_is_413(guarded):
    c = YoloLossClient(guarded.url, model="yolov3-tiny", token="s3cret-token",
                       compact=False, shm="wire")    # the dense body, through the socket
    big = [np.zeros((1, 32, 32, 18), np.float32), np.zeros((1, 64, 64, 18), np.float64)]
    with pytest.raises(YoloLossError) as e:
        c.compute(big, boxes=np.zeros((1, 1, 5)))
    assert e.value.status == 413
    assert c.compute(tiny_batch(), boxes=np.zeros((1, 1, 5))).loss > 0


def test_idle_connection_closed_by_the_server_is_reopened(guarded):
    """The guarded daemon closes connections idle for 1 s: the next call reconnects."""
    c = YoloLossClient(guarded.url, model="yolov3-tiny", token="s3cret-token")
    first = c.compute(tiny_batch(), boxes=np.zeros((1, 1, 5)))
    old = c._local.conn.sock
    time.sleep(1.6)
    again = c.compute(tiny_batch(), boxes=np.zeros((1, 1, 5)))
    assert again.loss == first.loss and c.retries == 0
    assert c._local.conn.sock is not old


# ---- overload: 503 and Retry-After -------------------------------------------------------

# The retry policy itself (statuses, Retry-After, backoff, deadline) is tested against a
# scripted server in test_errors_retry.py; here, the real daemon's 503 under overload.

def test_live_overload_is_absorbed_by_retries():
    """--max-inflight 1 and four threads at once: some requests get 503, every compute
    still returns the right answer."""
    d = Daemon("--threads", "1", "--max-inflight", "1")
    try:
        rng = np.random.default_rng(11)
        C = 20
        outs = [rng.normal(0, 1, (8, h, h, 3 * (5 + C))).astype(np.float32) for h in (8, 16)]
        boxes = mg.random_boxes(rng, 8, 6, (256, 256), ref.TINY_ANCHORS, C)
        c = YoloLossClient(d.url, model="yolov3-tiny", timeout=30)
        want = c.compute(outs, boxes=boxes, grads=True)
        results, errors = [], []

        def work():
            try:
                for _ in range(3):
                    results.append(c.compute(outs, boxes=boxes, grads=True))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors[0]
        assert len(results) == 12
        for r in results:
            same_bits(r, want)
        print("503 answers retried: %d" % c.retries)
    finally:
        d.stop()


# ---- packaging ---------------------------------------------------------------------------

def test_pip_installs_offline(tmp_path, url):
    """pip install of the package with Debian's setuptools (no index, no build isolation)
    into a venv that sees Debian's numpy: the metadata comes from pyproject.toml, the
    typing marker is installed. Built from a copy, so the checkout gets no build/ dir."""
    src = tmp_path / "src"
    shutil.copytree(os.path.join(HERE, ".."), str(src),
                    ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True, timeout=120)
    py = str(venv / "bin" / "python")
    p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                        "--no-cache-dir", "-q", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    code = ("import numpy as np, yololoss, sys, os, importlib.metadata as m;"
            "assert yololoss.__file__.startswith(sys.prefix);"
            "md = m.metadata('yololoss');"
            "print(md['Version'], md['License'], md['Description-Content-Type'],"
            "      os.path.exists(os.path.join(os.path.dirname(yololoss.__file__), 'py.typed')));"
            "c = yololoss.YoloLossClient(%r, model='yolov3-tiny');"
            "r = c.compute([np.zeros((1,1,1,18)), np.zeros((1,2,2,18))], boxes=np.zeros((1,1,5)));"
            "print(yololoss.__version__, round(r.loss, 4))" % url)
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0.2.0", "MIT", "text/markdown", "True", "0.2.0", "10.3972"]


def test_a_dropped_client_closes_its_sockets(url):
    """A client garbage-collected without close() closes its keep-alive sockets itself
    (no ResourceWarning for an unclosed socket)."""
    import gc
    import warnings
    c = YoloLossClient(url, model="yolov3-tiny", shm="wire")
    c.compute(tiny_batch(), boxes=np.zeros((1, 1, 5)))
    assert c._local.conn.sock is not None
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        del c
        gc.collect()
    assert not [x for x in w if issubclass(x.category, ResourceWarning)], w[0].message
