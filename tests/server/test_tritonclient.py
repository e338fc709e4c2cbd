"""Triton's own HTTP client (tritonclient.http) against yololossd, unchanged.

tritonclient runs from its public source (github.com/triton-inference-server/client,
src/python/library) with Debian's python3-numpy, python3-rapidjson, python3-gevent and
python3-geventhttpclient; point TRITONCLIENT_PATH at that library directory. Without it
these tests are skipped. The daemon is YL_DAEMON (default build/yololossd); expected values
come from the independent numpy reference (tests/reference/yolo_reference.py).

    TRITONCLIENT_PATH=.../client/src/python/library make test-server-tritonclient
"""

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
if os.environ.get("TRITONCLIENT_PATH"):
    sys.path.insert(0, os.environ["TRITONCLIENT_PATH"])

import yolo_reference as ref  # noqa: E402

try:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
except ImportError:  # every test is reported as skipped
    httpclient = None
    InferenceServerException = Exception

pytestmark = pytest.mark.skipif(httpclient is None, reason="tritonclient not found: set "
                                "TRITONCLIENT_PATH to .../client/src/python/library")

YOLOV3 = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326]
TINY = [10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319]


@pytest.fixture(scope="module")
def server():
    daemon = os.environ.get("YL_DAEMON", os.path.join(ROOT, "build", "yololossd"))
    err = tempfile.NamedTemporaryFile(prefix="yololossd-tc-", suffix=".err", delete=False)
    proc = subprocess.Popen([daemon, "--host", "127.0.0.1", "--port", "0", "--threads", "2"],
                            stdout=subprocess.DEVNULL, stderr=err)
    port = None
    while port is None:
        with open(err.name) as f:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", f.read())
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None:
            raise RuntimeError("yololossd did not start: " + open(err.name).read())
        else:
            time.sleep(0.01)
    yield "127.0.0.1:%d" % port
    proc.terminate()
    rc = proc.wait()
    log = open(err.name).read()
    os.unlink(err.name)
    assert rc == 0, log


def make_case(rng, B, grid, C, anchors, T=4):
    L = len(anchors) // 6
    outs = [rng.standard_normal((B, grid << l, grid << l, 3 * (5 + C))).astype(np.float32)
            for l in range(L)]
    size = 32 * grid
    boxes = np.zeros((B, T, 5), np.float32)
    for b in range(B):
        for t in range(rng.integers(1, T + 1)):
            w, h = rng.integers(4, size * 0.8, 2)
            x, y = rng.integers(0, size - w), rng.integers(0, size - h)
            boxes[b, t] = [x, y, x + w, y + h, rng.integers(0, C)]
    return outs, boxes


def inputs_for(outs, boxes, binary=True, dtype="FP32"):
    np_dtype = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}[dtype]
    ins = []
    for l, o in enumerate(outs):
        x = httpclient.InferInput("output_%d" % l, list(o.shape), dtype)
        x.set_data_from_numpy(o.astype(np_dtype), binary_data=binary)
        ins.append(x)
    x = httpclient.InferInput("boxes", list(boxes.shape), "FP32")
    x.set_data_from_numpy(boxes, binary_data=binary)
    ins.append(x)
    return ins


def check_against_reference(result, outs, boxes, anchors, ignore_thresh=0.5, grads=True):
    want = ref.evaluate([o.astype(np.float64) for o in outs], anchors, ignore_thresh,
                        boxes=boxes.astype(np.float64))
    np.testing.assert_allclose(result.as_numpy("loss")[0], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(result.as_numpy("loss_terms"), want["terms"], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("layer_terms"), want["layer_terms"],
                               rtol=1e-5, atol=1e-6)
    if grads:
        for l in range(len(outs)):
            g = result.as_numpy("grad_%d" % l)
            assert g.shape == outs[l].shape and g.dtype == np.float32
            np.testing.assert_allclose(g, want["grads"][l].reshape(g.shape), atol=1e-5)


def test_health_metadata_config_stats(server):
    c = httpclient.InferenceServerClient(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.get_server_metadata()["name"] == "yololossd"
    md = c.get_model_metadata("yolov3")
    assert [i["name"] for i in md["inputs"]][:3] == ["output_0", "output_1", "output_2"]
    assert c.get_model_metadata("yolov3-tiny", model_version="1")["versions"] == ["1"]
    assert c.get_model_config("yolov3-tiny")["parameters"]["anchors"]["string_value"] == \
        ",".join(map(str, TINY))
    assert c.is_model_ready("yolov3") and not c.is_model_ready("nope")
    stats = c.get_inference_statistics("yolov3")
    assert stats["model_stats"][0]["name"] == "yolov3"
    c.close()


def test_infer_binary_defaults(server):
    """tritonclient's defaults: binary inputs, no outputs listed (binary_data_output)."""
    rng = np.random.default_rng(1)
    outs, boxes = make_case(rng, 2, 2, 3, YOLOV3)
    c = httpclient.InferenceServerClient(server)
    r = c.infer("yolov3", inputs_for(outs, boxes), request_id="tc-1")
    assert r.get_response()["id"] == "tc-1"
    assert r.as_numpy("stats").shape == (3, 8) and r.as_numpy("image_terms").shape == (2, 4)
    check_against_reference(r, outs, boxes, YOLOV3)
    c.close()


def test_infer_json_equals_binary(server):
    rng = np.random.default_rng(2)
    outs, boxes = make_case(rng, 2, 2, 2, TINY)
    c = httpclient.InferenceServerClient(server)
    names = ["loss", "loss_terms", "layer_terms", "image_terms", "stats", "grad_0", "grad_1"]
    rb = c.infer("yolov3-tiny", inputs_for(outs, boxes, binary=True),
                 outputs=[httpclient.InferRequestedOutput(n, binary_data=True) for n in names])
    rj = c.infer("yolov3-tiny", inputs_for(outs, boxes, binary=False),
                 outputs=[httpclient.InferRequestedOutput(n, binary_data=False) for n in names])
    for n in names:
        assert np.array_equal(rb.as_numpy(n), rj.as_numpy(n)), n
    check_against_reference(rb, outs, boxes, TINY)
    c.close()


@pytest.mark.parametrize("dtype", ["FP16", "FP64", "BF16"])
def test_infer_dtypes(server, dtype):
    rng = np.random.default_rng(3)
    outs, boxes = make_case(rng, 1, 2, 2, TINY)
    ins = []
    for l, o in enumerate(outs):
        x = httpclient.InferInput("output_%d" % l, list(o.shape), dtype)
        x.set_data_from_numpy(o.astype(np.float16 if dtype == "FP16" else
                                       np.float64 if dtype == "FP64" else np.float32))
        ins.append(x)
        # what the server receives: BF16 is tritonclient's truncation of the float32 bits
        if dtype == "BF16":
            outs[l] = (o.view(np.uint32) & 0xFFFF0000).view(np.float32)
        elif dtype == "FP16":
            outs[l] = o.astype(np.float16).astype(np.float32)
    x = httpclient.InferInput("boxes", list(boxes.shape), "FP32")
    x.set_data_from_numpy(boxes)
    ins.append(x)
    c = httpclient.InferenceServerClient(server)
    r = c.infer("yolov3-tiny", ins)
    check_against_reference(r, outs, boxes, TINY)
    c.close()


@pytest.mark.parametrize("req,resp", [("gzip", "gzip"), ("deflate", "deflate"),
                                      ("gzip", None), (None, "deflate")])
def test_compression(server, req, resp):
    rng = np.random.default_rng(4)
    outs, boxes = make_case(rng, 2, 1, 3, YOLOV3)
    c = httpclient.InferenceServerClient(server)
    r = c.infer("yolov3", inputs_for(outs, boxes), request_compression_algorithm=req,
                response_compression_algorithm=resp)
    check_against_reference(r, outs, boxes, YOLOV3)
    c.close()


def test_parameters_and_triton_options(server):
    rng = np.random.default_rng(5)
    outs, boxes = make_case(rng, 1, 2, 2, YOLOV3)
    c = httpclient.InferenceServerClient(server)
    r = c.infer("yolov3", inputs_for(outs, boxes), parameters={"ignore_thresh": 0.3,
                                                                 "run": "tc", "step": 3},
                priority=1, timeout=1000000,
                outputs=[httpclient.InferRequestedOutput(n) for n in
                         ("loss", "loss_terms", "layer_terms")])
    check_against_reference(r, outs, boxes, YOLOV3, ignore_thresh=0.3, grads=False)
    assert r.as_numpy("grad_0") is None
    c.close()


def test_async_infer(server):
    rng = np.random.default_rng(6)
    cases = [make_case(rng, b, 1 + b % 2, 2, TINY) for b in range(1, 5)]
    c = httpclient.InferenceServerClient(server, concurrency=4)
    pending = [c.async_infer("yolov3-tiny", inputs_for(o, bx)) for o, bx in cases]
    for (o, bx), p in zip(cases, pending):
        check_against_reference(p.get_result(), o, bx, TINY)
    c.close()


def test_errors_reach_the_user(server):
    rng = np.random.default_rng(7)
    outs, boxes = make_case(rng, 1, 1, 2, TINY)
    c = httpclient.InferenceServerClient(server)
    bad = boxes.copy()
    bad[0, 0, 4] = 7
    with pytest.raises(InferenceServerException, match=r"boxes\[0\]\[0\]: class id 7"):
        c.infer("yolov3-tiny", inputs_for(outs, bad))
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        c.infer("nope", inputs_for(outs, boxes))
    with pytest.raises(InferenceServerException, match="unknown output 'logits'"):
        c.infer("yolov3-tiny", inputs_for(outs, boxes),
                outputs=[httpclient.InferRequestedOutput("logits")])
    # JSON mode writes NaN literals: a clear 400
    nan = [o.copy() for o in outs]
    nan[0][0, 0, 0, 0] = np.nan
    with pytest.raises(InferenceServerException, match="NaN and Infinity are not JSON"):
        c.infer("yolov3-tiny", inputs_for(nan, boxes, binary=False))
    # binary NaN: the core names the element
    with pytest.raises(InferenceServerException, match="output_0"):
        c.infer("yolov3-tiny", inputs_for(nan, boxes))
    c.close()


def test_system_shared_memory(server):
    """Triton's own shared-memory flow, unchanged: tritonclient.utils.shared_memory creates
    the regions, the client registers them, inputs and gradient outputs live in them."""
    import tritonclient.utils.shared_memory as shm

    rng = np.random.default_rng(8)
    outs, boxes = make_case(rng, 2, 2, 3, YOLOV3)
    c = httpclient.InferenceServerClient(server)
    assert "system_shared_memory" in c.get_server_metadata()["extensions"]
    c.unregister_system_shared_memory()
    tag = "%d" % os.getpid()
    in_bytes = [o.nbytes for o in outs] + [boxes.nbytes]
    h_in = shm.create_shared_memory_region("in" + tag, "/yl_tc_in" + tag, sum(in_bytes))
    h_out = shm.create_shared_memory_region("out" + tag, "/yl_tc_out" + tag,
                                            sum(o.nbytes for o in outs))
    try:
        c.register_system_shared_memory("in" + tag, "/yl_tc_in" + tag, sum(in_bytes))
        c.register_system_shared_memory("out" + tag, "/yl_tc_out" + tag,
                                        sum(o.nbytes for o in outs))
        status = c.get_system_shared_memory_status()
        assert {s["name"] for s in status} >= {"in" + tag, "out" + tag}
        ins, off = [], 0
        for name, arr in [("output_%d" % l, o) for l, o in enumerate(outs)] + [("boxes", boxes)]:
            shm.set_shared_memory_region(h_in, [arr], offset=off)
            x = httpclient.InferInput(name, list(arr.shape), "FP32")
            x.set_shared_memory("in" + tag, arr.nbytes, offset=off)
            ins.append(x)
            off += arr.nbytes
        req, off = [], 0
        for l, o in enumerate(outs):
            r = httpclient.InferRequestedOutput("grad_%d" % l)
            r.set_shared_memory("out" + tag, o.nbytes, offset=off)
            req.append(r)
            off += o.nbytes
        req += [httpclient.InferRequestedOutput(n) for n in ("loss", "loss_terms", "layer_terms")]
        result = c.infer("yolov3", ins, outputs=req)
        want = ref.evaluate([o.astype(np.float64) for o in outs], YOLOV3, 0.5,
                            boxes=boxes.astype(np.float64))
        np.testing.assert_allclose(result.as_numpy("loss")[0], want["loss"], rtol=1e-5)
        off = 0
        for l, o in enumerate(outs):
            meta = result.get_output("grad_%d" % l)
            # as Triton answers an output in shared memory: name, datatype and shape only
            assert sorted(meta) == ["datatype", "name", "shape"], meta
            g = shm.get_contents_as_numpy(h_out, np.float32, list(o.shape), offset=off)
            np.testing.assert_allclose(g, want["grads"][l].reshape(o.shape), atol=1e-5)
            off += o.nbytes
        # the same request without shared memory gives the same bits
        plain = c.infer("yolov3", inputs_for(outs, boxes))
        off = 0
        for l, o in enumerate(outs):
            g = shm.get_contents_as_numpy(h_out, np.float32, list(o.shape), offset=off)
            assert np.array_equal(g, plain.as_numpy("grad_%d" % l))
            off += o.nbytes
        # a region too small for an output: a 400 naming output and region
        small = httpclient.InferRequestedOutput("grad_0")
        small.set_shared_memory("out" + tag, 16)
        with pytest.raises(InferenceServerException, match="grad_0.*out%s.*too small" % tag):
            c.infer("yolov3", ins, outputs=[small])
    finally:
        c.unregister_system_shared_memory("in" + tag)
        c.unregister_system_shared_memory("out" + tag)
        assert c.get_system_shared_memory_status() == [] or all(
            s["name"] not in ("in" + tag, "out" + tag) for s in c.get_system_shared_memory_status())
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)
        c.close()
