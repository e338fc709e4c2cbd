"""A synthetic detection data set: coloured shapes on noise, boxes known exactly.

Every image is made from a seed alone (numpy's default_rng), so the same arguments give the
same pixels and boxes on every machine. Classes are the shape, never the colour, so that a
network has to look at outlines: 0 rectangle, 1 ellipse, 2 triangle (pointing up).

Boxes are keras-yolo3's: pixels `x_min, y_min, x_max, y_max, class`, x_max exclusive (a
shape covering columns 10..29 has x_min 10, x_max 30), so `x_max - x_min` is the width.
"""

import numpy as np

CLASSES = ("rectangle", "ellipse", "triangle")


def _shape_mask(kind, w, h):
    """Boolean (h, w) mask of the shape filling a w x h box, sampled at pixel centres."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    if kind == 0:
        return np.ones((h, w), dtype=bool)
    if kind == 1:
        return ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2 <= 1.0
    # Triangle with apex (w/2, 0) and base on y = h: inside both slanted edges.
    return (y >= h * np.abs(2 * x / w - 1))


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def make_image(rng, size, max_objects=3, min_side=12, max_side=None):
    """One image: uint8 (3, size, size) and float32 boxes (n, 5)."""
    max_side = max_side or size * 3 // 8
    base = rng.uniform(0.0, 0.35, size=3)
    img = base[:, None, None] + rng.uniform(0.0, 0.3, size=(3, size, size))
    boxes = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):      # a few tries to keep shapes mostly apart
            w, h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
            x0 = int(rng.integers(0, size - w + 1))
            y0 = int(rng.integers(0, size - h + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, b) < 0.1 for b in boxes):
                break
        else:
            continue
        kind = int(rng.integers(0, len(CLASSES)))
        colour = rng.uniform(0.45, 1.0, size=3)
        colour[rng.integers(0, 3)] *= 0.3           # saturated: one channel dark
        mask = _shape_mask(kind, w, h)
        region = img[:, y0:y0 + h, x0:x0 + w]
        shade = colour[:, None, None] + rng.uniform(-0.08, 0.08, size=region.shape)
        region[:, mask] = shade[:, mask]
        boxes.append(box + (kind,))
    img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return img, np.array(boxes, dtype=np.float32).reshape(-1, 5)


def make_dataset(n, size=128, seed=0, max_objects=3):
    """n images: uint8 (n, 3, size, size) and a list of n float32 (k, 5) box arrays."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    boxes = []
    for i in range(n):
        images[i], b = make_image(rng, size, max_objects)
        boxes.append(b)
    return images, boxes


def pad_boxes(box_list, max_boxes=None):
    """List of (k, 5) -> float32 (B, T, 5), padding rows all zero (width 0: skipped)."""
    t = max_boxes or max(1, max(len(b) for b in box_list))
    out = np.zeros((len(box_list), t, 5), dtype=np.float32)
    for i, b in enumerate(box_list):
        out[i, :len(b)] = b[:t]
    return out


def augment(images, box_list, rng):
    """Training-time augmentation that keeps boxes exact: per image one of the 8 flips and
    quarter turns of the square, and a random order of the colour channels (classes are
    shapes, so both keep every label true). Returns new arrays; the inputs are untouched."""
    n, _, size, _ = images.shape
    out = np.empty_like(images)
    boxes = []
    for i in range(n):
        img, b = images[i], box_list[i].copy()
        if rng.integers(2):                       # mirror left-right
            img = img[:, :, ::-1]
            b[:, [0, 2]] = size - b[:, [2, 0]]
        for _ in range(int(rng.integers(4))):     # quarter turns, counter-clockwise
            img = np.rot90(img, 1, axes=(1, 2))   # new (x, y) = (y, size - x)
            b = np.stack([b[:, 1], size - b[:, 2], b[:, 3], size - b[:, 0], b[:, 4]], 1)
        out[i] = img[rng.permutation(3)]
        boxes.append(b.astype(np.float32))
    return out, boxes
