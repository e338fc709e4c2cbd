/* keras-yolo3's yl_image: the loss, gradient and statistics of one image, a pure function of
 * its inputs.
 *
 * Per layer: gather the image's truths, then go through the grid a band of rows at a time:
 * read the band (finiteness, t_o and its exp), then for each row mark, decode and measure
 * the culling candidates and sum the anchors without a truth (the steps are listed in
 * docs/core.md; the per-element ones are core/kernels.c). Anchors with a truth get keras's
 * full formulas (xy, wh, confidence, class), after the row's other anchors. Anchors without one
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
 *
 * Dense and compact problems run this one code path: an anchor is read through the layer
 * context (base + anchor * stride: 5+C channels in a dense output, 5 in a compact box
 * tensor; a truth anchor of a compact problem from its row), and gradients are stored
 * through it (dense rows, or the compact t_o array plus the sent rows), so the two give the
 * same bits.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

typedef struct {
    double x, y, w, h; /* centre and size, normalised to the input */
} box;

/* Inputs are proven finite before use, so plain comparisons do (fmin/fmax are calls). A
 * value rewritten to NaN after its check (memory shared with a client) clamps to lo, so a
 * cell window made from it stays on the grid. */
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

/* tf.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x), the stable form, given
 * e = exp(-|x|); bce takes the exp itself. */
static double bce_e(double z, double x, double e) { return max2(x, 0.0) - x * z + log1p(e); }
static double bce(double z, double x) { return bce_e(z, x, exp(-fabs(x))); }

static double sigmoid(double x) { return yl__sigmoid(x); }

static box truth_box(const yl__truth *t) { return (box){t->x, t->y, t->w, t->h}; }

/* One layer of one image: where its anchors are read and its gradients written, and its
 * truths. Anchor a (within the image) is read at src + (first + a) * src_stride. */
typedef struct {
    const yl_problem *p;
    int64_t b;
    int l;
    const void *src;
    int src_dtype;
    int64_t src_stride; /* 5+C dense, 5 compact */
    int64_t first;      /* b * anchors: the image's first anchor in the batch */
    int64_t r0, r1;     /* compact: the image's rows [r0, r1) of p->rows[l] */
    void *g_layer;      /* dense: d loss / d output; compact: d loss / d t_o; NULL: none */
    void *g_rows;       /* compact: gradient rows */
    int g_f64;          /* gradients are double, else float */
    int64_t g_stride, g_ch; /* t_o gradient of anchor a at g_layer[(first + a)*g_stride + g_ch] */
    double inv_m;       /* 1 / batch */
    double anchor_w[YL_NUM_ANCHORS_PER_LAYER], anchor_h[YL_NUM_ANCHORS_PER_LAYER]; /* pixels */
    int64_t H, W;
    int C;
    const yl__truth *truth; /* the image's truths on this layer, by anchor */
    int64_t n_truth;
    const int32_t *row_truths; /* those whose cell window includes the current grid row */
    const yl__kernels *kern;
    int64_t n_row_truths;
    yl__scratch *s;
} layer_ctx;

/* Gradients are computed in double and rounded (to float) once, here. */
static void gstore(void *g, int f64, int64_t i, double v) {
    if (f64)
        ((double *)g)[i] = v;
    else
        ((float *)g)[i] = (float)v;
}

/* keras's yolo_head for anchor k of cell (i, j), given sigmoid(t_x), sigmoid(t_y),
 * exp(t_w) and exp(t_h), however they were computed. */
static box box_of(const layer_ctx *c, double sx, double sy, double ew, double eh, int64_t i,
                  int64_t j, int k) {
    double b[4];
    yl__head_box(sx, sy, ew, eh, (double)i, (double)j, (double)c->W, (double)c->H,
                 c->anchor_w[k], c->anchor_h[k], c->p->input_w, c->p->input_h, b);
    return (box){b[0], b[1], b[2], b[3]};
}

static box decode(const layer_ctx *c, const double t[4], int64_t i, int64_t j, int k) {
    return box_of(c, sigmoid(t[0]), sigmoid(t[1]), exp(t[2]), exp(t[3]), i, j, k);
}

/* The anchors of grid row j that mark_candidates admitted, truth anchors left out (they
 * are not ignored this way): compacted without a branch, their four exps through the
 * kernel's vector exp(-|x|), decoded together (kernel decode) and measured against each
 * truth near the row (kernel reach). A truth whose window or t_w, t_h bounds do not admit
 * a candidate cannot reach thresh with it (see top), so measuring it too changes nothing
 * and keeps the loops free of branches. Sets row_ig[q] = 0 for those that reach; returns
 * how many, and their count in *n_cand (s->cand_q lists them). */
static int64_t ignore_candidates(const layer_ctx *c, int64_t j, int64_t n_row,
                                 const yl__truth *row_truth, const yl__truth *next,
                                 int64_t *n_cand) {
    yl__scratch *s = c->s;
    const int64_t A = YL_NUM_ANCHORS_PER_LAYER;
    const int64_t W = c->W;
    for (const yl__truth *tr = row_truth; tr < next; tr++) {
        int64_t q = tr->anchor - j * n_row;
        s->row_cand[(q % A) * W + q / A] = 0;
    }
    double *t = s->cand_t, *e = s->cand_e; /* 4 arrays of n_row each: t_x, t_y, t_w, t_h */
    double *ci = s->cand_aux, *aw = ci + n_row, *ah = aw + n_row, *hit = ah + n_row;
    int64_t n = 0;
    for (int64_t p = 0; p < n_row; p++) { /* written at n, kept when a candidate */
        s->cand_q[n] = (int32_t)p;
        n += s->row_cand[p] != 0;
    }
    for (int64_t r = 0; r < n; r++) {
        int64_t p = s->cand_q[r], k = p / W, i = p - k * W;
        t[r] = s->row_tx[p];
        t[n_row + r] = s->row_ty[p];
        t[2 * n_row + r] = s->row_tw[p];
        t[3 * n_row + r] = s->row_th[p];
        ci[r] = (double)i;
        aw[r] = c->anchor_w[k];
        ah[r] = c->anchor_h[k];
        hit[r] = 0;
        s->cand_q[r] = (int32_t)(i * A + k); /* from here on, the anchor's q in the row */
    }
    for (int v = 0; v < 4; v++)
        c->kern->exp_neg_abs(t + v * n_row, e + v * n_row, n);
    const double grid_in[4] = {(double)c->W, (double)c->H, c->p->input_w, c->p->input_h};
    c->kern->decode(t, e, ci, aw, ah, n, n_row, (double)j, grid_in, s->cand_box);
    for (int64_t r = 0; r < c->n_row_truths; r++) {
        const yl__truth *tr = &c->truth[c->row_truths[r]];
        const double b[4] = {tr->x, tr->y, tr->w, tr->h};
        c->kern->reach(s->cand_box, n, n_row, b, c->p->cfg.ignore_thresh, hit);
    }
    *n_cand = n;
    double ignored = 0;
    for (int64_t r = 0; r < n; r++) {
        s->row_ig[s->cand_q[r]] = 1 - hit[r];
        ignored += hit[r];
    }
    return (int64_t)ignored;
}

/* row_cand[k W + i] = 1 for the anchors (i, k) of the grid row that some row truth's cell
 * window and t_w, t_h bounds admit: exactly those for which measuring an IoU can reach
 * thresh (see top), so only they are decoded. The row's t_x, t_y, t_w and t_h are gathered
 * anchor-major (k W + i) too, so each truth's test (kernel admit) runs over consecutive
 * cells of one anchor, as a vector loop without branches. */
static void mark_candidates(const layer_ctx *c, int64_t row_anchor) {
    yl__scratch *s = c->s;
    const int64_t A = YL_NUM_ANCHORS_PER_LAYER, W = c->W, n_row = A * W;
    double *row_t[4] = {s->row_tx, s->row_ty, s->row_tw, s->row_th};
    for (int v = 0; v < 4; v++)
        for (int k = 0; k < A; k++)
            c->kern->gather(c->src, c->src_dtype, (row_anchor + k) * c->src_stride + v,
                            A * c->src_stride, W, row_t[v] + k * W);
    for (int64_t p = 0; p < n_row; p++)
        s->row_cand[p] = 0;
    for (int64_t r = 0; r < c->n_row_truths; r++) {
        const yl__truth *tr = &c->truth[c->row_truths[r]];
        int64_t i0 = tr->near_i0, n = tr->near_i1 - tr->near_i0 + 1;
        for (int k = 0; n > 0 && k < A; k++) {
            const double b[4] = {tr->tw_lo[k], tr->tw_hi[k], tr->th_lo[k], tr->th_hi[k]};
            c->kern->admit(s->row_tw + k * W + i0, s->row_th + k * W + i0, n, b,
                           s->row_cand + k * W + i0);
        }
    }
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
 * (see top). */
static void prepare_culling(const layer_ctx *c, yl__truth *truth, int64_t n, double thresh) {
    const int64_t H = c->H, W = c->W;
    for (int64_t q = 0; q < n; q++) {
        yl__truth *t = &truth[q];
        if (!(thresh > 0)) { /* IoU >= 0 >= thresh: every prediction must be decoded */
            t->near_i0 = t->near_j0 = 0;
            t->near_i1 = (int32_t)(W - 1);
            t->near_j1 = (int32_t)(H - 1);
            for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++) {
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
            for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++) {
                double tw = log(t->w * c->p->input_w / c->anchor_w[k]);
                double th = log(t->h * c->p->input_h / c->anchor_h[k]);
                t->tw_lo[k] = tw + lt - 1e-9;
                t->tw_hi[k] = tw - lt + 1e-9;
                t->th_lo[k] = th + lt - 1e-9;
                t->th_hi[k] = th - lt + 1e-9;
            }
        }
    }
}

/* An anchor with a truth: keras's four terms, their gradients and the truth statistics. Its
 * 5+C values come from the dense output or, in a compact problem, from its row. */
static void truth_anchor(const layer_ctx *c, const yl__truth *tr, int64_t i, int64_t j, int k,
                         yl_layer_sums *sum) {
    const yl_problem *p = c->p;
    const int64_t stride = 5 + c->C;
    const void *data = c->src;
    int dtype = c->src_dtype;
    int64_t off = (c->first + tr->anchor) * stride;     /* its row in the input */
    void *grow = c->g_layer;                             /* its gradient row */
    int64_t goff = off;
    if (p->compact) {
        data = p->rows[c->l].data;
        dtype = p->rows[c->l].dtype;
        off = goff = tr->row * stride;
        grow = c->g_rows;
    }
    double *v = c->s->row_values; /* all 5+C values, one loop per dtype */
    c->kern->gather(data, dtype, off, 1, stride, v);
    for (int64_t q = stride; q < 5 + ((c->C + 3) & ~3); q++) /* padding: exact zeros */
        v[q] = 0;
    double t[4] = {v[0], v[1], v[2], v[3]}, to = v[4];
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
    double ignore =
        obj != 1 && !(best_iou(pred, c->truth, c->n_truth) < p->cfg.ignore_thresh) ? 0 : 1;
    double conf_bce = bce(obj, to), s_o = sigmoid(to);
    sum->terms[2] += obj * conf_bce + (1 - obj) * conf_bce * ignore;

    /* The class logits through the kernels: BCE(0, x) summed as for the anchors without a
     * truth, then BCE(z, x) = BCE(0, x) - x z. */
    yl__class_targets(p, c->b, c->l, tr, c->s);
    const double *target = c->s->class_target, *x = v + 5;
    const int64_t C4 = (c->C + 3) & ~3;
    double *ce = c->s->class_e, *cs = c->s->class_s;
    c->kern->exp_neg_abs(x, ce, C4);
    yl__noobj_acc acc;
    yl__noobj_init(&acc);
    c->kern->noobj(x, ce, c->s->class_m, c->s->class_m, C4, cs, &acc);
    double unused, xz = 0;
    for (int q = 0; q < c->C; q++) {
        xz += x[q] * target[q];
        if (target[q] > 0.5) {
            sum->sum_class += cs[q];
            sum->n_class++;
        }
        if (grow)
            gstore(grow, c->g_f64, goff + 5 + q, obj * (cs[q] - target[q]) * c->inv_m);
    }
    double cls = yl__noobj_total(&acc, &unused) - xz;
    sum->terms[3] += obj * cls;

    if (grow) {
        double go = (obj + (1 - obj) * ignore) * (s_o - obj) * c->inv_m;
        gstore(grow, c->g_f64, goff + 0, g * (sigmoid(t[0]) - raw_xy[0]) * c->inv_m);
        gstore(grow, c->g_f64, goff + 1, g * (sigmoid(t[1]) - raw_xy[1]) * c->inv_m);
        gstore(grow, c->g_f64, goff + 2, g * (t[2] - raw_wh[0]) * c->inv_m);
        gstore(grow, c->g_f64, goff + 3, g * (t[3] - raw_wh[1]) * c->inv_m);
        gstore(grow, c->g_f64, goff + 4, go);
        if (p->compact)
            gstore(c->g_layer, c->g_f64, c->first + tr->anchor, go);
    }
    sum->count++;
    sum->sum_iou += own_iou;
    sum->sum_obj += s_o;
    sum->n_recall50 += own_iou > 0.5;
    sum->n_recall75 += own_iou > 0.75;
}

int64_t yl__lower_bound(const int64_t *a, int64_t n, int64_t v) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Compact problems: the image's rows must be finite, and every truth anchor needs one. */
static int find_rows(layer_ctx *c, yl__truth *truth, int64_t n_truth, yl_error *err) {
    const yl_problem *p = c->p;
    const int l = c->l;
    const int64_t *index = p->row_index[l], stride = 5 + c->C;
    c->r0 = yl__lower_bound(index, p->n_rows[l], c->first);
    c->r1 = yl__lower_bound(index, p->n_rows[l], c->first + p->anchors[l]);
    char name[24];
    snprintf(name, sizeof name, "output_%d_rows", l);
    int64_t bad = c->r1 > c->r0 ? yl__find_nonfinite(p->rows[l].data, p->rows[l].dtype,
                                                     c->r0 * stride, (c->r1 - c->r0) * stride)
                                : -1;
    if (bad >= 0)
        return yl__fail_nonfinite(err, name, &p->rows[l], c->b, c->r0 * stride + bad);
    int64_t r = c->r0;
    for (int64_t q = 0; q < n_truth; q++) {
        int64_t want = c->first + truth[q].anchor;
        while (r < c->r1 && index[r] < want)
            r++;
        if (r == c->r1 || index[r] != want) {
            int64_t a = truth[q].anchor, cell = a / YL_NUM_ANCHORS_PER_LAYER;
            return yl__fail(err, YL_ENOROW, name, c->b, want,
                            "%s: no row for the truth anchor of image %lld, layer %d, cell "
                            "(y %lld, x %lld), anchor %lld (index %lld)",
                            name, (long long)c->b, l, (long long)(cell / c->W),
                            (long long)(cell % c->W), (long long)(a % YL_NUM_ANCHORS_PER_LAYER),
                            (long long)want);
        }
        truth[q].row = r;
    }
    return YL_OK;
}

/* Compact gradients: a sent row of an anchor without a truth is zero but its t_o channel. */
static void fill_other_rows(const layer_ctx *c) {
    const int64_t stride = 5 + c->C, *index = c->p->row_index[c->l];
    const size_t esize = c->g_f64 ? sizeof(double) : sizeof(float);
    unsigned char *rows = c->g_rows;
    const unsigned char *to = c->g_layer;
    const yl__truth *t = c->truth, *end = c->truth + c->n_truth;
    for (int64_t r = c->r0; r < c->r1; r++) {
        while (t < end && t->row < r)
            t++;
        if (t < end && t->row == r)
            continue;
        memset(rows + (size_t)(r * stride) * esize, 0, (size_t)stride * esize);
        memcpy(rows + (size_t)(r * stride + 4) * esize, to + (size_t)index[r] * esize, esize);
    }
}

static int image_layer(const yl_problem *p, int64_t b, int l, yl__scratch *s,
                       const yl_grads *grads, yl_layer_sums *sum, yl_error *err) {
    int64_t n_truth = 0;
    int rc = yl__gather_truths(p, b, l, s, &n_truth, err);
    if (rc != YL_OK)
        return rc;
    const int C = p->num_classes;
    layer_ctx c = {.p = p, .b = b, .l = l, .src = p->output[l].data,
                   .src_dtype = p->output[l].dtype, .src_stride = p->compact ? 5 : 5 + C,
                   .first = b * p->anchors[l], .inv_m = 1.0 / (double)p->batch,
                   .H = p->grid_h[l], .W = p->grid_w[l], .C = C, .truth = s->truth,
                   .n_truth = n_truth, .s = s};
    if (grads && grads->layer[l]) {
        c.g_layer = grads->layer[l];
        c.g_rows = p->compact ? grads->rows[l] : NULL;
        c.g_f64 = grads->dtype == YL_F64;
        c.g_stride = p->compact ? 1 : 5 + C;
        c.g_ch = p->compact ? 0 : 4;
    }
    for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++) {
        c.anchor_w[k] = p->cfg.anchors[2 * p->mask[l][k]];
        c.anchor_h[k] = p->cfg.anchors[2 * p->mask[l][k] + 1];
    }
    if (p->compact && (rc = find_rows(&c, s->truth, n_truth, err)) != YL_OK)
        return rc;
    const double thresh = p->cfg.ignore_thresh;
    const yl__kernels *kern = yl__kernels_for(p->kernel);
    c.kern = kern;
    const int64_t A = YL_NUM_ANCHORS_PER_LAYER, n_row = A * c.W, n_pad = (n_row + 3) & ~3;
    const size_t gsize = c.g_f64 ? sizeof(double) : sizeof(float);
    const yl__truth *next = s->truth, *end = s->truth + n_truth;
    if (n_truth)
        prepare_culling(&c, s->truth, n_truth, thresh);
    /* Most anchors: no truth, not near one. The rows' few exceptions are set and put back
     * each row, so the masks are filled once per layer. */
    for (int64_t q = 0; q < n_row; q++)
        s->row_m[q] = s->row_ig[q] = 1;
    for (int64_t q = n_row; q < n_pad; q++) { /* padding: contributes exact zeros */
        s->row_to[q] = 0;
        s->row_e[q] = 1;
        s->row_m[q] = s->row_ig[q] = 0;
    }
    yl__noobj_acc acc; /* BCE(0, t_o) = max(t_o, 0) + log1p(exp(-|t_o|)), in lanes */
    yl__noobj_init(&acc);
    char name[24];
    snprintf(name, sizeof name, p->compact ? "output_%d_box" : "output_%d", l);

    const int64_t band = yl__band_rows(p, l);
    for (int64_t j = 0; j < c.H; j++) {
        int64_t row_anchor = c.first + j * n_row; /* first anchor of the grid row */
        if (j % band == 0) {
            /* Prove every value of the band's rows finite (the class logits the loss never
             * reads included), and gather t_o and its exp along the way. */
            int64_t rows = c.H - j < band ? c.H - j : band;
            int64_t bad = kern->read_row(c.src, c.src_dtype, row_anchor * c.src_stride,
                                         rows * n_row, c.src_stride, 4, s->band_to, s->band_e);
            if (bad >= 0)
                return yl__fail_nonfinite(err, name, &p->output[l], b,
                                          row_anchor * c.src_stride + bad);
        }
        memcpy(s->row_to, s->band_to + (j % band) * n_row, (size_t)n_row * sizeof(double));
        memcpy(s->row_e, s->band_e + (j % band) * n_row, (size_t)n_row * sizeof(double));
        if (c.g_layer && !p->compact) /* box and class channels of most anchors are 0 */
            memset((unsigned char *)c.g_layer + (size_t)(row_anchor * (5 + C)) * gsize, 0,
                   (size_t)(n_row * (5 + C)) * gsize);
        const yl__truth *row_truth = next;
        while (next < end && next->anchor < (j + 1) * n_row)
            next++;
        c.n_row_truths = 0; /* the truths whose window of cells includes this row */
        for (int64_t q = 0; q < n_truth; q++)
            if (s->truth[q].near_j0 <= j && j <= s->truth[q].near_j1)
                s->row_truths[c.n_row_truths++] = (int32_t)q;
        c.row_truths = s->row_truths;
        /* Which anchors count: truth anchors not at all here, near ones unless a truth
         * reaches ignore_thresh; the rest, nearly all, without decoding (see top). */
        int64_t n_cand = 0;
        if (c.n_row_truths) {
            mark_candidates(&c, row_anchor);
            sum->ignored += ignore_candidates(&c, j, n_row, row_truth, next, &n_cand);
        }
        for (const yl__truth *t = row_truth; t < next; t++) {
            int64_t q = t->anchor - j * n_row;
            s->row_m[q] = s->row_ig[q] = 0;
        }
        sum->n_noobj += n_row - (next - row_truth);
        kern->noobj(s->row_to, s->row_e, s->row_m, s->row_ig, n_pad, s->row_s, &acc);
        if (c.g_layer)
            for (int64_t q = 0; q < n_row; q++)
                if (s->row_m[q] != 0)
                    gstore(c.g_layer, c.g_f64, (row_anchor + q) * c.g_stride + c.g_ch,
                           s->row_ig[q] * s->row_s[q] * c.inv_m);
        /* then the truth anchors, with keras's full formulas */
        for (const yl__truth *t = row_truth; t < next; t++) {
            int64_t q = t->anchor - j * n_row;
            truth_anchor(&c, t, q / A, j, (int)(q % A), sum);
            s->row_m[q] = s->row_ig[q] = 1; /* put back */
        }
        for (int64_t r = 0; r < n_cand; r++) /* put back the ignored ones */
            s->row_ig[s->cand_q[r]] = 1;
    }
    double noobj_sum;
    sum->terms[2] += yl__noobj_total(&acc, &noobj_sum);
    sum->sum_noobj += noobj_sum;
    if (c.g_rows)
        fill_other_rows(&c);
    return YL_OK;
}

/* keras-yolo3's image (its row of the definition table). */
int yl__keras_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
                    yl_image_result *out, yl_error *err) {
    if (!p || !out || (!scratch && p->scratch_size))
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: problem, scratch and out are required");
    if (b < 0 || b >= p->batch)
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: image %lld is outside the batch of %lld",
                        (long long)b, (long long)p->batch);
    if (grads && grads->dtype != YL_F32 && grads->dtype != YL_F64)
        return yl__fail(err, YL_EDTYPE, "grads", b, -1,
                        "grads: dtype %d, expected YL_F32 (float) or YL_F64 (double)",
                        grads->dtype);
    for (int l = 0; grads && p->compact && l < p->num_layers; l++)
        if (grads->layer[l] && !grads->rows[l] && p->n_rows[l] > 0)
            return yl__fail(err, YL_EINVAL, "grads", b, l,
                            "grads: rows[%d] is NULL but output_%d_rows has %lld rows", l, l,
                            (long long)p->n_rows[l]);
    memset(out, 0, sizeof *out);
    out->num_layers = p->num_layers;
    yl__scratch s;
    yl__scratch_carve(p, scratch, &s);
    for (int q = 0; q < ((p->num_classes + 3) & ~3); q++) /* the class logits' mask */
        s.class_m[q] = q < p->num_classes;
    for (int l = 0; l < p->num_layers; l++) {
        int rc = image_layer(p, b, l, &s, grads, &out->layer[l], err);
        if (rc != YL_OK)
            return rc;
    }
    return YL_OK;
}
