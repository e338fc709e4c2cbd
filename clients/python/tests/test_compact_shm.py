"""Compact tensors and shared memory (docs/protocol.md) in the Python client and
RemoteYoloLoss: the rows chosen cover keras's assignment (against the reference's own
preprocess_true_boxes), every answer is bit-identical to the dense request on the wire, the
default picks compact + shared memory on a loopback daemon that offers them, and each
fallback (no extension, a refused registration, a missing row) still gives the answer."""

import json
import os

import numpy as np
import pytest

import make_golden as mg
import yolo_reference as ref
import yololoss._client as client_mod
import yololoss._infer as infer_mod
from conftest import Daemon
from test_client import assert_matches, case_args, model_of
from yololoss import YoloLossClient, YoloLossHTTPError
from yololoss._compact import rows_for_boxes, rows_for_y_true

SEEDS = [7300 + i for i in range(24)]


def same_answer(a, b):
    """The same bits for everything a compute returns (dense gradients included)."""
    assert a.loss == b.loss and a.terms == b.terms
    for x, y in ((a.layer_terms, b.layer_terms), (a.image_terms, b.image_terms)):
        assert x.tobytes() == y.tobytes()
    for k in a.stats:
        assert a.stats[k].tobytes() == b.stats[k].tobytes(), k
    assert (a.grads is None) == (b.grads is None)
    for g, h in zip(a.grads or [], b.grads or []):
        assert g.shape == h.shape and g.dtype == h.dtype and g.tobytes() == h.tobytes()


class Spy:
    """Records the JSON header of every infer request a client sends."""

    def __init__(self, client, monkeypatch):
        self.headers = []
        real = client._request

        def request(method, path, body=(), headers=None, timeout=None, **kw):
            if path.endswith("/infer"):
                raw = bytes(memoryview(body[0]).cast("B"))
                n = int((headers or {}).get("Inference-Header-Content-Length", len(raw)))
                self.headers.append(json.loads(raw[:n]))
            return real(method, path, body, headers, timeout, **kw)
        monkeypatch.setattr(client, "_request", request)

    def inputs(self, k=-1):
        return {i["name"]: i for i in self.headers[k]["inputs"]}


# ---- the rows ------------------------------------------------------------------------------

def test_rows_cover_keras_assignment_on_random_cases():
    """For every random case with boxes (fractional ones included), the rows chosen hold
    every anchor the reference's preprocess_true_boxes gives a truth."""
    checked = 0
    for seed in range(7400, 7600):
        case = mg.random_case(seed)
        if "boxes" not in case:
            continue
        shapes = [np.asarray(o).shape for o in case["outputs"]]
        grids = [(s[1], s[2]) for s in shapes]
        rows = rows_for_boxes(case["boxes"], grids)
        C = (shapes[0][-1] // 3 - 5) if len(shapes[0]) == 4 else shapes[0][-1] - 5
        yt = ref.preprocess_true_boxes(case["boxes"], (32 * grids[0][0], 32 * grids[0][1]),
                                       case["anchors"], C)
        for l, y in enumerate(yt):
            truth = np.flatnonzero(y[..., 4] != 0)
            assert np.isin(truth, rows[l]).all(), (seed, l)
            assert (np.diff(rows[l]) > 0).all()
            # and few: at most two cells of 3 anchors per box
            assert len(rows[l]) <= 6 * case["boxes"].shape[0] * case["boxes"].shape[1]
        assert rows_for_y_true(yt)[0].tolist() == np.flatnonzero(yt[0][..., 4]).tolist()
        checked += 1
    assert checked > 50


def test_rows_cover_boxes_on_cell_boundaries():
    """Centres exactly on, and a float32 ulp either side of, every cell boundary."""
    anchors = ref.YOLOV3_ANCHORS * 128 / 416
    boxes = []
    for edge in range(0, 129, 8):
        for d in (-1e-4, 0.0, 1e-4, 0.5):
            c = min(max(edge + d, 4.0), 124.0)
            boxes.append([c - 3.5, c - 2.25, c + 3.5, c + 2.25, 0])
    boxes = np.array([boxes], np.float64)
    grids = [(4, 4), (8, 8), (16, 16)]
    rows = rows_for_boxes(boxes, grids)
    for l, y in enumerate(ref.preprocess_true_boxes(boxes, (128, 128), anchors, 1)):
        assert np.isin(np.flatnonzero(y[..., 4] != 0), rows[l]).all(), l


# ---- bit identity ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_compact_and_shm_equal_dense_on_the_wire(url, seed):
    case = mg.random_case(seed)
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    dense = c.compute(outs, grads=True, compact=False, shm="wire", **kw)
    assert_matches(dense, case["expect"], case["L"])
    for compact in (True, False):
        for shm in ("wire", "shm"):
            same_answer(dense, c.compute(outs, grads=True, compact=compact, shm=shm, **kw))
    same_answer(c.compute(outs, compact=False, shm="wire", **kw),
                c.compute(outs, compact=True, shm="shm", **kw))          # loss only
    c.close()


def test_fp64_gradients_compact_and_shm(url):
    case = mg.random_case(SEEDS[0] + 1000)
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    dense = c.compute(outs, grads=True, compact=False, shm="wire", grad_datatype="FP64", **kw)
    assert all(g.dtype == np.float64 for g in dense.grads)
    for l, g in enumerate(dense.grads):
        assert np.allclose(g, case["expect"]["grads"][l], rtol=1e-9, atol=1e-12)
    for compact in (True, False):
        same_answer(dense, c.compute(outs, grads=True, compact=compact, shm="shm",
                                     grad_datatype="FP64", **kw))
    c.close()


# ---- what the default does --------------------------------------------------------------------

def test_default_is_compact_through_shared_memory(url, monkeypatch):
    case = mg.random_case(SEEDS[2])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    spy = Spy(c, monkeypatch)
    res = c.compute(outs, grads=True, **kw)
    ins = spy.inputs()
    assert "output_0_box" in ins and "output_0_index" in ins and "output_0" not in ins
    assert ins["output_0_box"]["parameters"]["shared_memory_region"]
    outs_asked = {o["name"]: o for o in spy.headers[-1]["outputs"]}
    assert "shared_memory_region" in outs_asked["grad_0_obj"]["parameters"]
    same_answer(res, c.compute(outs, grads=True, compact=False, shm="wire", **kw))
    c.close()


@pytest.fixture(scope="module")
def no_shm():
    d = Daemon("--threads", "1", "--shared-memory", "off")
    yield d
    d.stop()


def test_without_shared_memory_auto_uses_the_wire(no_shm, monkeypatch):
    case = mg.random_case(SEEDS[3])
    outs, kw = case_args(case)
    c = YoloLossClient(no_shm.url, model=model_of(case))
    spy = Spy(c, monkeypatch)
    res = c.compute(outs, grads=True, **kw)
    assert "shared_memory_region" not in json.dumps(spy.headers[-1])
    assert "output_0_rows" in spy.inputs()                      # still compact
    assert_matches(res, case["expect"], case["L"])
    with pytest.raises(YoloLossHTTPError) as e:
        YoloLossClient(no_shm.url, model=model_of(case), shm="shm").compute(outs, **kw)
    assert e.value.status == 400


def test_refused_registration_falls_back_to_the_wire(url, monkeypatch):
    """A region the daemon cannot open (as on another host): auto goes on by the wire,
    silently and from then on; shm="shm" raises."""
    class Elsewhere(client_mod.Region):
        def __init__(self, size):
            super().__init__(size)
            self.key = "/yololoss-no-such-object"
    monkeypatch.setattr(client_mod, "Region", Elsewhere)
    left = set(os.listdir("/dev/shm"))
    case = mg.random_case(SEEDS[4])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    spy = Spy(c, monkeypatch)
    res = c.compute(outs, grads=True, **kw)
    assert c._shm_failed and "shared_memory_region" not in json.dumps(spy.headers[-1])
    assert_matches(res, case["expect"], case["L"])
    with pytest.raises(YoloLossHTTPError) as e:
        YoloLossClient(url, model=model_of(case), shm="shm").compute(outs, **kw)
    assert e.value.status == 400 and "yololoss-no-such-object" in e.value.message
    assert set(os.listdir("/dev/shm")) <= left          # nothing left in /dev/shm


def test_a_missing_row_is_sent_again_dense(url, monkeypatch):
    """Should the daemon find a truth anchor without its row, the call goes again dense."""
    case = next(k for k in map(mg.random_case, range(7600, 7700))
                if "boxes" in k and k["expect"]["stats"][:, 0].sum() > 0)
    outs, kw = case_args(case)
    monkeypatch.setattr(infer_mod, "rows_for_boxes",
                        lambda boxes, grids: [np.zeros(0, np.int64) for _ in grids])
    c = YoloLossClient(url, model=model_of(case))
    spy = Spy(c, monkeypatch)
    res = c.compute(outs, grads=True, **kw)
    assert len(spy.headers) == 2
    assert "output_0_rows" in spy.inputs(0) and "output_0" in spy.inputs(1)
    assert_matches(res, case["expect"], case["L"])


def test_pickled_client_reopens_its_region(url):
    import pickle
    case = mg.random_case(SEEDS[5])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    a = c.compute(outs, grads=True, shm="shm", **kw)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2._local.region is None
    same_answer(a, c2.compute(outs, grads=True, shm="shm", **kw))
    c.close()
    c2.close()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.uint16])
def test_box_channels_are_numpys_slice(dtype):
    """The box channels gathered in one pass (each anchor's first 5 elements as one void
    element) are the bytes of numpy's own a5[..., :5], for every wire dtype (uint16: BF16
    bits), one class or 80, contiguous, read-only, strided or Fortran-ordered."""
    rng = np.random.default_rng(11)
    for shape in [(2, 3, 4, 3, 6), (1, 1, 1, 3, 5), (3, 2, 2, 3, 85)]:
        a = (rng.integers(0, 65535, size=shape) if dtype == np.uint16
             else rng.normal(size=shape)).astype(dtype)
        ro = a.copy()
        ro.setflags(write=False)
        for x in (a, ro, a[::2], a[:, :, ::-1], np.asfortranarray(a)):
            got, want = infer_mod._box_channels(x), np.ascontiguousarray(x[..., :5])
            assert got.shape == want.shape and got.dtype == want.dtype
            assert got.flags.c_contiguous and got.tobytes() == want.tobytes()


def test_rows_follow_keras_float32_not_the_exact_centre():
    """A box centred exactly on a cell boundary, x = 56 of a 96-wide input on the 12-wide
    grid: 56 / 96 rounds down in float32, so keras (and the core) put the truth in cell 6,
    where float64 says 7. The wire contract's float64 rule alone misses that row (found by
    test_rows_cover_keras_assignment_on_random_cases, seed 7474); the client sends both."""
    boxes = np.array([[[49, 58, 63, 69, 0]]], np.float32)
    rows = rows_for_boxes(boxes, [(2, 3), (4, 6), (8, 12)])
    anchors = np.array([[14, 11], [20, 20], [30, 30], [40, 40], [50, 50], [60, 60],
                        [70, 70], [80, 80], [90, 90]], np.float64)   # layer 2 takes it
    y = ref.preprocess_true_boxes(boxes, (64, 96), anchors, 1)
    truth = [np.argwhere(t[..., 4] != 0) for t in y]
    cells = {l: [tuple(a[1:3]) for a in t] for l, t in enumerate(truth) if len(t)}
    assert cells == {2: [(7, 6)]}, cells
    for l, t in enumerate(y):
        assert np.isin(np.flatnonzero(t[..., 4] != 0), rows[l]).all()


# ---- RemoteYoloLoss and the asyncio client ---------------------------------------------------

def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed (python3-torch)")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_compact_equals_dense(url, dtype, reduction):
    """Slicing and gathering on the tensor, the gradient scattered back: the parameter
    gradients of a conv head are the dense path's, bit for bit (shared memory or not)."""
    torch = _torch()
    from yololoss.torch import RemoteYoloLoss
    C = 3
    anchors = ref.TINY_ANCHORS * 64 / 416
    rng = np.random.default_rng(31)
    x = torch.from_numpy(rng.normal(0, 1, (3, 6, 4, 4))).float()
    boxes = mg.random_boxes(rng, 3, 4, (64, 64), anchors, C)
    conv = torch.nn.Conv2d(6, 3 * (5 + C), 1)          # heads cast to the dtype under test
    client = YoloLossClient(url, model="yolov3-tiny")

    def run(compact, shm):
        client.shm = shm
        crit = RemoteYoloLoss(client, layout="NCHW", anchors=anchors, compact=compact,
                              reduction=reduction)
        conv.zero_grad()
        out = conv(x)
        heads = [torch.nn.functional.avg_pool2d(out, 2), out]
        loss = crit([h.to(getattr(torch, dtype)) for h in heads], boxes=boxes)
        (loss.sum() * 1024).backward()
        return loss.detach(), [p.grad.clone() for p in conv.parameters()], crit.last_result
    want = run(False, "wire")
    assert want[2].compact is None
    for shm in ("wire", "shm"):
        got = run(True, shm)
        assert got[2].compact is not None                 # it went compact
        assert torch.equal(got[0], want[0])
        assert all(torch.equal(a, b) for a, b in zip(got[1], want[1]))
        same_answer(got[2], want[2])
    client.close()


def test_torch_compact_with_y_true_and_ultralytics_layout(url):
    torch = _torch()
    from yololoss.torch import RemoteYoloLoss
    from yololoss.layouts import heads_from_ultralytics
    C = 2
    anchors = ref.TINY_ANCHORS * 64 / 416
    rng = np.random.default_rng(32)
    boxes = mg.random_boxes(rng, 2, 3, (64, 64), anchors, C)
    y_true = [torch.from_numpy(y) for y in ref.preprocess_true_boxes(boxes, (64, 64), anchors, C)]
    ultra = [rng.normal(0, 1, (2, 3, s, s, 5 + C)) for s in (4, 2)]
    client = YoloLossClient(url, model="yolov3-tiny")
    grads = []
    for compact in (False, True):
        heads = [torch.from_numpy(u).float().requires_grad_() for u in ultra]
        crit = RemoteYoloLoss(client, layout="ultralytics", anchors=anchors, compact=compact)
        crit(heads, y_true=y_true).backward()
        grads.append([h.grad for h in heads])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    e = ref.evaluate([k.astype(np.float32).astype(np.float64)
                      for k in heads_from_ultralytics(ultra)], anchors, 0.5, y_true=y_true)
    assert crit.last_result.loss == pytest.approx(e["loss"], rel=1e-6)


def test_async_compact_equals_dense(url):
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (python3-aiohttp)")
    import asyncio
    from yololoss.aio import AsyncYoloLossClient
    case = mg.random_case(SEEDS[6])
    outs, kw = case_args(case)

    async def go():
        async with AsyncYoloLossClient(url, model=model_of(case)) as c:
            a = await c.compute(outs, grads=True, **kw)
            assert c._regions                    # by default through shared memory
            return a, await c.compute(outs, grads=True, compact=False, shm="wire", **kw)
    a, b = asyncio.run(go())
    assert a.compact is not None and b.compact is None
    same_answer(a, b)
    assert_matches(a, case["expect"], case["L"])


def test_cuda_heads_compact_gather_and_scatter_on_the_device(url):
    """CUDA heads: the rows are gathered on the GPU, the gradient scattered there; the
    same bits as the dense path and as CPU heads."""
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    from yololoss.torch import RemoteYoloLoss
    C = 3
    anchors = ref.TINY_ANCHORS * 64 / 416
    rng = np.random.default_rng(33)
    raw = [rng.normal(0, 1, (3, s, s, 3 * (5 + C))) for s in (2, 4)]
    boxes = mg.random_boxes(rng, 3, 4, (64, 64), anchors, C)
    client = YoloLossClient(url, model="yolov3-tiny")
    got = {}
    for device in ("cpu", "cuda"):
        for compact in (False, True):
            heads = [torch.from_numpy(r).half().to(device).requires_grad_() for r in raw]
            crit = RemoteYoloLoss(client, anchors=anchors, compact=compact)
            (crit(heads, boxes=boxes) * 65536).backward()
            assert all(h.grad.device == h.device for h in heads)
            got[device, compact] = [h.grad.cpu() for h in heads]
    for k, v in got.items():
        assert all(torch.equal(a, b) for a, b in zip(v, got["cpu", False])), k
    client.close()


# ---- regions over a client's life: a lost region, a restart, fork, garbage collection -----

def region_names(url):
    c = YoloLossClient(url, shm="wire")
    status, rh, data = c._request("GET", "/v2/systemsharedmemory/status")
    return {r["name"] for r in json.loads(bytes(data))}


def test_a_lost_region_is_registered_again(url):
    case = mg.random_case(SEEDS[7])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case), shm="shm")
    a = c.compute(outs, grads=True, **kw)
    first = c._local.region.name
    assert first in region_names(url)
    c._request("POST", "/v2/systemsharedmemory/region/%s/unregister" % first)
    b = c.compute(outs, grads=True, **kw)           # 400 "no region": re-registered, sent again
    assert c._local.region.name != first and c._local.region.name in region_names(url)
    same_answer(a, b)
    second = c._local.region.name
    c.close()
    assert not {first, second} & region_names(url)


def test_a_restarted_daemon_gets_a_new_region():
    """A rolling restart: the new daemon on the same port knows none of the regions."""
    d = Daemon("--threads", "1")
    port = d.url.rsplit(":", 1)[1]
    case = mg.random_case(SEEDS[8])
    outs, kw = case_args(case)
    c = YoloLossClient(d.url, model=model_of(case))
    try:
        a = c.compute(outs, grads=True, **kw)
        assert c._local.region is not None
        d.stop()
        d = Daemon("--threads", "1", "--port", port)
        same_answer(a, c.compute(outs, grads=True, **kw))
        assert c._local.region.name in region_names(d.url)
    finally:
        d.stop()


def _child_compute(url, client, outs, kw, q):
    try:
        r = client.compute(outs, grads=True, **kw)
        q.put((r.loss, client._local.region.name))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        q.put(("error", repr(e)))


def test_forked_child_uses_its_own_region_and_leaves_the_parents(url):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    case = mg.random_case(SEEDS[9])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case))
    a = c.compute(outs, grads=True, **kw)
    mine = c._local.region.name
    q = ctx.Queue()
    p = ctx.Process(target=_child_compute, args=(url, c, outs, kw, q))
    p.start()
    loss, theirs = q.get(timeout=60)
    p.join(30)
    assert loss == a.loss and theirs != mine and p.exitcode == 0
    assert mine in region_names(url)                 # the child's exit left it registered
    assert theirs not in region_names(url)           # and released its own
    same_answer(a, c.compute(outs, grads=True, **kw))
    c.close()


def test_a_dropped_client_releases_its_region(url):
    import gc
    case = mg.random_case(SEEDS[10])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case), shm="shm")
    c.compute(outs, grads=True, **kw)
    name = c._local.region.name
    assert name in region_names(url)
    del c
    gc.collect()
    assert name not in region_names(url)


FORK_SCRIPT = r"""
import os, sys, json
import numpy as np
sys.path.insert(0, sys.argv[2])
from yololoss import YoloLossClient
c = YoloLossClient(sys.argv[1], model="yolov3-tiny", shm="shm")
outs, boxes = [np.zeros((1, 1, 1, 18)), np.zeros((1, 2, 2, 18))], np.zeros((1, 1, 5))
c.compute(outs, boxes=boxes, grads=True)
pid = os.fork()
if pid == 0:                       # a plain fork whose child ends normally (atexit runs)
    c.compute(outs, boxes=boxes, grads=True)
    sys.exit(0)
os.waitpid(pid, 0)
status, rh, data = c._request("GET", "/v2/systemsharedmemory/status")
names = [r["name"] for r in json.loads(bytes(data))]
print(json.dumps({"mine": c._local.region.name in names,
                  "loss": c.compute(outs, boxes=boxes, grads=True).loss}))
"""


def test_plain_fork_child_exit_leaves_the_parents_region(url, tmp_path):
    import os
    import subprocess
    import sys
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    pkg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    p = subprocess.run([sys.executable, str(script), url, pkg], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["mine"] and out["loss"] > 0


@pytest.mark.parametrize("bad", ["3-D head", "channels not 3*(5+C)", "batch mismatch",
                                 "y_true shape", "y_true count", "too few channels"])
def test_malformed_inputs_get_the_daemons_400_by_default(url, bad):
    """Shapes the compact form cannot express are sent dense: the daemon's 400 names the
    tensor, as with compact=False, never a client-side crash."""
    rng = np.random.default_rng(40)
    outs = [rng.normal(size=(2, 1, 1, 18)), rng.normal(size=(2, 2, 2, 18))]
    boxes = np.zeros((2, 1, 5))
    y_true = [np.zeros((2, 1, 1, 18)), np.zeros((2, 2, 2, 18))]
    truth = {"boxes": boxes}
    if bad == "3-D head":
        outs[1] = outs[1].reshape(2, 4, 18)
    elif bad == "channels not 3*(5+C)":
        outs[0] = rng.normal(size=(2, 1, 1, 17))
    elif bad == "batch mismatch":
        outs[1] = rng.normal(size=(3, 2, 2, 18))
    elif bad == "y_true shape":
        truth = {"y_true": [y_true[0], np.zeros((2, 2, 3, 18))]}
    elif bad == "y_true count":
        truth = {"y_true": y_true[:1]}
    elif bad == "too few channels":
        outs = [rng.normal(size=(2, 1, 1, 3)), rng.normal(size=(2, 2, 2, 3))]
    c = YoloLossClient(url, model="yolov3-tiny")
    errors = []
    for compact in (None, False):
        with pytest.raises(YoloLossHTTPError) as e:
            c.compute(outs, compact=compact, grads=True, **truth)
        errors.append((e.value.status, e.value.message))
    assert errors[0] == errors[1] and errors[0][0] == 400
    c.close()


def test_grad_datatype_as_a_client_option(url):
    case = mg.random_case(SEEDS[11])
    outs, kw = case_args(case)
    c = YoloLossClient(url, model=model_of(case), grad_datatype="FP64")
    res = c.compute(outs, grads=True, **kw)
    assert all(g.dtype == np.float64 for g in res.grads)
    same_answer(res, c.compute(outs, grads=True, compact=False, shm="wire", **kw))
    assert c.compute(outs, grads=True, grad_datatype="FP32", **kw).grads[0].dtype == np.float32
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (python3-aiohttp)")
    import asyncio
    from yololoss.aio import AsyncYoloLossClient

    async def go():
        async with AsyncYoloLossClient(url, model=model_of(case), grad_datatype="FP64") as a:
            return await a.compute(outs, grads=True, **kw)
    same_answer(res, asyncio.run(go()))
    c.close()


def test_torch_malformed_heads_get_the_daemons_400(url):
    torch = _torch()
    from yololoss.torch import RemoteYoloLoss
    crit = RemoteYoloLoss(YoloLossClient(url, model="yolov3-tiny"))
    heads = [torch.zeros(2, 1, 1, 17, requires_grad=True), torch.zeros(2, 2, 2, 17)]
    with pytest.raises(YoloLossHTTPError) as e:
        crit(heads, boxes=np.zeros((2, 1, 5)))
    assert e.value.status == 400 and "output_0" in e.value.message


def test_close_after_the_daemon_is_gone_does_not_retry(monkeypatch):
    """Unregistering is not retried: a gone daemon has dropped the region anyway, and
    close() must not spend the retry policy's deadline on it."""
    waits = []
    monkeypatch.setattr(client_mod, "_sleep", waits.append)
    d = Daemon("--threads", "1")
    case = mg.random_case(SEEDS[12])
    outs, kw = case_args(case)
    c = YoloLossClient(d.url, model=model_of(case), shm="shm")
    c.compute(outs, grads=True, **kw)
    d.stop()
    c.close()
    assert waits == [] and not c._regions


def test_async_shared_memory_pool(url):
    """Concurrent computes on one asyncio client each hold a region of the pool; the
    answers equal the wire's bit for bit; a lost region is registered again; close()
    unregisters them all."""
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (python3-aiohttp)")
    import asyncio
    from yololoss.aio import AsyncYoloLossClient
    cases = [mg.random_case(s) for s in SEEDS[13:19]]
    cases = [k for k in cases if model_of(k) == model_of(cases[0])]

    async def go():
        c = AsyncYoloLossClient(url, model=model_of(cases[0]), shm="shm")
        wire = [await c.compute(case_args(k)[0], grads=True, shm="wire", **case_args(k)[1])
                for k in cases]
        got = await asyncio.gather(*[c.compute(case_args(k)[0], grads=True,
                                               **case_args(k)[1]) for k in cases])
        held = {r.name for r in c._regions}
        assert 1 <= len(held) <= len(cases) and held <= region_names(url)
        assert len(c._free) == len(held)                  # all given back
        lost = c._free[0].name
        await c._request("POST", "/v2/systemsharedmemory/region/%s/unregister" % lost)
        again = [await c.compute(case_args(k)[0], grads=True, **case_args(k)[1])
                 for k in cases for _ in range(2)]
        await c.close()
        return wire, got, again[::2], held
    wire, got, again, held = asyncio.run(go())
    for a, b, d in zip(wire, got, again):
        same_answer(a, b)
        same_answer(a, d)
    assert not held & region_names(url)
