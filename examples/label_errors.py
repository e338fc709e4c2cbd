"""Label errors on purpose, and finding them again from per-image losses.

corrupt() damages a known share of the training labels (the ground truth the loss sees),
never the pixels: half of the chosen images get every box shifted off its shape, the other
half every class swapped for another. LossLedger keeps every training image's loss, by
image identity, as the loss service returns it per image (Result.image_terms), and ranks
images by how high their loss stays.

Ranking rule (client side; the daemon's GET /v1/runs/{r}/images?order=loss ranks the same
way but divides by the anchors that hold a truth rather than the labelled boxes, see
docs/monitoring.md): an image's score is the mean, over its last K appearances, of its
loss per labelled box divided by the batch's mean loss per box.
- Per box: an image with three boxes has about three times the loss of an image with one,
  labels right or wrong; per box, a wrong box stands out whatever the count.
- Relative to the batch: takes out the fall of the loss over training, so an image seen
  early is not ranked high just for having been seen early.
- The last K appearances (K = 5): late in training the network fits the right labels and
  cannot fit the wrong ones (the training set is augmented, so it cannot learn them by
  heart either), which is when they stand out most.
"""

import numpy as np


def corrupt(box_list, fraction, size, num_classes, seed):
    """Returns (new box list, sorted array of corrupted image indices, kinds dict).
    The input list is not modified."""
    rng = np.random.default_rng(seed)
    n = len(box_list)
    k = int(round(fraction * n))
    chosen = np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, int)
    out = [b.copy() for b in box_list]
    kinds = {}
    for j, i in enumerate(chosen):
        b = out[i]
        if j % 2 == 0:
            # Class swap: every box becomes another class (never its own).
            b[:, 4] = (b[:, 4] + rng.integers(1, num_classes, size=len(b))) % num_classes
            kinds[int(i)] = "class"
        else:
            # Shift: every box moves by 1 to 2 of its own sizes in x and y (direction at
            # random), clamped inside the image; far enough that it lands off the shape.
            for r in b:
                w, h = r[2] - r[0], r[3] - r[1]
                for lo, side in ((0, w), (1, h)):
                    d = side * rng.uniform(1.0, 2.0) * rng.choice((-1.0, 1.0))
                    new_lo = r[lo] + d
                    if new_lo < 0 or new_lo + side > size:
                        new_lo = r[lo] - d          # the other way fits instead
                    new_lo = float(np.clip(np.floor(new_lo), 0, size - side))
                    r[lo], r[lo + 2] = new_lo, new_lo + side
            kinds[int(i)] = "shift"
    return out, chosen, kinds


class LossLedger:
    """Per-image losses of a training run, by image id (client side)."""

    def __init__(self, last_k=5, per_box=True):
        self.last_k = last_k
        self.per_box = per_box     # False: per image (the daemon's per=image)
        self.history = {}          # id -> list of (step, loss, per box / batch's per box)
        self.terms = {}            # id -> list of the four terms (xy, wh, conf, class)

    def add(self, step, image_ids, image_terms, boxes_per_image):
        """image_terms: [B, 4] per-image terms as the loss returns them (not divided by B);
        boxes_per_image: [B] labelled boxes of each image."""
        image_terms = np.asarray(image_terms, dtype=np.float64).reshape(len(image_ids), 4)
        image_losses = image_terms.sum(axis=1)
        per_box = image_losses
        if self.per_box:
            per_box = per_box / np.maximum(1, np.asarray(boxes_per_image, dtype=np.float64))
        mean = float(per_box.mean())
        scale = 1.0 / mean if mean > 0 else 0.0
        for i, v, r, t in zip(image_ids, image_losses, per_box * scale, image_terms):
            self.history.setdefault(int(i), []).append((step, float(v), float(r)))
            self.terms.setdefault(int(i), []).append(t)

    def scores(self):
        """{id: mean relative loss over its last K appearances}."""
        return {i: float(np.mean([r for _, _, r in h[-self.last_k:]]))
                for i, h in self.history.items()}

    def ranking(self):
        """Image ids, highest score first (ties broken by id, for a stable order)."""
        s = self.scores()
        return sorted(s, key=lambda i: (-s[i], i))


def precision_recall_at(ranking, corrupted, k):
    """Precision and recall of the top k of a ranking against the set of corrupted ids."""
    top = set(int(i) for i in ranking[:k])
    bad = set(int(i) for i in corrupted)
    hits = len(top & bad)
    return (hits / k if k else 0.0), (hits / len(bad) if bad else 0.0)
