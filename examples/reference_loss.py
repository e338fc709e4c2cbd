"""An in-process YOLOv3 loss with RemoteYoloLoss's interface, computed by the project's
independent float64 numpy reference (tests/reference/yolo_reference.py), so that the
training example can run with either and show that the service is a drop-in.

ReferenceYoloLoss(anchors, layout="NCHW")(heads, boxes=boxes) -> 0-dim float32 tensor;
backward chains the reference's closed-form float64 gradient, cast to each head's dtype.
last_result carries loss, terms and image_terms [B, 4] as RemoteYoloLoss's Result does.
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import yolo_reference  # noqa: E402  (the path above)


class ReferenceResult:
    def __init__(self, d):
        self.loss = d["loss"]
        self.terms = dict(zip(("xy", "wh", "confidence", "class"), d["terms"].tolist()))
        self.image_terms = d["image_terms"].astype(np.float32)
        self.layer_terms = d["layer_terms"].astype(np.float32)
        self.grads = [g.astype(np.float32) for g in d["grads"]]


class _ReferenceLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, module, boxes, *heads):
        outs = [h.detach().cpu().double().numpy() for h in heads]
        res = ReferenceResult(yolo_reference.evaluate(outs, module.anchors,
                                                      module.ignore_thresh, boxes=boxes))
        module.last_result = res
        ctx.grads = [torch.from_numpy(g).to(device=h.device, dtype=h.dtype)
                     for g, h in zip(res.grads, heads)]
        return torch.tensor(res.loss, dtype=torch.float32, device=heads[0].device)

    @staticmethod
    def backward(ctx, grad_loss):
        return (None, None) + tuple(g * grad_loss.to(g.dtype) for g in ctx.grads)


class ReferenceYoloLoss(torch.nn.Module):
    def __init__(self, anchors, layout="NCHW", ignore_thresh=0.5):
        super().__init__()
        self.anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
        self.layout = layout
        self.ignore_thresh = ignore_thresh
        self.last_result = None

    def forward(self, outputs, boxes):
        heads = list(outputs)
        if self.layout == "NCHW":
            heads = [h.permute(0, 2, 3, 1) for h in heads]
        if isinstance(boxes, torch.Tensor):
            boxes = boxes.detach().cpu().numpy()
        return _ReferenceLoss.apply(self, np.asarray(boxes, dtype=np.float32), *heads)
