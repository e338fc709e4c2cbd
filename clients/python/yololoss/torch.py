"""yololoss.torch: the YOLOv3 loss of yololossd as a PyTorch module, backward included.

    from yololoss import YoloLossClient
    from yololoss.torch import RemoteYoloLoss

    criterion = RemoteYoloLoss(YoloLossClient("http://127.0.0.1:8000", model="yolov3"),
                               layout="NCHW")          # the heads of a PyTorch model
    loss = criterion([head13, head26, head52], boxes=boxes)   # a 0-dim tensor
    loss.backward()                                    # the server's gradient, chained

forward sends the detached head outputs (any device; float16, bfloat16, float32 or float64,
each sent as it is) to the server and asks for the gradient only when one of them requires
grad. The gradient is kept as the server sent it (float32, or float64 with
grad_datatype="FP64") until backward has multiplied it by the incoming gradient (a
GradScaler's 65536 included); only that product is cast to the head's dtype, so fp16
heads neither overflow nor lose small gradients. One request per forward, none in backward.

Requires torch; importing this module without it raises an ImportError that says so. The
rest of the package never imports torch.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError("yololoss.torch needs PyTorch (pip install torch, or Debian's "
                      "python3-torch); the rest of yololoss works without it") from e

import numpy as np

from ._client import YoloLossClient
from ._compact import head5, rows_for_boxes, rows_for_y_true
from ._errors import YoloLossHTTPError
from ._infer import CompactHead, InferCall, _compactable, missing_row
from ._result import Result
from ._tensors import BF16
from .layouts import boxes_from_ultralytics, heads_from_ultralytics, input_size_of

__all__ = ["RemoteYoloLoss", "remote_yolo_loss"]

LAYOUTS = ("NHWC", "NCHW", "ultralytics")
REDUCTIONS = ("mean", "sum", "none")
DISTRIBUTED_LOGGING = ("rank0", "per_rank")


def _to_wire(t: Any, what: str) -> Any:
    """A tensor (or array) -> what YoloLossClient.compute accepts, without copies where
    the tensor is already a contiguous CPU tensor."""
    if not isinstance(t, torch.Tensor):
        return t
    t = t.detach()
    if what == "index":
        return t.cpu().numpy()
    if t.dtype == torch.bfloat16:
        return BF16(t.contiguous().cpu().view(torch.int16).numpy().view(np.uint16))
    if not t.is_floating_point():
        if what == "output":
            raise TypeError("head outputs must be floating point, not %s" % t.dtype)
        t = t.to(torch.float64)
    return t.contiguous().cpu().numpy()


def _rank() -> Optional[int]:
    """This process's rank in the default torch.distributed group, or None outside one."""
    dist = getattr(torch, "distributed", None)
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return None


class _RemoteLoss(torch.autograd.Function):
    """apply(module, truth, log, *heads) -> the loss (0-dim, or [B] for reduction none)."""

    @staticmethod
    def forward(ctx: Any, module: "RemoteYoloLoss", truth: Tuple[Any, Any],
                log: Tuple[Optional[str], Optional[int], Any],
                *heads: torch.Tensor) -> torch.Tensor:
        want = any(ctx.needs_input_grad[3:])
        res, where = module._compute(list(heads), truth, want, log)
        module.last_result = res
        B = int(heads[0].shape[0])
        ctx.batch = B
        ctx.reduction = module.reduction
        if want:
            # float32 (or float64) as sent: cast to the head's dtype only in backward,
            # after the multiplication by the incoming gradient
            ctx.dtypes = [h.dtype for h in heads]
            ctx.shapes = [tuple(h.shape) for h in heads]
            if where is None:
                assert res.grads is not None
                ctx.grads = [torch.from_numpy(np.asarray(g)).to(device=h.device)
                             for g, h in zip(res.grads, heads)]
            else:       # compact: the objectness gradient and the rows, on the device
                ctx.compact = [
                    (torch.from_numpy(np.asarray(res.outputs["grad_%d_obj" % l])).to(h.device),
                     torch.from_numpy(np.asarray(res.outputs["grad_%d_rows" % l])).to(h.device),
                     at) for l, (h, at) in enumerate(zip(heads, where))]
        dtype = torch.float64 if heads[0].dtype == torch.float64 else torch.float32
        if module.reduction == "none":
            per_image = np.asarray(res.image_terms, dtype=np.float64).sum(axis=1)
            return torch.tensor(per_image, dtype=dtype, device=heads[0].device)
        value = res.loss * B if module.reduction == "sum" else res.loss
        return torch.tensor(value, dtype=dtype, device=heads[0].device)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        grads = getattr(ctx, "grads", None)
        compact = getattr(ctx, "compact", None)
        out: List[Optional[torch.Tensor]] = [None, None, None]
        for i, need in enumerate(ctx.needs_input_grad[3:]):
            if not need or (grads is None and compact is None):
                out.append(None)
                continue
            if compact is not None:
                # the dense gradient scattered on the device: zeros but the objectness
                # channel and the sent rows, the values the dense answer carries
                obj, rows, at = compact[i]
                B, H, W, K = head5(ctx.shapes[i])
                g = torch.zeros((B, H, W, 3, K), dtype=obj.dtype, device=obj.device)
                g[..., 4] = obj
                g[at] = rows
                g = g.reshape(ctx.shapes[i])
            else:
                assert grads is not None
                g = grads[i]
            s = grad_loss.to(device=g.device, dtype=g.dtype)
            if ctx.reduction == "mean":
                prod = g * s
            elif ctx.reduction == "sum":
                prod = g * (s * ctx.batch)
            else:       # per image b: d loss_b / d out = B x the batch gradient's rows of b
                prod = g * (s * ctx.batch).reshape((-1,) + (1,) * (g.dim() - 1))
            out.append(prod.to(ctx.dtypes[i]))
        return tuple(out)


class RemoteYoloLoss(torch.nn.Module):
    """The keras-yolo3 YOLOv3 loss, computed by yololossd.

    client: a yololoss.YoloLossClient (it names the model: yolov3 or yolov3-tiny).
    layout: "NHWC" (default; keras's [B, H, W, 3*(5+C)] or [B, H, W, 3, 5+C] heads,
      coarsest grid first), "NCHW" (PyTorch conv heads [B, 3*(5+C), H, W], coarsest
      first), or "ultralytics" ([B, 3, H, W, 5+C] heads, FINEST grid first, as yolov5 and
      ultralytics lay out YOLOv3; see yololoss.layouts). The permutes are part of the graph.
    reduction: "mean" (default: keras's loss, the sum over the batch divided by B), "sum"
      (B x that), or "none" (the per-image losses [B]; their gradients are exact: image b's
      rows of the batch gradient times B).
    ignore_thresh, anchors: override the model's. grad_datatype: "FP32" (default) or
      "FP64" (the server computes and sends the gradient in double).
    run: a label for the server's monitoring; each logged forward is the next step unless
      forward is given step=. Logged are forwards with autograd enabled only: under
      torch.no_grad() / inference_mode (validation) nothing is logged and the step does not
      advance, unless log_no_grad=True. Under torch.distributed, distributed_logging
      "rank0" (default) logs rank 0's forwards only (every rank still counts steps);
      "per_rank" logs each rank as run "<run>.rank<r>".
    binary, compress: as for YoloLossClient.compute.
    compact: None (default: the client's choice, by default compact tensors when the
      server offers them), True or False. Compact: each head's 5 box channels and the rows
      of the anchors that may hold a truth are sliced and gathered on the head's device
      before the copy to the host, and the gradient is scattered back there; the client's
      shm setting decides whether they travel through shared memory. Same bits either way.

    forward(outputs, boxes=None, y_true=None, step=None, targets=None, image_ids=None) ->
    the loss on the
    device of the first head: float32 (float64 for float64 heads), 0-dim, or [B] for
    reduction="none". Exactly one of boxes [B, T, 5] (pixels), y_true (list of dense
    tensors) or, with layout="ultralytics", targets [N, 6] (image, class, x, y, w, h
    normalised), as tensors or numpy arrays. image_ids: [B] dataset indices of the
    batch's images, sent with logged forwards (the server ranks images by loss).
    log_scalars(lr=..., val_map=...) and set_config({...}) log next to the loss, with the
    same rules (run set, rank 0 or per rank).
    last_result: the full yololoss.Result of the latest forward (terms, stats, ...).

    The module pickles and deep-copies (model EMA, torch.save(model), mp.spawn): the copy
    has the same settings and opens its own connection when first used.
    """

    def __init__(self, client: YoloLossClient, layout: str = "NHWC",
                 ignore_thresh: Optional[float] = None,
                 anchors: Union[str, Sequence[float], np.ndarray, None] = None,
                 run: Optional[str] = None, binary: bool = True,
                 compress: Optional[str] = None, reduction: str = "mean",
                 grad_datatype: Optional[str] = None, log_no_grad: bool = False,
                 distributed_logging: str = "rank0", compact: Optional[bool] = None) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError("layout must be one of %s" % ", ".join(map(repr, LAYOUTS)))
        if reduction not in REDUCTIONS:
            raise ValueError("reduction must be one of %s" % ", ".join(map(repr, REDUCTIONS)))
        if distributed_logging not in DISTRIBUTED_LOGGING:
            raise ValueError("distributed_logging must be 'rank0' or 'per_rank'")
        if grad_datatype not in (None, "FP32", "FP64"):
            raise ValueError("grad_datatype must be 'FP32' or 'FP64'")
        self.client = client
        self.layout = layout
        self.reduction = reduction
        self.ignore_thresh = ignore_thresh
        self.anchors = anchors
        self.run = run
        self.binary = binary
        self.compress = compress
        self.grad_datatype = grad_datatype
        self.log_no_grad = log_no_grad
        self.distributed_logging = distributed_logging
        self.compact = compact
        self.step = 0
        self.last_result: Optional[Result] = None

    def _use_compact(self) -> bool:
        use = self.compact if self.compact is not None else self.client.compact
        if use is None:
            use = "yololoss_compact" in self.client.server_extensions()
        return bool(use)

    def _compute(self, heads: List[torch.Tensor], truth: Tuple[Any, Any], grads: bool,
                 log: Tuple[Optional[str], Optional[int], Any]
                 ) -> Tuple[Result, Optional[List[Tuple[torch.Tensor, ...]]]]:
        """(Result, per-layer device index tuples when compact, else None)."""
        boxes, y_true = truth
        run, step, image_ids = log
        kw = dict(boxes=boxes, y_true=y_true, grads=grads, ignore_thresh=self.ignore_thresh,
                  anchors=self.anchors, run=run, step=step, binary=self.binary,
                  compress=self.compress,
                  grad_datatype=self.grad_datatype or self.client.grad_datatype,
                  image_ids=image_ids)
        if _compactable(heads, y_true) and self._use_compact():
            parts, where = self._compact_heads(heads, boxes, y_true)
            try:
                return self.client.send(InferCall(parts, **kw)), where
            except YoloLossHTTPError as e:
                if not missing_row(e):
                    raise
        return self.client.compute([_to_wire(h, "output") for h in heads], compact=False,
                                   **kw), None

    @staticmethod
    def _compact_heads(heads: List[torch.Tensor], boxes: Any, y_true: Any
                       ) -> Tuple[List[CompactHead], List[Tuple[torch.Tensor, ...]]]:
        """Each head's box channels and chosen rows, sliced and gathered on its own device
        before the copy to the host; the rows' (b, j, i, k) index tensors on that device."""
        shapes = [head5(tuple(h.shape)) for h in heads]
        if boxes is not None:
            index = rows_for_boxes(boxes, [sh[1:3] for sh in shapes])
        else:
            index = rows_for_y_true([y.bits if isinstance(y, BF16) else y for y in y_true])
        parts, where = [], []
        for h, (B, H, W, K), idx in zip(heads, shapes, index):
            h5 = h.detach().reshape(B, H, W, 3, K)
            at = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(h.device)
                       for a in np.unravel_index(idx, (B, H, W, 3)))
            box = _to_wire(h5[..., :5], "output")
            rows = _to_wire(h5[at], "output")
            parts.append(CompactHead(box, rows, idx, tuple(h.shape)))
            where.append(at)
        return parts, where

    def _run_name(self) -> Optional[str]:
        """The run this process logs to (None: this rank does not log)."""
        if self.run is None:
            return None
        rank = _rank()
        if rank is None:
            return self.run
        if self.distributed_logging == "per_rank":
            return "%s.rank%d" % (self.run, rank)
        return self.run if rank == 0 else None

    def _log_target(self, step: Optional[int],
                    image_ids: Any) -> Tuple[Optional[str], Optional[int], Any]:
        """(run, step, image_ids) to send with this forward, advancing the step counter,
        or Nones when this forward is not logged."""
        if not (torch.is_grad_enabled() or self.log_no_grad):
            return None, None, None
        if step is None:
            step = self.step
        self.step = int(step) + 1
        run = self._run_name()
        if run is None:
            return None, None, None
        if image_ids is not None:
            image_ids = _to_wire(image_ids, "index")
        return run, step, image_ids

    def log_scalars(self, scalars: Optional[dict] = None, step: Optional[int] = None,
                    **named: float) -> None:
        """Log scalars of your own (learning rate, validation mAP) next to the loss, at
        `step` (default: the step of the last logged forward). Follows the logging rules:
        nothing without run, only rank 0 (or each rank under its name) under DDP."""
        run = self._run_name()
        if run is None:
            return
        values = dict(scalars or {}, **named)
        self.client.log_scalars(run, self.step - 1 if step is None else step, values)

    def set_config(self, config: dict) -> None:
        """Store the run's configuration (hyper-parameters), with the same rules."""
        run = self._run_name()
        if run is not None:
            self.client.set_config(run, config)

    def forward(self, outputs: Sequence[torch.Tensor], boxes: Any = None, y_true: Any = None,
                step: Optional[int] = None, targets: Any = None,
                image_ids: Any = None) -> torch.Tensor:
        heads = list(outputs)
        if not heads or not all(isinstance(h, torch.Tensor) for h in heads):
            raise TypeError("outputs must be a non-empty list of tensors")
        if self.layout == "NCHW":
            heads = [h.permute(0, 2, 3, 1) for h in heads]
        elif self.layout == "ultralytics":
            heads = heads_from_ultralytics(heads)
        if targets is not None:
            if self.layout != "ultralytics":
                raise ValueError("targets [N, 6] go with layout='ultralytics'; give boxes "
                                 "or y_true otherwise")
            if boxes is not None or y_true is not None:
                raise ValueError("give exactly one of boxes, y_true and targets")
            boxes = boxes_from_ultralytics(targets, int(heads[0].shape[0]),
                                           input_size_of(heads))
        if boxes is not None:
            boxes = _to_wire(boxes, "boxes")
        if y_true is not None:
            y_true = [_to_wire(y, "y_true") for y in y_true]
        return _RemoteLoss.apply(self, (boxes, y_true), self._log_target(step, image_ids),
                                 *heads)

    def extra_repr(self) -> str:
        return "client=%r, layout=%r, reduction=%r, run=%r" % (
            self.client, self.layout, self.reduction, self.run)


def remote_yolo_loss(client: YoloLossClient, outputs: Sequence[torch.Tensor], boxes: Any = None,
                     y_true: Any = None, **kw: Any) -> torch.Tensor:
    """Functional form: RemoteYoloLoss(client, **kw)(outputs, boxes, y_true)."""
    return RemoteYoloLoss(client, **kw)(outputs, boxes=boxes, y_true=y_true)
