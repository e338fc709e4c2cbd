"""RemoteYoloLoss in the setups real YOLO training uses (issue 10): mixed precision with a
GradScaler's scale, copies of the model (EMA, torch.save, spawn), DDP logging, validation
under no_grad, reductions, and yolov5/ultralytics layouts. Expected values come from the
independent numpy reference (tests/reference/yolo_reference.py)."""

import copy
import io
import json
import pickle

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (Debian: apt-get install python3-torch); "
    "the yololoss.torch tests need it")

import make_golden as mg  # noqa: E402
import yolo_reference as ref  # noqa: E402
from conftest import Daemon  # noqa: E402

from yololoss import YoloLossClient  # noqa: E402
from yololoss.layouts import (boxes_from_ultralytics, grads_to_ultralytics,  # noqa: E402
                              heads_from_ultralytics)
from yololoss.torch import RemoteYoloLoss  # noqa: E402

C = 3
CH = 3 * (5 + C)
ANCHORS = ref.TINY_ANCHORS * 64 / 416
SCALE = 65536.0          # torch.cuda.amp.GradScaler's initial scale


@pytest.fixture
def client(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    yield c
    c.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A daemon of its own with a fresh history file (runs are read back)."""
    d = Daemon("--threads", "2", "--history",
               str(tmp_path_factory.mktemp("hist") / "history.sqlite"))
    yield d
    d.stop()


def raw_heads(seed, B=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (B, s, s, 3, 5 + C)).astype(dtype) for s in (2, 4)], rng


# ---- mixed precision -------------------------------------------------------------------

def test_fp16_heads_under_grad_scaler_equal_the_fp32_path_scaled(client):
    """fp16 heads, loss x 65536 before backward (what GradScaler does): the gradient is
    finite, equals the fp32 heads' scaled gradient cast to fp16, and gradients below fp16's
    smallest subnormal (6e-8) survive because they are scaled before the cast."""
    raw, rng = raw_heads(20, B=6)
    raw[1][..., 4] = -17.0            # objectness logits whose gradient is ~4e-8 / B
    raw[0][0, 0, 0, 0, 5:] = 9.0      # and some large ones
    boxes = mg.random_boxes(rng, 6, 3, (64, 64), ANCHORS, C)
    h16 = [torch.from_numpy(r).half().requires_grad_() for r in raw]
    h32 = [h.detach().float().requires_grad_() for h in h16]       # the same values
    crit = RemoteYoloLoss(client, anchors=ANCHORS)
    (crit(h32, boxes=boxes) * SCALE).backward()
    g32 = crit.last_result.grads
    # the case is one GradScaler keeps: every scaled gradient fits in fp16 (65504)
    assert max(np.abs(g).max() for g in g32) * SCALE < 65504
    loss16 = crit(h16, boxes=boxes)
    assert loss16.dtype == torch.float32
    (loss16 * SCALE).backward()
    tiny = 0
    for a, b, g in zip(h16, h32, g32):
        assert a.grad.dtype == torch.float16
        assert torch.isfinite(a.grad).all()
        assert torch.equal(a.grad, b.grad.half())
        assert torch.equal(b.grad, torch.from_numpy(g) * SCALE)
        small = (np.abs(g) > 0) & (np.abs(g) < 5.9e-8)
        tiny += int(small.sum())
        assert (a.grad.numpy()[small] != 0).all()
    assert tiny > 0, "the case must hold gradients below fp16's range"
    # unscaled, the fp16 gradient is the service's gradient to fp16 precision
    for a, g in zip(h16, g32):
        assert np.allclose(a.grad.double().numpy() / SCALE, g, rtol=1e-3, atol=1e-12)


def test_bf16_heads_under_grad_scaler(client):
    raw, rng = raw_heads(21, B=6)
    boxes = mg.random_boxes(rng, 6, 3, (64, 64), ANCHORS, C)
    hb = [torch.from_numpy(r).bfloat16().requires_grad_() for r in raw]
    crit = RemoteYoloLoss(client, anchors=ANCHORS)
    (crit(hb, boxes=boxes) * SCALE).backward()
    e = ref.evaluate([h.detach().double().numpy() for h in hb], ANCHORS, 0.5, boxes=boxes)
    for h, g, w in zip(hb, crit.last_result.grads, e["grads"]):
        assert h.grad.dtype == torch.bfloat16
        assert np.allclose(g, w, rtol=1.2e-7, atol=1e-7)
        assert torch.equal(h.grad, (torch.from_numpy(g) * SCALE).bfloat16())


# ---- reductions ------------------------------------------------------------------------

def close(got, want, what):
    """float32 gradients against the float64 reference: the wire's rounding, scaled."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = ~(np.abs(got - want) <= 1e-7 + 1e-6 * np.abs(want))
    assert not bad.any(), "%s differs at %s: %r vs %r" % (
        what, np.argwhere(bad)[0], got[bad][0], want[bad][0])


def test_reductions_against_the_reference_per_image(client):
    """"none": loss_b and d loss_b / d outputs equal the reference run on image b alone
    (keras's loss of a batch of one); "sum" is B x "mean", gradient included."""
    B = 4
    raw, rng = raw_heads(22, B=B)
    boxes = mg.random_boxes(rng, B, 3, (64, 64), ANCHORS, C, empty_images=(2,))
    heads = [torch.from_numpy(r).requires_grad_() for r in raw]
    none = RemoteYoloLoss(client, anchors=ANCHORS, reduction="none")
    per = none(heads, boxes=boxes)
    assert per.shape == (B,) and per.dtype == torch.float64 and per.requires_grad
    for b in range(B):
        e = ref.evaluate([r[b:b + 1] for r in raw], ANCHORS, 0.5, boxes=boxes[b:b + 1])
        assert per[b].item() == pytest.approx(e["loss"], rel=1e-6, abs=1e-9)
        got = torch.autograd.grad(per[b], heads, retain_graph=True)
        for l in range(2):
            want = np.zeros_like(raw[l])
            want[b] = e["grads"][l][0]
            close(got[l].numpy(), want, "d loss_%d / d output_%d" % (b, l))
    # a weighted sum of per-image losses backpropagates through all of them
    w = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)
    g_w = torch.autograd.grad((per * w).sum(), heads)
    mean = RemoteYoloLoss(client, anchors=ANCHORS)
    m = mean(heads, boxes=boxes)
    full = ref.evaluate(raw, ANCHORS, 0.5, boxes=boxes)
    assert m.item() == pytest.approx(full["loss"], rel=1e-6)
    assert per.sum().item() / B == pytest.approx(m.item(), rel=1e-6)
    for l in range(2):
        close(g_w[l].numpy(), full["grads"][l] * B * w.numpy().reshape(B, 1, 1, 1, 1),
              "weighted none, layer %d" % l)
    s = RemoteYoloLoss(client, anchors=ANCHORS, reduction="sum")
    total = s(heads, boxes=boxes)
    assert total.dim() == 0 and total.item() == pytest.approx(B * full["loss"], rel=1e-6)
    g_s = torch.autograd.grad(total, heads)
    for l in range(2):
        close(g_s[l].numpy(), B * full["grads"][l], "sum, layer %d" % l)
    with pytest.raises(ValueError, match="reduction"):
        RemoteYoloLoss(client, reduction="avg")


# ---- copies ------------------------------------------------------------------------------

class Detector(torch.nn.Module):
    """A model that holds its loss, as trainers often do."""

    def __init__(self, client):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(6, CH, 1)
        with torch.no_grad():
            for p in self.conv.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.loss = RemoteYoloLoss(client, layout="NCHW", anchors=ANCHORS)

    def forward(self, x, boxes):
        out = self.conv(x)
        return self.loss([torch.nn.functional.avg_pool2d(out, 2), out], boxes=boxes)


def _loss_and_grads(model, x, boxes):
    model.zero_grad()
    loss = model(x, boxes)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def test_model_holding_the_loss_copies_pickles_and_saves(client):
    rng = np.random.default_rng(24)
    x = torch.from_numpy(rng.normal(0, 1, (2, 6, 4, 4))).float()
    boxes = mg.random_boxes(rng, 2, 3, (64, 64), ANCHORS, C)
    model = Detector(client)
    want = _loss_and_grads(model, x, boxes)           # the client now holds a connection
    assert client._local.conn is not None and client._local.conn.sock is not None
    buf = io.BytesIO()
    torch.save(model, buf)
    copies = [copy.deepcopy(model), pickle.loads(pickle.dumps(model)),
              torch.load(io.BytesIO(buf.getvalue()))]
    for m in copies:
        assert m.loss.client is not client and m.loss.client.url == client.url
        assert m.loss.last_result.loss == model.loss.last_result.loss
        got = _loss_and_grads(m, x, boxes)            # reconnects on first use
        assert got[0] == want[0]
        assert all(torch.equal(a, b) for a, b in zip(got[1], want[1]))
    res = model.loss.last_result
    for back in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res)):
        assert back.loss == res.loss and back.terms == res.terms
        assert all(np.array_equal(a, b) for a, b in zip(back.grads, res.grads))
        assert back.stats.keys() == res.stats.keys()


# ---- logging: validation and DDP ---------------------------------------------------------

def points(url, run):
    return YoloLossClient(url).steps(run)


def test_no_grad_forwards_are_not_logged_unless_asked(history):
    c = YoloLossClient(history.url, model="yolov3-tiny")
    raw, rng = raw_heads(25, B=2, dtype=np.float32)
    boxes = mg.random_boxes(rng, 2, 2, (64, 64), ANCHORS, C)
    heads = [torch.from_numpy(r).requires_grad_() for r in raw]
    crit = RemoteYoloLoss(c, anchors=ANCHORS, run="nograd")
    train = [crit(heads, boxes=boxes).item() for _ in range(2)]
    with torch.no_grad():
        crit(heads, boxes=boxes)
    with torch.inference_mode():
        crit(heads, boxes=boxes)
    train.append(crit(heads, boxes=boxes).item())
    assert crit.step == 3
    pts = points(history.url, "nograd")
    assert [p["step"] for p in pts] == [0, 1, 2]
    assert [p["total"] for p in pts] == pytest.approx(train, rel=1e-6)
    asked = RemoteYoloLoss(c, anchors=ANCHORS, run="nograd-asked", log_no_grad=True)
    with torch.no_grad():
        asked(heads, boxes=boxes)
        asked(heads, boxes=boxes)
    assert asked.step == 2 and [p["step"] for p in points(history.url, "nograd-asked")] == [0, 1]


def test_image_ids_scalars_and_config_follow_the_logging_rules(history):
    c = YoloLossClient(history.url, model="yolov3-tiny")
    raw, rng = raw_heads(28, B=2, dtype=np.float32)
    boxes = mg.random_boxes(rng, 2, 2, (64, 64), ANCHORS, C)
    heads = [torch.from_numpy(r).requires_grad_() for r in raw]
    crit = RemoteYoloLoss(c, anchors=ANCHORS, run="extras")
    crit.set_config({"lr": 0.01, "amp": False})
    ids = torch.tensor([31, 7])
    for k in range(2):
        crit(heads, boxes=boxes, image_ids=ids)
        crit.log_scalars(lr=0.01 / (k + 1))
    with torch.no_grad():                  # not logged: the ids are not sent either
        crit(heads, boxes=boxes, image_ids=ids)
    crit.log_scalars({"val_map": 0.25})    # at the last logged step
    assert c.config("extras") == {"lr": 0.01, "amp": False}
    sc = c.scalars("extras")
    assert sc["lr"]["steps"] == [0, 1] and sc["val_map"]["steps"] == [1]
    assert [h["step"] for h in c.image_history("extras", 31)["history"]] == [0, 1]
    quiet = RemoteYoloLoss(c, anchors=ANCHORS)       # no run: nothing is sent
    quiet(heads, boxes=boxes, image_ids=ids)
    quiet.log_scalars(lr=1.0)


@pytest.mark.parametrize("mode", ["rank0", "per_rank"])
def test_ddp_two_ranks_log_without_overwriting(history, tmp_path, mode):
    """Two gloo ranks on CPU (torch.multiprocessing.spawn; the criterion itself is pickled
    to them): "rank0" records rank 0's three training steps only; "per_rank" records each
    rank's under <run>.rank<r>. The validation forward is in neither."""
    import torch.multiprocessing as mp
    import ddp_worker
    run = "ddp-" + mode
    crit = RemoteYoloLoss(YoloLossClient(history.url, model="yolov3-tiny"),
                          layout="NCHW", anchors=ANCHORS, run=run, distributed_logging=mode)
    mp.spawn(ddp_worker.run, args=(2, str(tmp_path / "init"), crit, str(tmp_path)),
             nprocs=2, join=True)
    got = [json.load(open(tmp_path / ("rank%d.json" % r))) for r in range(2)]
    assert all(g["step"] == 3 for g in got)
    assert got[0]["losses"] != got[1]["losses"]         # different data per rank
    names = {r["run"] for r in YoloLossClient(history.url).runs()}
    if mode == "rank0":
        pts = points(history.url, run)
        assert [p["step"] for p in pts] == [0, 1, 2]
        assert [p["total"] for p in pts] == pytest.approx(got[0]["losses"], rel=1e-6)
        assert not any(n.startswith(run + ".rank") for n in names)
    else:
        assert run not in names
        for r in range(2):
            pts = points(history.url, "%s.rank%d" % (run, r))
            assert [p["step"] for p in pts] == [0, 1, 2]
            assert [p["total"] for p in pts] == pytest.approx(got[r]["losses"], rel=1e-6)


# ---- yolov5 / ultralytics layouts ----------------------------------------------------------

def ultralytics_case(seed, B=3):
    """ultralytics-style heads ([B, 3, H, W, 5+C], finest first) and targets [N, 6] made
    from pixel boxes, plus the keras heads built index by index (independently of the
    adapter) and the boxes they came from."""
    rng = np.random.default_rng(seed)
    boxes = mg.random_boxes(rng, B, 3, (64, 64), ANCHORS, C, pad_anywhere=False)
    rows = []
    for b in range(B):
        for t in range(boxes.shape[1]):
            x0, y0, x1, y1, cls = boxes[b, t]
            if x1 - x0 > 0:
                rows.append([b, cls, (x0 + x1) / 2 / 64, (y0 + y1) / 2 / 64,
                             (x1 - x0) / 64, (y1 - y0) / 64])
    order = rng.permutation(len(rows))                  # targets need not be grouped
    targets = np.array(rows)[order]
    ultra = [rng.normal(0, 1, (B, 3, s, s, 5 + C)) for s in (4, 2)]     # finest first
    keras = [np.zeros((B, s, s, 3, 5 + C)) for s in (2, 4)]              # coarsest first
    for l, u in enumerate(ultra):
        k = keras[len(ultra) - 1 - l]
        for b in range(B):
            for a in range(3):
                for j in range(u.shape[2]):
                    for i in range(u.shape[3]):
                        k[b, j, i, a, :] = u[b, a, j, i, :]
    return ultra, targets, keras, boxes


def test_ultralytics_targets_become_the_pixel_boxes():
    ultra, targets, keras, boxes = ultralytics_case(26)
    got = boxes_from_ultralytics(targets, 3, (64, 64))
    for b in range(3):
        want = boxes[b][boxes[b, :, 2] - boxes[b, :, 0] > 0]
        valid = got[b][got[b, :, 2] - got[b, :, 0] > 0]
        # an image's boxes in any order (the permutation mixed them): compare sorted
        key = lambda r: tuple(np.round(r, 6))  # noqa: E731
        assert sorted(map(key, valid)) == sorted(map(key, want))
    with pytest.raises(ValueError, match=r"targets\[0\]\[0\]"):
        boxes_from_ultralytics(np.array([[3, 0, 0.5, 0.5, 0.1, 0.1]]), 3, (64, 64))
    assert [k.shape for k in heads_from_ultralytics(ultra)] == [k.shape for k in keras]
    assert all(np.array_equal(a, b) for a, b in zip(heads_from_ultralytics(ultra), keras))


def test_ultralytics_layout_loss_and_gradient(client):
    ultra, targets, keras, boxes = ultralytics_case(27)
    heads = [torch.from_numpy(u).requires_grad_() for u in ultra]
    crit = RemoteYoloLoss(client, layout="ultralytics", anchors=ANCHORS)
    loss = crit(heads, targets=torch.from_numpy(targets))
    loss.backward()
    e = ref.evaluate(keras, ANCHORS, 0.5, boxes=boxes)
    assert loss.item() == pytest.approx(e["loss"], rel=1e-6)
    for l, h in enumerate(heads):
        g = e["grads"][len(heads) - 1 - l]             # keras layer of this head
        for b, a, j, i in np.ndindex(h.shape[:4]):
            close(h.grad[b, a, j, i].numpy(), g[b, j, i, a], "head %d" % l)
    # the plain client's numpy gradient, mapped back by grads_to_ultralytics
    res = client.compute(heads_from_ultralytics(ultra),
                         boxes=boxes_from_ultralytics(targets, 3, (64, 64)),
                         anchors=ANCHORS, grads=True)
    for h, g in zip(heads, grads_to_ultralytics(res.grads)):
        assert g.shape == tuple(h.shape) and np.array_equal(g, h.grad.numpy())
    with pytest.raises(ValueError, match="ultralytics"):
        RemoteYoloLoss(client)(heads, targets=targets)
