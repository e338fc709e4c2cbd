/* Ground truth: the truth anchors of one image on one layer, from a box list (keras-yolo3's
 * preprocess_true_boxes, float32 arithmetic and all) or from a dense y_true. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const char *const box_field[5] = {"x_min", "y_min", "x_max", "y_max", "class id"};

/* keras picks the anchor with the best shape-only IoU among ALL anchors (np.argmax: the
 * first maximum wins). Its box area is a float32 product; the rest is float64. */
static int best_anchor(const yl_config *cfg, float w, float h) {
    float box_area = w * h;
    int best = 0;
    double best_iou = -1.0;
    for (int n = 0; n < cfg->num_anchors; n++) {
        double aw = cfg->anchors[2 * n], ah = cfg->anchors[2 * n + 1];
        double inter = fmin((double)w, aw) * fmin((double)h, ah);
        double iou = inter / ((double)box_area + aw * ah - inter);
        if (iou > best_iou) {
            best_iou = iou;
            best = n;
        }
    }
    return best;
}

static int mask_index(const yl_problem *p, int l, int n) {
    for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++)
        if (p->mask[l][k] == n)
            return k;
    return -1;
}

/* Row t of image b: a normalised box, or padding (returns 0 with *is_box = 0). keras turns
 * the rows into float32 first and computes centre and size in float32; so do we. */
static int read_box_row(const yl_problem *p, int64_t b, int64_t t, int *is_box, float xywh[4],
                        float wh_px[2], int *cls, yl_error *err) {
    int64_t T = p->boxes.shape[1];
    int64_t base = (b * T + t) * 5;
    double v[5];
    for (int c = 0; c < 5; c++) {
        v[c] = yl__load(p->boxes.data, p->boxes.dtype, base + c);
        if (!isfinite(v[c]))
            return yl__fail(err, YL_ENONFINITE, "boxes", b, t, "boxes[%lld][%lld]: %s is %s",
                            (long long)b, (long long)t, box_field[c], yl__nonfinite_name(v[c]));
    }
    float x0 = (float)v[0], y0 = (float)v[1], x1 = (float)v[2], y1 = (float)v[3];
    float w = x1 - x0, h = y1 - y0;
    *is_box = w > 0; /* keras's valid_mask tests the width only */
    if (!*is_box)
        return YL_OK;
    if (!(h > 0))
        return yl__fail(err, YL_EBOX, "boxes", b, t,
                        "boxes[%lld][%lld]: height y_max - y_min = %g is not positive "
                        "(y_min %g, y_max %g)",
                        (long long)b, (long long)t, (double)h, v[1], v[3]);
    if (v[4] != floor(v[4]) || v[4] < 0 || v[4] >= p->num_classes)
        return yl__fail(err, YL_ECLASS, "boxes", b, t,
                        "boxes[%lld][%lld]: class id %.17g is not an integer in [0, %d)",
                        (long long)b, (long long)t, v[4], p->num_classes);
    float sx = x0 + x1, sy = y0 + y1;
    float cx = floorf(sx / 2.0f), cy = floorf(sy / 2.0f); /* (min + max) // 2 */
    if (!(cx >= 0 && (double)cx < p->input_w && cy >= 0 && (double)cy < p->input_h))
        return yl__fail(err, YL_EBOX, "boxes", b, t,
                        "boxes[%lld][%lld]: centre (%g, %g) is outside the %gx%g input (w x h)",
                        (long long)b, (long long)t, (double)cx, (double)cy, p->input_w,
                        p->input_h);
    xywh[0] = (float)((double)cx / p->input_w);
    xywh[1] = (float)((double)cy / p->input_h);
    xywh[2] = (float)((double)w / p->input_w);
    xywh[3] = (float)((double)h / p->input_h);
    /* keras takes log(w / anchor * input): a size that overflows float32 or whose
     * normalised value underflows to 0 would make the loss inf */
    if (!(isfinite(xywh[2]) && xywh[2] > 0 && isfinite(xywh[3]) && xywh[3] > 0))
        return yl__fail(err, YL_EBOX, "boxes", b, t,
                        "boxes[%lld][%lld]: size %.9g x %.9g px is not representable: in "
                        "float32 (as keras computes) it normalises to %.9g x %.9g",
                        (long long)b, (long long)t, v[2] - v[0], v[3] - v[1], (double)xywh[2],
                        (double)xywh[3]);
    wh_px[0] = w;
    wh_px[1] = h;
    *cls = (int)v[4];
    return YL_OK;
}

static int by_anchor(const void *a, const void *b) {
    int64_t x = ((const yl__truth *)a)->anchor, y = ((const yl__truth *)b)->anchor;
    return (x > y) - (x < y);
}

/* Padding rows may stand anywhere (keras assumes they come last); each valid row gets its
 * own best anchor. A later row on the same (cell, anchor) overwrites the box and adds its
 * class: the targets become multi-hot, as in keras. */
static int gather_boxes(const yl_problem *p, int64_t b, int l, yl__scratch *s, int64_t *n,
                        yl_error *err) {
    int64_t T = p->boxes.shape[1], W = p->grid_w[l], H = p->grid_h[l];
    int64_t count = 0;
    memset(s->anchor_map, 0xff, (size_t)p->anchors[l] * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        int is_box, cls = 0;
        float xywh[4] = {0}, wh_px[2] = {0};
        int rc = read_box_row(p, b, t, &is_box, xywh, wh_px, &cls, err);
        if (rc != YL_OK)
            return rc;
        if (!is_box)
            continue;
        int k = mask_index(p, l, best_anchor(&p->cfg, wh_px[0], wh_px[1]));
        if (k < 0)
            continue; /* best anchor belongs to another layer, or to none (tiny's 0) */
        int64_t i = (int64_t)floor((double)xywh[0] * (double)W);
        int64_t j = (int64_t)floor((double)xywh[1] * (double)H);
        if (i < 0 || i >= W || j < 0 || j >= H) /* unreachable after the centre check */
            return yl__fail(err, YL_EBOX, "boxes", b, t,
                            "boxes[%lld][%lld]: cell (%lld, %lld) is outside the %lldx%lld grid",
                            (long long)b, (long long)t, (long long)i, (long long)j,
                            (long long)W, (long long)H);
        int64_t anchor = (j * W + i) * YL_NUM_ANCHORS_PER_LAYER + k;
        int32_t slot = s->anchor_map[anchor];
        if (slot < 0) {
            slot = (int32_t)count++;
            s->anchor_map[anchor] = slot;
            s->truth[slot].anchor = anchor;
            s->truth[slot].cls_head = -1;
        }
        yl__truth *tr = &s->truth[slot];
        tr->x = xywh[0];
        tr->y = xywh[1];
        tr->w = xywh[2];
        tr->h = xywh[3];
        tr->obj = 1.0;
        s->links[t].cls = cls;
        s->links[t].next = tr->cls_head;
        tr->cls_head = (int32_t)t;
    }
    qsort(s->truth, (size_t)count, sizeof *s->truth, by_anchor);
    *n = count;
    return YL_OK;
}

static int gather_dense(const yl_problem *p, int64_t b, int l, yl__scratch *s, int64_t *n,
                        yl_error *err) {
    const yl_tensor *t = &p->y_true[l];
    int64_t per_image = p->layer_elems[l], stride = 5 + p->num_classes;
    int64_t first = b * per_image;
    char where[96], name[16];
    snprintf(name, sizeof name, "y_true_%d", l);
    int64_t bad = yl__find_nonfinite(t->data, t->dtype, first, per_image);
    if (bad >= 0)
        return yl__fail_nonfinite(err, name, t, b, first + bad);
    int64_t count = 0, anchors = p->anchors[l];
    for (int64_t a = 0; a < anchors; a++) {
        int64_t off = first + a * stride;
        double obj = yl__load(t->data, t->dtype, off + 4);
        if (obj == 0)
            continue;
        yl__truth *tr = &s->truth[count++];
        tr->anchor = a;
        tr->x = yl__load(t->data, t->dtype, off);
        tr->y = yl__load(t->data, t->dtype, off + 1);
        tr->w = yl__load(t->data, t->dtype, off + 2);
        tr->h = yl__load(t->data, t->dtype, off + 3);
        tr->obj = obj;
        tr->cls_head = -1;
        /* keras takes log(w / anchor_w * input_w) wherever objectness is nonzero */
        if (!(tr->w > 0 && tr->h > 0)) {
            yl__format_index(t, off + 4, where, sizeof where);
            return yl__fail(err, YL_EBOX, name, b, off + 4,
                            "%s%s: objectness %g with width %g and height %g; both must be "
                            "positive where objectness is nonzero",
                            name, where, obj, tr->w, tr->h);
        }
    }
    *n = count;
    return YL_OK;
}

int yl__gather_truths(const yl_problem *p, int64_t b, int l, yl__scratch *s, int64_t *n,
                      yl_error *err) {
    return p->has_boxes ? gather_boxes(p, b, l, s, n, err) : gather_dense(p, b, l, s, n, err);
}

void yl__class_targets(const yl_problem *p, int64_t b, int l, const yl__truth *t,
                       yl__scratch *s) {
    int C = p->num_classes;
    if (p->has_boxes) {
        memset(s->class_target, 0, (size_t)C * sizeof(double));
        for (int32_t k = t->cls_head; k >= 0; k = s->links[k].next)
            s->class_target[s->links[k].cls] = 1.0;
        return;
    }
    const yl_tensor *y = &p->y_true[l];
    int64_t off = b * p->layer_elems[l] + t->anchor * (5 + C) + 5;
    for (int c = 0; c < C; c++)
        s->class_target[c] = yl__load(y->data, y->dtype, off + c);
}

int yl_boxes_to_y_true(const yl_problem *p, float *const *y_true, yl_error *err) {
    if (!p->has_boxes || p->cfg.definition != YL_DEF_KERAS)
        return yl__fail(err, YL_EINVAL, "boxes", -1, -1,
                        "yl_boxes_to_y_true needs a keras-yolo3 problem initialised with boxes");
    void *scratch = malloc(p->scratch_size ? p->scratch_size : 1);
    if (!scratch)
        return yl__fail(err, YL_ENOMEM, "", -1, -1, "out of memory for scratch");
    yl__scratch s;
    yl__scratch_carve(p, scratch, &s);
    int rc = YL_OK, C = p->num_classes;
    for (int64_t b = 0; b < p->batch && rc == YL_OK; b++) {
        for (int l = 0; l < p->num_layers && rc == YL_OK; l++) {
            float *out = y_true[l] + b * p->layer_elems[l];
            int64_t n = 0;
            memset(out, 0, (size_t)p->layer_elems[l] * sizeof(float));
            rc = yl__gather_truths(p, b, l, &s, &n, err);
            for (int64_t k = 0; rc == YL_OK && k < n; k++) {
                const yl__truth *t = &s.truth[k];
                float *row = out + t->anchor * (5 + C);
                row[0] = (float)t->x;
                row[1] = (float)t->y;
                row[2] = (float)t->w;
                row[3] = (float)t->h;
                row[4] = (float)t->obj;
                yl__class_targets(p, b, l, t, &s);
                for (int c = 0; c < C; c++)
                    row[5 + c] = (float)s.class_target[c];
            }
        }
    }
    free(scratch);
    return rc;
}
