/* yl_decode_image: keras-yolo3's yolo_eval for one image (yldecode.h says what and why). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "yldecode.h"

/* An anchor whose objectness reaches the score threshold: its corrected box (x_min, y_min,
 * x_max, y_max in pixels), objectness, and where its row starts in its output. */
typedef struct {
    double box[4];
    double conf;
    double min_logit; /* class logits below it cannot score thresh (see class_floor) */
    int64_t row;   /* flat element index of channel 0 in p->output[layer] */
    int64_t anchor;
    int32_t layer;
    int32_t pad_;
} live_anchor;

/* One class's candidate: its score and its live anchor (the keras concatenation order). */
typedef struct {
    double score;
    int64_t live;
} candidate;

void yl_decode_config_default(yl_decode_config *dc) {
    dc->score_threshold = 0.6;
    dc->iou_threshold = 0.5;
    dc->max_boxes = 20;
    dc->image_h = 0;
    dc->image_w = 0;
}

int yl_decode_check(const yl_problem *p, const yl_decode_config *dc, yl_error *err) {
    if (p->cfg.definition != YL_DEF_KERAS)
        return yl__fail(err, YL_EINVAL, "decode", -1, -1,
                        "decode is keras-yolo3's yolo_eval; definition '%s' has none",
                        yl_definition_name(p->cfg.definition));
    if (p->compact)
        return yl__fail(err, YL_EINVAL, "decode", -1, -1,
                        "decode needs dense outputs (a compact problem does not carry every "
                        "anchor's class logits)");
    if (!isfinite(dc->score_threshold))
        return yl__fail(err, YL_EINVAL, "decode", -1, -1, "score_threshold is %s",
                        yl__nonfinite_name(dc->score_threshold));
    if (!(dc->iou_threshold >= 0 && dc->iou_threshold <= 1))
        return yl__fail(err, YL_EINVAL, "decode", -1, -1,
                        "iou_threshold %.17g is not in [0, 1]", dc->iou_threshold);
    if (dc->max_boxes < 0)
        return yl__fail(err, YL_EINVAL, "decode", -1, -1, "max_boxes %lld is negative",
                        (long long)dc->max_boxes);
    int none = dc->image_h == 0 && dc->image_w == 0;
    int both = isfinite(dc->image_h) && isfinite(dc->image_w) && dc->image_h > 0 &&
               dc->image_w > 0;
    if (!none && !both)
        return yl__fail(err, YL_EINVAL, "decode", -1, -1,
                        "image size %.17g x %.17g: both must be finite and > 0 (or both 0 for "
                        "the input size)",
                        dc->image_h, dc->image_w);
    return YL_OK;
}

static int64_t anchors_per_image(const yl_problem *p) {
    int64_t n = 0;
    for (int l = 0; l < p->num_layers; l++)
        n += p->anchors[l];
    return n;
}

size_t yl_decode_scratch_size(const yl_problem *p) {
    return (size_t)anchors_per_image(p) * (sizeof(live_anchor) + sizeof(candidate));
}

int64_t yl_decode_max_detections(const yl_problem *p, const yl_decode_config *dc) {
    int64_t a = anchors_per_image(p);
    return (int64_t)p->num_classes * (dc->max_boxes < a ? dc->max_boxes : a);
}

/* yolo_correct_boxes's constants for one axis: offset and scale of the letterbox. */
typedef struct {
    double offset[2], scale[2], image[2]; /* [0] y, [1] x, as keras orders them */
} letterbox;

static letterbox letterbox_of(const yl_problem *p, const yl_decode_config *dc) {
    double input[2] = {p->input_h, p->input_w};
    double image[2] = {dc->image_h, dc->image_w};
    if (image[0] == 0) {
        image[0] = input[0];
        image[1] = input[1];
    }
    double r0 = input[0] / image[0], r1 = input[1] / image[1];
    double m = r0 < r1 ? r0 : r1; /* K.min(input_shape / image_shape) */
    letterbox lb;
    for (int a = 0; a < 2; a++) {
        double new_shape = nearbyint(image[a] * m); /* K.round: half to even */
        lb.offset[a] = (input[a] - new_shape) / 2. / input[a];
        lb.scale[a] = input[a] / new_shape;
        lb.image[a] = image[a];
    }
    return lb;
}

/* yolo_correct_boxes for one normalised centre/size box (x, y, w, h). */
static void correct_box(const letterbox *lb, const double xywh[4], double out[4]) {
    double yx[2] = {xywh[1], xywh[0]}, hw[2] = {xywh[3], xywh[2]}, mins[2], maxes[2];
    for (int a = 0; a < 2; a++) {
        yx[a] = (yx[a] - lb->offset[a]) * lb->scale[a];
        hw[a] *= lb->scale[a];
        mins[a] = (yx[a] - hw[a] / 2.) * lb->image[a];
        maxes[a] = (yx[a] + hw[a] / 2.) * lb->image[a];
    }
    out[0] = mins[1];
    out[1] = mins[0];
    out[2] = maxes[1];
    out[3] = maxes[0];
}

/* tensorflow's NMS IoU (non_max_suppression_op.cc), boxes x_min, y_min, x_max, y_max. */
static double nms_iou(const double *a, const double *b) {
    double area_a = (a[3] - a[1]) * (a[2] - a[0]);
    double area_b = (b[3] - b[1]) * (b[2] - b[0]);
    if (area_a <= 0 || area_b <= 0)
        return 0.0;
    double iy = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    double ix = fmin(a[2], b[2]) - fmax(a[0], b[0]);
    double inter = (iy > 0 ? iy : 0.0) * (ix > 0 ? ix : 0.0);
    return inter / (area_a + area_b - inter);
}

/* a comes first: the higher score, or at equal scores the lower index (a total order). */
static int before(const candidate *a, const candidate *b) {
    return a->score > b->score || (a->score == b->score && a->live < b->live);
}

static void sift_down(candidate *h, int64_t n, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && before(&h[l], &h[top]))
            top = l;
        if (r < n && before(&h[r], &h[top]))
            top = r;
        if (top == i)
            return;
        candidate t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

/* A heap of the n candidates, first in order at h[0] (tensorflow's NMS keeps a priority
 * queue too): NMS stops after max_boxes kept, so only those popped are ever ordered. */
static void heapify(candidate *h, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--)
        sift_down(h, n, i);
}

static candidate pop(candidate *h, int64_t *n) {
    candidate top = h[0];
    h[0] = h[--*n];
    sift_down(h, *n, 0);
    return top;
}

/* A class logit below which conf * sigmoid(logit) < thresh for certain, so that most class
 * logits are compared, not put through exp: the logit of thresh / conf, less a margin of
 * 1e-6 (1 + |logit|), far wider than the rounding of the score (a few ulps: the margin moves
 * the score by at least about conf * r (1 - r) * 1e-6 relative, r = thresh / conf, against
 * 1e-16), so every logit the exact test could keep still reaches it. No floor (-inf) where
 * r is too close to 1 (or above it, or thresh <= 0) for that argument. */
static double class_floor(double thresh, double conf) {
    double r = thresh / conf;
    if (!(r > 0) || !(r < 1 - 1e-6))
        return -INFINITY;
    double x = log(r / (1 - r));
    return x - 1e-6 * (1 + fabs(x));
}

/* The anchors of image b on layer l whose objectness reaches thresh, appended to live. */
static int live_anchors(const yl_problem *p, int64_t b, int l, const letterbox *lb,
                        double thresh, live_anchor *live, int64_t *n_live, yl_error *err) {
    const yl_tensor *t = &p->output[l];
    const int64_t ch = 5 + p->num_classes, H = p->grid_h[l], W = p->grid_w[l];
    const int64_t first = b * p->layer_elems[l];
    static const char *const names[YL_MAX_LAYERS] = {"output_0", "output_1", "output_2"};
    const char *name = names[l];
    for (int64_t a = 0; a < p->anchors[l]; a++) {
        int64_t row = first + a * ch;
        double to = yl__load(t->data, t->dtype, row + 4);
        if (!isfinite(to))
            return yl__fail_nonfinite(err, name, t, b, row + 4);
        double conf = yl__sigmoid(to);
        if (!(conf >= thresh))
            continue;
        int64_t bad = yl__find_nonfinite(t->data, t->dtype, row, ch);
        if (bad >= 0)
            return yl__fail_nonfinite(err, name, t, b, row + bad);
        int k = (int)(a % YL_NUM_ANCHORS_PER_LAYER);
        int64_t cell = a / YL_NUM_ANCHORS_PER_LAYER, i = cell % W, j = cell / W;
        double tv[4], xywh[4];
        for (int v = 0; v < 4; v++)
            tv[v] = yl__load(t->data, t->dtype, row + v);
        int n = p->mask[l][k];
        yl__head_box(yl__sigmoid(tv[0]), yl__sigmoid(tv[1]), exp(tv[2]), exp(tv[3]), (double)i,
                     (double)j, (double)W, (double)H, p->cfg.anchors[2 * n],
                     p->cfg.anchors[2 * n + 1], p->input_w, p->input_h, xywh);
        live_anchor *la = &live[(*n_live)++];
        correct_box(lb, xywh, la->box);
        la->conf = conf;
        la->min_logit = class_floor(thresh, conf);
        la->row = row;
        la->anchor = a;
        la->layer = l;
        la->pad_ = 0;
    }
    return YL_OK;
}

int yl_decode_image(const yl_problem *p, int64_t b, const yl_decode_config *dc, void *scratch,
                    yl_detection *out, int64_t *n, yl_error *err) {
    *n = 0;
    if (b < 0 || b >= p->batch)
        return yl__fail(err, YL_EINVAL, "decode", b, -1, "image %lld is not in [0, %lld)",
                        (long long)b, (long long)p->batch);
    live_anchor *live = scratch;
    candidate *cand = (candidate *)(live + anchors_per_image(p));
    const letterbox lb = letterbox_of(p, dc);
    const double thresh = dc->score_threshold;
    int64_t n_live = 0;
    for (int l = 0; l < p->num_layers; l++) {
        int rc = live_anchors(p, b, l, &lb, thresh, live, &n_live, err);
        if (rc != YL_OK)
            return rc;
    }
    int64_t kept = 0;
    for (int c = 0; c < p->num_classes; c++) {
        int64_t n_cand = 0;
        for (int64_t r = 0; r < n_live; r++) {
            const yl_tensor *t = &p->output[live[r].layer];
            double x = yl__load(t->data, t->dtype, live[r].row + 5 + c);
            if (x < live[r].min_logit)
                continue; /* score < thresh for certain (class_floor) */
            double prob = yl__sigmoid(x);
            double score = live[r].conf * prob;
            if (score >= thresh)
                cand[n_cand++] = (candidate){score, r};
        }
        heapify(cand, n_cand);
        const int64_t class_first = kept;
        while (n_cand > 0 && kept - class_first < dc->max_boxes) {
            const candidate next = pop(cand, &n_cand);
            const live_anchor *la = &live[next.live];
            int suppressed = 0;
            for (int64_t s = kept - 1; s >= class_first && !suppressed; s--)
                suppressed = nms_iou(la->box, out[s].box) > dc->iou_threshold;
            if (suppressed)
                continue;
            yl_detection *d = &out[kept++];
            memcpy(d->box, la->box, sizeof d->box);
            d->score = next.score;
            d->cls = c;
            d->layer = la->layer;
            d->anchor = la->anchor;
        }
    }
    *n = kept;
    return YL_OK;
}
