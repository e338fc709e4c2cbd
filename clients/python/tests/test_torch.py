"""yololoss.torch.RemoteYoloLoss against a live yololossd: autograd through a small conv
head equals the service's gradient chained by torch, dtypes and devices come back as they
went, and a few SGD steps lower the loss."""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (Debian: apt-get install python3-torch); "
    "the yololoss.torch tests need it")

import make_golden as mg  # noqa: E402
import yolo_reference as ref  # noqa: E402

from yololoss import YoloLossClient  # noqa: E402
from yololoss.torch import RemoteYoloLoss, remote_yolo_loss  # noqa: E402

C = 3
CH = 3 * (5 + C)


class TinyHead(torch.nn.Module):
    """Two YOLO heads (yolov3-tiny layout, 64x64 input: 2x2 and 4x4 grids), NCHW."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = torch.nn.Conv2d(6, CH, 3, padding=1).to(dtype)
        self.conv0 = torch.nn.Conv2d(6, CH, 1).to(dtype)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)

    def forward(self, x):
        return [self.conv0(torch.nn.functional.avg_pool2d(x, 2)), self.conv1(x)]


def batch(seed=0, B=3, dtype=torch.float32):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(0, 1, (B, 6, 4, 4))).to(dtype)
    boxes = mg.random_boxes(rng, B, 4, (64, 64), ref.TINY_ANCHORS * 64 / 416, C)
    return x, boxes


@pytest.fixture
def client(url):
    c = YoloLossClient(url, model="yolov3-tiny")
    yield c
    c.close()


ANCHORS = ref.TINY_ANCHORS * 64 / 416


def test_conv_head_gradient_is_the_service_gradient_chained(client):
    net = TinyHead()
    x, boxes = batch()
    crit = RemoteYoloLoss(client, layout="NCHW", anchors=ANCHORS)
    heads = net(x)
    loss = crit(heads, boxes=torch.from_numpy(boxes))
    assert loss.dim() == 0 and loss.dtype == torch.float32
    loss.backward()
    got = [p.grad.clone() for p in net.parameters()]

    # by hand: the service's gradient for the NHWC heads, chained by torch.autograd.grad
    heads = net(x)
    nhwc = [h.permute(0, 2, 3, 1) for h in heads]
    res = client.compute([h.detach().contiguous().numpy() for h in nhwc], boxes=boxes,
                         grads=True, anchors=ANCHORS)
    assert loss.item() == pytest.approx(res.loss, rel=1e-7)
    want = torch.autograd.grad(nhwc, list(net.parameters()),
                               grad_outputs=[torch.from_numpy(g) for g in res.grads])
    for g, w in zip(got, want):
        assert torch.equal(g, w)

    # and the service's loss is the reference's for these heads
    e = ref.evaluate([h.detach().numpy().astype(np.float64) for h in nhwc], ANCHORS, 0.5,
                     boxes=boxes)
    assert res.loss == pytest.approx(e["loss"], rel=1e-6)
    for g, w in zip(res.grads, e["grads"]):
        assert np.allclose(g, w, rtol=1.2e-7, atol=1e-6)


def test_backward_scales_with_the_incoming_gradient(client):
    x, boxes = batch(1)
    h = [t.permute(0, 2, 3, 1).contiguous().requires_grad_() for t in TinyHead()(x)]
    h = [t.detach().requires_grad_() for t in h]
    crit = RemoteYoloLoss(client, anchors=ANCHORS)
    (3.0 * crit(h, boxes=boxes)).backward()
    res = crit.last_result
    for t, g in zip(h, res.grads):
        assert torch.allclose(t.grad, 3.0 * torch.from_numpy(g), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_head_dtypes_come_back_in_their_dtype(client, dtype):
    rng = np.random.default_rng(2)
    x, boxes = batch(2)
    raw = [rng.normal(0, 1, (3, s, s, CH)) for s in (2, 4)]
    heads = [torch.from_numpy(r).to(dtype).requires_grad_() for r in raw]
    crit = RemoteYoloLoss(client, anchors=ANCHORS)
    loss = crit(heads, boxes=boxes)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    loss.backward()
    # the values the server saw are the stored ones: the reference on them agrees
    stored = [h.detach().to(torch.float64).numpy() for h in heads]
    e = ref.evaluate(stored, ANCHORS, 0.5, boxes=boxes)
    assert loss.item() == pytest.approx(e["loss"], rel=1e-6)
    for h, g in zip(heads, crit.last_result.grads):
        assert h.grad.dtype == dtype and h.grad.device == h.device
        assert torch.equal(h.grad, torch.from_numpy(g).to(dtype))


def test_no_gradient_asked_when_none_is_needed(client):
    x, boxes = batch(3)
    crit = RemoteYoloLoss(client, layout="NCHW", anchors=ANCHORS)
    net = TinyHead()
    with torch.no_grad():
        loss = crit(net(x), boxes=boxes)
    assert crit.last_result.grads is None and not loss.requires_grad
    loss2 = crit([h.detach() for h in net(x)], boxes=boxes)
    assert crit.last_result.grads is None and loss2.item() == loss.item()


def test_y_true_tensors_and_functional_form(client):
    rng = np.random.default_rng(4)
    x, boxes = batch(4, B=2)
    raw = [torch.from_numpy(rng.normal(0, 1, (2, s, s, CH))).float() for s in (2, 4)]
    y_true = [torch.from_numpy(y) for y in
              ref.preprocess_true_boxes(boxes, (64, 64), ANCHORS, C)]
    a = remote_yolo_loss(client, raw, boxes=torch.from_numpy(boxes), anchors=ANCHORS)
    b = remote_yolo_loss(client, raw, y_true=y_true, anchors=ANCHORS)
    assert a.item() == b.item()
    # the plain client takes tensors too (bfloat16 as BF16)
    direct = client.compute(raw, boxes=torch.from_numpy(boxes), anchors=ANCHORS)
    assert direct.loss == a.item()
    bf = [r.to(torch.bfloat16) for r in raw]
    assert client.compute(bf, boxes=boxes, anchors=ANCHORS).loss == client.compute(
        [r.float().numpy() for r in bf], boxes=boxes, anchors=ANCHORS).loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_heads_get_cuda_gradients(client):
    rng = np.random.default_rng(5)
    _, boxes = batch(5)
    heads = [torch.from_numpy(rng.normal(0, 1, (3, s, s, CH))).float().cuda().requires_grad_()
             for s in (2, 4)]
    crit = RemoteYoloLoss(client, anchors=ANCHORS)
    loss = crit(heads, boxes=boxes)
    assert loss.device == heads[0].device
    loss.backward()
    for h, g in zip(heads, crit.last_result.grads):
        assert h.grad.is_cuda and torch.equal(h.grad.cpu(), torch.from_numpy(g))


def test_sgd_steps_lower_the_loss(client):
    torch.manual_seed(0)
    net = TinyHead()
    x, boxes = batch(6, B=4)
    crit = RemoteYoloLoss(client, layout="NCHW", anchors=ANCHORS, run="pytest-sgd")
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = crit(net(x), boxes=boxes)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert crit.step == 8
    print("SGD losses:", " ".join("%.4f" % v for v in losses))
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(np.isfinite(losses))
