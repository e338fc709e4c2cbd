/* yl_image: the loss, gradient and statistics of one image, a pure function of its inputs.
 *
 * Per layer: gather the image's truths, then walk the anchors in memory order. Anchors
 * with a truth get keras's full formulas (xy, wh, confidence, class). Anchors without one
 * contribute only BCE(0, t_o) * ignore, so they need t_o, plus t_xy/t_wh when a decoded
 * prediction could reach ignore_thresh against some truth. That last test is what makes
 * loss-only evaluation cheap: a prediction whose centre lies in cell (i, j) can only reach
 * IoU >= t > 0 with a truth of width w if its own width is at most w / t (otherwise
 * IoU <= w / w_pred < t) and the two overlap, so its centre is within w (1 + 1/t) / 2 of
 * the truth's. Cells farther than that from every truth are ignored=1 without decoding;
 * the answer is the same as decoding them, only faster. In the same way IoU <= w_pred / w
 * when the prediction is narrower, so w_pred must lie in [t w, w / t]: as bounds on the raw
 * t_w = log(w_pred * input_w / anchor_w) they are two logarithms per truth and anchor, and
 * a prediction outside them is not decoded at all.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

typedef struct {
    double x, y, w, h; /* centre and size, normalised to the input */
} box;

/* Inputs are proven finite before use, so plain comparisons do (fmin/fmax are calls). */
static double min2(double a, double b) { return a < b ? a : b; }
static double max2(double a, double b) { return a > b ? a : b; }
static double clamp(double v, double lo, double hi) { return min2(max2(v, lo), hi); }

/* keras's box_iou, in double. A NaN (inf * 0 areas from absurd logits) counts as 0. */
static double box_iou(box a, box b) {
    double iw = min2(a.x + a.w / 2, b.x + b.w / 2) - max2(a.x - a.w / 2, b.x - b.w / 2);
    double ih = min2(a.y + a.h / 2, b.y + b.h / 2) - max2(a.y - a.h / 2, b.y - b.h / 2);
    double inter = max2(iw, 0.0) * max2(ih, 0.0);
    double iou = inter / (a.w * a.h + b.w * b.h - inter);
    return iou == iou ? iou : 0.0;
}

/* sigmoid(x) given e = exp(-|x|), without overflow for any x. */
static double sigmoid_e(double x, double e) { return (x >= 0 ? 1.0 : e) / (1.0 + e); }

/* tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x), the stable form. */
static double bce(double z, double x) { return max2(x, 0.0) - x * z + log1p(exp(-fabs(x))); }

static double sigmoid(double x) { return sigmoid_e(x, exp(-fabs(x))); }

static box truth_box(const yl__truth *t) { return (box){t->x, t->y, t->w, t->h}; }

typedef struct {
    const yl_problem *p;
    const yl_tensor *out;
    float *grad;        /* whole-layer gradient buffer, or NULL */
    double inv_m;       /* 1 / batch */
    double anchor_w[3], anchor_h[3]; /* in pixels */
    int64_t H, W;
    int C;
} layer_ctx;

static box decode(const layer_ctx *c, const double t[4], int64_t i, int64_t j, int k) {
    return (box){(sigmoid(t[0]) + (double)i) / (double)c->W,
                 (sigmoid(t[1]) + (double)j) / (double)c->H,
                 exp(t[2]) * c->anchor_w[k] / c->p->input_w,
                 exp(t[3]) * c->anchor_h[k] / c->p->input_h};
}

/* Does any truth reach IoU >= thresh with the prediction t of anchor k in cell (i, j)?
 * Only truths whose cell window and t_w, t_h bounds admit it are measured (see top). */
static int reaches_thresh(const layer_ctx *c, const double t[4], int64_t i, int64_t j, int k,
                          const yl__truth *truth, int64_t n, double thresh) {
    int decoded = 0;
    box pred = {0, 0, 0, 0};
    for (int64_t q = 0; q < n; q++) {
        const yl__truth *tr = &truth[q];
        if (i < tr->near_i0 || i > tr->near_i1 || j < tr->near_j0 || j > tr->near_j1 ||
            t[2] < tr->tw_lo[k] || t[2] > tr->tw_hi[k] || t[3] < tr->th_lo[k] ||
            t[3] > tr->th_hi[k])
            continue;
        if (!decoded) {
            pred = decode(c, t, i, j, k);
            decoded = 1;
        }
        if (box_iou(pred, truth_box(tr)) >= thresh)
            return 1;
    }
    return 0;
}

static double best_iou(box pred, const yl__truth *truth, int64_t n) {
    double best = -INFINITY; /* keras: max over no truths is -inf, so nothing is ignored */
    for (int64_t k = 0; k < n; k++) {
        double iou = box_iou(pred, truth_box(&truth[k]));
        if (iou > best)
            best = iou;
    }
    return best;
}

/* Each truth's window of cells and t_w, t_h bounds for predictions that might reach thresh
 * (see top), and the union of the windows as per-cell flags. */
static void prepare_culling(const layer_ctx *c, yl__truth *truth, int64_t n, double thresh,
                            unsigned char *near) {
    const int64_t H = c->H, W = c->W;
    memset(near, 0, (size_t)(H * W));
    for (int64_t q = 0; q < n; q++) {
        yl__truth *t = &truth[q];
        if (!(thresh > 0)) { /* IoU >= 0 >= thresh: every prediction must be decoded */
            t->near_i0 = t->near_j0 = 0;
            t->near_i1 = (int32_t)(W - 1);
            t->near_j1 = (int32_t)(H - 1);
            for (int k = 0; k < 3; k++) {
                t->tw_lo[k] = t->th_lo[k] = -INFINITY;
                t->tw_hi[k] = t->th_hi[k] = INFINITY;
            }
        } else {
            double rx = t->w * (1 + 1 / thresh) / 2, ry = t->h * (1 + 1 / thresh) / 2;
            /* One cell of margin on each side absorbs rounding. A dense truth may lie
             * anywhere, even off the grid, so the window may be empty (lo > hi); clamping
             * to [-1, W] first keeps every conversion to int in range. */
            t->near_i0 = (int32_t)clamp(floor((t->x - rx) * (double)W) - 1, 0, (double)W);
            t->near_i1 = (int32_t)clamp(floor((t->x + rx) * (double)W) + 1, -1, (double)(W - 1));
            t->near_j0 = (int32_t)clamp(floor((t->y - ry) * (double)H) - 1, 0, (double)H);
            t->near_j1 = (int32_t)clamp(floor((t->y + ry) * (double)H) + 1, -1, (double)(H - 1));
            /* 1e-9 of slack in log space absorbs the rounding of exp and log */
            double lt = log(thresh);
            for (int k = 0; k < 3; k++) {
                double tw = log(t->w * c->p->input_w / c->anchor_w[k]);
                double th = log(t->h * c->p->input_h / c->anchor_h[k]);
                t->tw_lo[k] = tw + lt - 1e-9;
                t->tw_hi[k] = tw - lt + 1e-9;
                t->th_lo[k] = th + lt - 1e-9;
                t->th_hi[k] = th - lt + 1e-9;
            }
        }
        for (int64_t j = t->near_j0; j <= t->near_j1 && t->near_i0 <= t->near_i1; j++)
            memset(near + j * W + t->near_i0, 1, (size_t)(t->near_i1 - t->near_i0 + 1));
    }
}

/* Sum of log1p(e) over the ignored anchors without a truth, with one log per 64 anchors:
 * log(prod(1 + e)) over a block (each factor in (1, 2], so no overflow). A factor rounds by
 * half an ulp, an absolute error of 1e-16 on a term of at least 1e-6; e below 2^-20 would
 * lose its digits in 1 + e and is summed as its series e - e^2/2 instead. */
typedef struct {
    double logs, small, prod;
    int n;
} log1p_sum;

static void log1p_add(log1p_sum *a, double e) {
    if (e < 0x1p-20) {
        a->small += e - e * e / 2;
        return;
    }
    a->prod *= 1 + e;
    if (++a->n == 64) {
        a->logs += log(a->prod);
        a->prod = 1;
        a->n = 0;
    }
}

static double log1p_total(const log1p_sum *a) { return a->logs + log(a->prod) + a->small; }

static void load4(const yl_tensor *t, int64_t off, double v[4]) {
    for (int q = 0; q < 4; q++)
        v[q] = yl__load(t->data, t->dtype, off + q);
}

/* An anchor with a truth: keras's four terms, their gradients and the truth statistics. */
static void truth_anchor(const layer_ctx *c, int64_t b, int l, const yl__truth *tr,
                         const yl__truth *truth, int64_t n_truth, yl__scratch *s, int64_t i,
                         int64_t j, int k, int64_t off, yl_layer_sums *sum) {
    const yl_problem *p = c->p;
    double t[4], to = yl__load(c->out->data, c->out->dtype, off + 4);
    load4(c->out, off, t);
    double obj = tr->obj, scale = 2 - tr->w * tr->h, g = obj * scale;
    double raw_xy[2] = {tr->x * (double)c->W - (double)i, tr->y * (double)c->H - (double)j};
    double raw_wh[2] = {log(tr->w / c->anchor_w[k] * p->input_w),
                        log(tr->h / c->anchor_h[k] * p->input_h)};
    sum->terms[0] += g * (bce(raw_xy[0], t[0]) + bce(raw_xy[1], t[1]));
    sum->terms[1] += g * 0.5 * ((raw_wh[0] - t[2]) * (raw_wh[0] - t[2]) +
                                (raw_wh[1] - t[3]) * (raw_wh[1] - t[3]));

    box pred = decode(c, t, i, j, k);
    double own_iou = box_iou(pred, truth_box(tr));
    /* soft objectness (dense y_true) also pays (1 - obj) * BCE * ignore */
    double ignore = obj != 1 && !(best_iou(pred, truth, n_truth) < p->cfg.ignore_thresh) ? 0 : 1;
    double conf_bce = bce(obj, to), s_o = sigmoid(to);
    sum->terms[2] += obj * conf_bce + (1 - obj) * conf_bce * ignore;

    yl__class_targets(p, b, l, tr, s);
    double cls = 0;
    float *gc = c->grad ? c->grad + off + 5 : NULL;
    for (int q = 0; q < c->C; q++) {
        double x = yl__load(c->out->data, c->out->dtype, off + 5 + q), z = s->class_target[q];
        double sx = sigmoid(x);
        cls += bce(z, x);
        if (z > 0.5) {
            sum->sum_class += sx;
            sum->n_class++;
        }
        if (gc)
            gc[q] = (float)(obj * (sx - z) * c->inv_m);
    }
    sum->terms[3] += obj * cls;

    if (c->grad) {
        float *gr = c->grad + off;
        gr[0] = (float)(g * (sigmoid(t[0]) - raw_xy[0]) * c->inv_m);
        gr[1] = (float)(g * (sigmoid(t[1]) - raw_xy[1]) * c->inv_m);
        gr[2] = (float)(g * (t[2] - raw_wh[0]) * c->inv_m);
        gr[3] = (float)(g * (t[3] - raw_wh[1]) * c->inv_m);
        gr[4] = (float)((obj + (1 - obj) * ignore) * (s_o - obj) * c->inv_m);
    }
    sum->count++;
    sum->sum_iou += own_iou;
    sum->sum_obj += s_o;
    sum->n_recall50 += own_iou > 0.5;
    sum->n_recall75 += own_iou > 0.75;
}

static int image_layer(const yl_problem *p, int64_t b, int l, yl__scratch *s, float *grad,
                       yl_layer_sums *sum, yl_error *err) {
    int64_t n_truth = 0;
    int rc = yl__gather_truths(p, b, l, s, &n_truth, err);
    if (rc != YL_OK)
        return rc;
    layer_ctx c = {.p = p, .out = &p->output[l], .grad = grad, .inv_m = 1.0 / (double)p->batch,
                   .H = p->grid_h[l], .W = p->grid_w[l], .C = p->num_classes};
    for (int k = 0; k < 3; k++) {
        c.anchor_w[k] = p->cfg.anchors[2 * p->mask[l][k]];
        c.anchor_h[k] = p->cfg.anchors[2 * p->mask[l][k] + 1];
    }
    const double thresh = p->cfg.ignore_thresh;
    const int64_t stride = 5 + c.C, row_elems = c.W * 3 * stride;
    const int64_t first = b * p->layer_elems[l];
    const yl__truth *truth = s->truth, *next = truth, *end = truth + n_truth;
    if (n_truth)
        prepare_culling(&c, s->truth, n_truth, thresh, s->cell_near);
    double noobj_linear = 0; /* BCE(0, t_o) = max(t_o, 0) + log1p(exp(-|t_o|)) */
    log1p_sum noobj_log = {.prod = 1};

    for (int64_t j = 0; j < c.H; j++) {
        int64_t row = first + j * row_elems;
        if (grad)
            memset(grad + row, 0, (size_t)row_elems * sizeof(float));
        /* First pass over the row: prove every value finite, a cell at a time so the
         * prefetcher streams the next cells meanwhile, and collect t_o for one vector exp. */
        for (int64_t i = 0; i < c.W; i++) {
            int64_t cell = row + i * 3 * stride;
            int64_t bad = yl__find_nonfinite(c.out->data, c.out->dtype, cell, 3 * stride);
            if (bad >= 0) {
                char name[24], where[96];
                snprintf(name, sizeof name, "output_%d", l);
                yl__format_index(c.out, cell + bad, where, sizeof where);
                return yl__fail(err, YL_ENONFINITE, name, b, cell + bad, "%s%s is %s", name,
                                where,
                                yl__nonfinite_name(yl__load(c.out->data, c.out->dtype, cell + bad)));
            }
            for (int k = 0; k < 3; k++)
                s->row_to[i * 3 + k] = yl__load(c.out->data, c.out->dtype, cell + k * stride + 4);
        }
        yl__exp_neg_abs(s->row_to, s->row_e, 3 * c.W);
        /* Second pass, from cache: the anchors in memory order. */
        for (int64_t i = 0; i < c.W; i++) {
            int near = n_truth && s->cell_near[j * c.W + i];
            for (int k = 0; k < 3; k++) {
                int64_t anchor = (j * c.W + i) * 3 + k;
                int64_t off = row + (i * 3 + k) * stride;
                if (next < end && next->anchor == anchor) {
                    truth_anchor(&c, b, l, next++, truth, n_truth, s, i, j, k, off, sum);
                    continue;
                }
                double ignore = 1;
                if (near) {
                    double t[4];
                    load4(c.out, off, t);
                    ignore = !reaches_thresh(&c, t, i, j, k, truth, n_truth, thresh);
                }
                double to = s->row_to[i * 3 + k], e = s->row_e[i * 3 + k];
                double s_o = sigmoid_e(to, e);
                if (ignore) {
                    noobj_linear += max2(to, 0.0);
                    log1p_add(&noobj_log, e);
                } else {
                    sum->ignored++;
                }
                sum->sum_noobj += s_o;
                sum->n_noobj++;
                if (grad)
                    grad[off + 4] = (float)(ignore * s_o * c.inv_m);
            }
        }
    }
    sum->terms[2] += noobj_linear + log1p_total(&noobj_log);
    return YL_OK;
}

int yl_image(const yl_problem *p, int64_t b, void *scratch, float *const *grads,
             yl_image_result *out, yl_error *err) {
    if (!p || !out || (!scratch && p->scratch_size))
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: problem, scratch and out are required");
    if (b < 0 || b >= p->batch)
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: image %lld is outside the batch of %lld",
                        (long long)b, (long long)p->batch);
    memset(out, 0, sizeof *out);
    out->num_layers = p->num_layers;
    yl__scratch s;
    yl__scratch_carve(p, scratch, &s);
    for (int l = 0; l < p->num_layers; l++) {
        int rc = image_layer(p, b, l, &s, grads ? grads[l] : NULL, &out->layer[l], err);
        if (rc != YL_OK)
            return rc;
    }
    return YL_OK;
}
