"""A small YOLOv3-tiny-style network (two heads, six anchors) and its decode + NMS.

The layout is yolov3-tiny's: a stride-32 head and a stride-16 head that also sees the
upsampled stride-32 features. Heads are PyTorch NCHW, [B, 3*(5+C), H, W], with channel
`a*(5+C) + k` for anchor a (k: tx, ty, tw, th, objectness, classes): exactly keras-yolo3's
NHWC channel order once permuted, which is what RemoteYoloLoss(layout="NCHW") sends.

Anchors follow keras-yolo3's tiny masks [[3, 4, 5], [1, 2, 3]]: head 0 (coarse) uses
anchors 3..5, head 1 uses 1..3, and anchor 0 is never used (a box whose best anchor is 0
is dropped by keras's preprocess_true_boxes), so anchor 0 is set below any box size.
"""

import torch
import torch.nn as nn
import torchvision

TINY_MASK = [[3, 4, 5], [1, 2, 3]]
# (w, h) pixels for 128 x 128 inputs with shapes 12..48 px; anchor 0 is never matched.
ANCHORS = ((4, 4), (14, 14), (20, 20), (28, 28), (36, 36), (46, 46))


def _conv(cin, cout, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class TinyYolo(nn.Module):
    """forward(x [B, 3, S, S] in 0..1) -> [head0 [B, 3(5+C), S/32, S/32],
    head1 [B, 3(5+C), S/16, S/16]]."""

    def __init__(self, num_classes, width=16):
        super().__init__()
        w = width
        ch = 3 * (5 + num_classes)
        self.num_classes = num_classes
        self.to16 = nn.Sequential(_conv(3, w), nn.MaxPool2d(2), _conv(w, 2 * w), nn.MaxPool2d(2),
                                  _conv(2 * w, 4 * w), nn.MaxPool2d(2), _conv(4 * w, 8 * w),
                                  nn.MaxPool2d(2), _conv(8 * w, 16 * w))
        self.to32 = nn.Sequential(nn.MaxPool2d(2), _conv(16 * w, 32 * w),
                                  _conv(32 * w, 16 * w, 1))
        self.head0 = nn.Sequential(_conv(16 * w, 32 * w), nn.Conv2d(32 * w, ch, 1))
        self.lateral = nn.Sequential(_conv(16 * w, 8 * w, 1), nn.Upsample(scale_factor=2))
        self.head1 = nn.Sequential(_conv(24 * w, 16 * w), nn.Conv2d(16 * w, ch, 1))
        for head in (self.head0, self.head1):
            # Priors (as yolov5 does): objectness starts near 1%, classes near 1/C, so the
            # first steps are not spent unlearning a 50% objectness on every anchor.
            b = head[-1].bias.detach().view(3, 5 + num_classes)
            b[:, 4] = -4.5
            b[:, 5:] = -1.0

    def forward(self, x):
        f16 = self.to16(x)
        f32 = self.to32(f16)
        return [self.head0(f32), self.head1(torch.cat([self.lateral(f32), f16], 1))]


def decode(heads, anchors=ANCHORS, input_size=None):
    """NCHW heads -> per image (boxes [n, 4] x_min, y_min, x_max, y_max pixels,
    scores [n, C] = objectness * class probability), as keras-yolo3's yolo_eval."""
    B = heads[0].shape[0]
    input_size = input_size or 32 * heads[0].shape[2]
    anchors = torch.tensor(anchors, dtype=torch.float32)
    all_boxes, all_scores = [], []
    for l, h in enumerate(heads):
        h = h.detach().float()
        _, c, H, W = h.shape
        p = h.view(B, 3, c // 3, H, W).permute(0, 3, 4, 1, 2)       # B, H, W, 3, 5+C
        gy, gx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        grid = torch.stack([gx, gy], -1).view(1, H, W, 1, 2).float()
        xy = (torch.sigmoid(p[..., 0:2]) + grid) / torch.tensor([W, H]) * input_size
        wh = torch.exp(p[..., 2:4].clamp(max=10.0)) * anchors[TINY_MASK[l]].view(1, 1, 1, 3, 2)
        box = torch.cat([xy - wh / 2, xy + wh / 2], -1)
        score = torch.sigmoid(p[..., 4:5]) * torch.sigmoid(p[..., 5:])
        all_boxes.append(box.reshape(B, -1, 4))
        all_scores.append(score.reshape(B, -1, score.shape[-1]))
    return torch.cat(all_boxes, 1), torch.cat(all_scores, 1)


def detect(heads, score_thresh=0.001, iou_thresh=0.45, max_det=100):
    """NCHW heads -> per image a tuple (boxes [n, 4], scores [n], classes [n]): every
    (anchor, class) pair above score_thresh, then class-wise NMS (torchvision)."""
    boxes, scores = decode(heads)
    out = []
    for b in range(boxes.shape[0]):
        idx, cls = (scores[b] > score_thresh).nonzero(as_tuple=True)
        bx, sc = boxes[b][idx], scores[b][idx, cls]
        keep = torchvision.ops.batched_nms(bx, sc, cls, iou_thresh)[:max_det]
        out.append((bx[keep], sc[keep], cls[keep]))
    return out
