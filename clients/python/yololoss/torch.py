"""yololoss.torch: the YOLOv3 loss of yololossd as a PyTorch module, backward included.

    from yololoss import YoloLossClient
    from yololoss.torch import RemoteYoloLoss

    criterion = RemoteYoloLoss(YoloLossClient("http://127.0.0.1:8000", model="yolov3"),
                               layout="NCHW")          # the heads of a PyTorch model
    loss = criterion([head13, head26, head52], boxes=boxes)   # a 0-dim tensor
    loss.backward()                                    # the server's gradient, chained

forward sends the detached head outputs (any device; float16, bfloat16, float32 or float64,
each sent as it is) to the server and asks for the gradient only when one of them requires
grad; backward hands that gradient back to autograd on each head's device and in its
dtype, times the incoming gradient. One request per forward, none in backward.

Requires torch; importing this module without it raises an ImportError that says so. The
rest of the package never imports torch.
"""

try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("yololoss.torch needs PyTorch (pip install torch, or Debian's "
                      "python3-torch); the rest of yololoss works without it") from e

import numpy as np

from ._tensors import BF16

__all__ = ["RemoteYoloLoss", "remote_yolo_loss"]


def _to_wire(t, what):
    """A tensor (or array) -> what YoloLossClient.compute accepts, without copies where
    the tensor is already a contiguous CPU tensor."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if t.dtype == torch.bfloat16:
        return BF16(t.contiguous().cpu().view(torch.int16).numpy().view(np.uint16))
    if not t.is_floating_point():
        if what == "output":
            raise TypeError("head outputs must be floating point, not %s" % t.dtype)
        t = t.to(torch.float64)
    return t.contiguous().cpu().numpy()


class _RemoteLoss(torch.autograd.Function):
    """apply(module, truth, step, *heads) -> the loss as a 0-dim tensor."""

    @staticmethod
    def forward(ctx, module, truth, step, *heads):
        want = any(ctx.needs_input_grad[3:])
        res = module._compute([_to_wire(h, "output") for h in heads], truth, want, step)
        module.last_result = res
        if want:
            ctx.grads = [torch.from_numpy(np.asarray(g)).to(device=h.device, dtype=h.dtype)
                         for g, h in zip(res.grads, heads)]
        dtype = torch.float64 if heads[0].dtype == torch.float64 else torch.float32
        return torch.tensor(res.loss, dtype=dtype, device=heads[0].device)

    @staticmethod
    def backward(ctx, grad_loss):
        grads = getattr(ctx, "grads", None)
        out = [None, None, None]
        for i, need in enumerate(ctx.needs_input_grad[3:]):
            if need and grads is not None:
                g = grads[i]
                out.append(g * grad_loss.to(device=g.device, dtype=g.dtype))
            else:
                out.append(None)
        return tuple(out)


class RemoteYoloLoss(torch.nn.Module):
    """The keras-yolo3 YOLOv3 loss, computed by yololossd.

    client: a yololoss.YoloLossClient (it names the model: yolov3 or yolov3-tiny).
    layout: "NHWC" (default; keras's [B, H, W, 3*(5+C)] heads) or "NCHW" (PyTorch conv
      heads [B, 3*(5+C), H, W], permuted to NHWC on the way; the gradient follows).
    ignore_thresh, anchors: override the model's. run: a label for the server's
      monitoring; with run set, step counts the forward calls unless given to forward.
    binary, compress: as for YoloLossClient.compute.

    forward(outputs, boxes=None, y_true=None, step=None) -> 0-dim tensor (float32, or
    float64 for float64 heads) on the device of the first head. Exactly one of boxes
    [B, T, 5] (pixels) or y_true (list of dense tensors), as tensors or numpy arrays.
    last_result: the full yololoss.Result of the latest forward (terms, stats, ...).
    """

    def __init__(self, client, layout="NHWC", ignore_thresh=None, anchors=None, run=None,
                 binary=True, compress=None):
        super().__init__()
        if layout not in ("NHWC", "NCHW"):
            raise ValueError("layout must be 'NHWC' or 'NCHW'")
        self.client = client
        self.layout = layout
        self.ignore_thresh = ignore_thresh
        self.anchors = anchors
        self.run = run
        self.binary = binary
        self.compress = compress
        self.step = 0
        self.last_result = None

    def _compute(self, heads, truth, grads, step):
        boxes, y_true = truth
        return self.client.compute(heads, boxes=boxes, y_true=y_true, grads=grads,
                                   ignore_thresh=self.ignore_thresh, anchors=self.anchors,
                                   run=self.run, step=step, binary=self.binary,
                                   compress=self.compress)

    def forward(self, outputs, boxes=None, y_true=None, step=None):
        heads = list(outputs)
        if not heads or not all(isinstance(h, torch.Tensor) for h in heads):
            raise TypeError("outputs must be a non-empty list of tensors")
        if self.layout == "NCHW":
            heads = [h.permute(0, 2, 3, 1) for h in heads]
        if boxes is not None:
            boxes = _to_wire(boxes, "boxes")
        if y_true is not None:
            y_true = [_to_wire(y, "y_true") for y in y_true]
        if step is None and self.run is not None:
            step = self.step
        self.step = (step if step is not None else self.step) + 1
        return _RemoteLoss.apply(self, (boxes, y_true), step, *heads)


def remote_yolo_loss(client, outputs, boxes=None, y_true=None, **kw):
    """Functional form: RemoteYoloLoss(client, **kw)(outputs, boxes, y_true)."""
    return RemoteYoloLoss(client, **kw)(outputs, boxes=boxes, y_true=y_true)
