/* darknet's [yolo] layer loss: pjreddie/darknet src/yolo_layer.c forward_yolo_layer (last
 * change 481d9d98), its CPU build, on the service's layout.
 *
 * darknet's input is NCHW with channels anchor-major then entry-major ([n][entry][h][w]);
 * the service's is NHWC with channels anchor-major ([h][w][n][entry]), so darknet's
 * entry_index(b, n*w*h + j*w + i, e) is element ((b*H + j)*W + i)*A + n, channel e, here.
 *
 * Per image and layer, as darknet: every anchor (j, i, n order) is decoded (sigma on x, y,
 * objectness and classes, exp(t_w) * anchor_w / net_w), its best IoU over the truth list
 * (ending at the first x == 0, at most max_truths; strict >, from 0) decides its objectness
 * delta: 0 - sigma(t_o), or 0 when best_iou > ignore_thresh; above truth_thresh it becomes a
 * positive for its best truth (box, objectness 1, classes). Then each truth picks best_n
 * over ALL anchors by shape IoU (strict >) and is assigned only where the layer's mask holds
 * best_n, at cell (int)(x*W), (int)(y*H): box delta scale * (target - value) with scale
 * 2 - w*h, objectness 1 - sigma, classes by delta_yolo_class, quirk and all (when the slot's
 * class-0 delta is already nonzero only the truth's own class is set, so later truths in a
 * slot add labels; their box overwrites). Anchors a truth or truth_thresh touches are kept
 * as "records" (their whole delta row); every other anchor has only its objectness delta.
 *
 * Outputs: gradient = -delta (no 1/B: darknet applies 1/batch in its update); the implicit
 * loss whose negative gradient delta is: xy scale * BCE(t, sigma^-1), wh scale/2 * (t - raw)^2,
 * objectness and classes BCE(target, logit), ignored anchors 0; cost = sum of delta^2; the
 * statistics forward_yolo_layer prints.
 *
 * Arithmetic: with fp32 (the default) every operation darknet performs in float is done in
 * double and rounded to float (R below): for +, -, *, / of floats that is the float result
 * exactly, and its exp, log and logistic are the double libm calls darknet makes, rounded
 * where darknet stores them. So the deltas (and the gradient) are darknet's bits. Terms,
 * cost and statistics are summed in double (darknet sums in float), so they are within its
 * float rounding. With fp32 = 0 the same formulas run in double throughout.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>


#include "internal.h"

/* ---------------------------------------------------------------- descriptor */

static const double dk_yolov3_anchors[18] = {10, 13, 16, 30, 33, 23, 30, 61, 62,
                                             45, 59, 119, 116, 90, 156, 198, 373, 326};
static const double dk_tiny_anchors[12] = {10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319};

/* cfg/yolov3.cfg (masks 678/345/012) and cfg/yolov3-tiny.cfg (345/012: unlike keras-yolo3's
 * tiny, anchor 0 is used and 3 only once). */
int yl__darknet_default(yl_config *cfg, int num_anchors) {
    memset(cfg, 0, sizeof *cfg);
    if (num_anchors != 9 && num_anchors != 6)
        return YL_EINVAL;
    cfg->definition = YL_DEF_DARKNET;
    cfg->num_anchors = num_anchors;
    memcpy(cfg->anchors, num_anchors == 9 ? dk_yolov3_anchors : dk_tiny_anchors,
           (size_t)(2 * num_anchors) * sizeof(double));
    cfg->num_layers = num_anchors / 3;
    for (int l = 0; l < cfg->num_layers; l++) {
        cfg->layer_anchors[l] = 3;
        cfg->stride[l] = 32 >> l;
        for (int k = 0; k < 3; k++)
            cfg->mask[l][k] = num_anchors - 3 * (l + 1) + k;
    }
    cfg->ignore_thresh = 0.7;
    cfg->darknet.truth_thresh = 1;
    cfg->darknet.max_truths = 90;
    cfg->darknet.fp32 = 1;
    return YL_OK;
}

int yl__darknet_config(yl_problem *p, const yl_config *cfg, yl_error *err) {
    (void)p;
    int rc = yl__check_layers(cfg, err);
    if (rc != YL_OK)
        return rc;
    const yl_darknet_params *d = &cfg->darknet;
    if (!isfinite(d->truth_thresh) || d->truth_thresh < 0)
        return yl__fail(err, YL_EINVAL, "truth_thresh", -1, -1,
                        "truth_thresh: %g is not a finite number >= 0", d->truth_thresh);
    if (d->max_truths < 1 || d->max_truths > (1 << 20))
        return yl__fail(err, YL_EINVAL, "max_truths", -1, -1,
                        "max_truths: %d is not in [1, 1048576]", d->max_truths);
    if (d->fp32 != 0 && d->fp32 != 1)
        return yl__fail(err, YL_EINVAL, "fp32", -1, -1, "fp32: %d is not 0 or 1", d->fp32);
    return YL_OK;
}

/* darknet's truths: (B, T, 5) of normalised x, y, w, h, class; the values are checked per
 * image by yl_image (those before the list's end only). */
int yl__darknet_truth(yl_problem *p, const yl_tensor *truths, const yl_tensor *y_true,
                      int n_y_true, yl_error *err) {
    if (y_true && n_y_true > 0)
        return yl__fail(err, YL_EINVAL, "y_true_0", -1, -1,
                        "y_true: darknet takes truths (B, T, 5), not a dense y_true");
    if (!truths)
        return yl__fail(err, YL_EINVAL, "truths", -1, -1,
                        "no ground truth: send truths (B, T, 5) of x, y, w, h, class");
    int64_t elems;
    int rc = yl__check_dims(truths, "truths", &elems, err);
    if (rc != YL_OK)
        return rc;
    if (truths->dtype != YL_F32 && truths->dtype != YL_F64)
        return yl__fail(err, YL_EDTYPE, "truths", -1, -1, "truths: dtype %s, expected FP32 or FP64",
                        yl_dtype_name(truths->dtype));
    if (truths->ndim != 3 || truths->shape[2] != 5 || truths->shape[0] != p->batch)
        return yl__fail(err, YL_ESHAPE, "truths", -1, -1,
                        "truths: expected shape (%lld, T, 5) of x, y, w, h, class (normalised)",
                        (long long)p->batch);
    p->has_boxes = 1;
    p->boxes = *truths;
    return YL_OK;
}

/* ---------------------------------------------------------------- scratch */

typedef struct {
    double x, y, w, h; /* as darknet holds them (float in fp32 mode) */
    int cls;
    /* on the current layer: the cells and raw t_w, t_h (per mask anchor) of the
     * predictions that might pass a threshold against it (see cull) */
    int64_t i0, i1, j0, j1;
    double lo_w[YL_MAX_LAYER_ANCHORS], hi_w[YL_MAX_LAYER_ANCHORS];
    double lo_h[YL_MAX_LAYER_ANCHORS], hi_h[YL_MAX_LAYER_ANCHORS];
} dk_truth_row;

typedef struct {
    int64_t anchor;  /* within the image's layer */
    int64_t row;     /* compact problems: its row in p->rows[l] */
    int obj;         /* objectness target: 0, 1, or -1 ignored */
    int box_set, cls_set;
    double tgt[4], scale; /* the box targets of the truth that wrote the box last */
} dk_record;

typedef struct {
    dk_truth_row *truth;
    int32_t *map;    /* per anchor of the layer: its record, -1 none */
    dk_record *rec;
    double *delta;   /* per record 5 + C */
    double *value;   /* per record 5 + C: raw inputs (classes: raw too) */
    double *z;       /* per record C: class targets */
    int64_t truth_cap, rec_cap;
} dk_scratch;

static int64_t max_layer_anchors(const yl_problem *p) {
    int64_t m = 0;
    for (int l = 0; l < p->num_layers; l++)
        m = p->anchors[l] > m ? p->anchors[l] : m;
    return m;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static size_t dk_layout(const yl_problem *p, void *scratch, dk_scratch *s) {
    int64_t T = p->boxes.shape[1], cap_t = T < p->cfg.darknet.max_truths ? T : p->cfg.darknet.max_truths;
    int64_t anchors = max_layer_anchors(p), ch = 5 + (int64_t)p->num_classes;
    /* truth_thresh >= 1 is never crossed (an IoU is at most 1): records are truths only */
    int64_t cap_r = p->cfg.darknet.truth_thresh >= 1 && cap_t < anchors ? cap_t : anchors;
    size_t at[6], n = 0;
    at[0] = n, n += align8((size_t)cap_t * sizeof(dk_truth_row));
    at[1] = n, n += align8((size_t)anchors * sizeof(int32_t));
    at[2] = n, n += align8((size_t)cap_r * sizeof(dk_record));
    at[3] = n, n += (size_t)(cap_r * ch) * sizeof(double);
    at[4] = n, n += (size_t)(cap_r * ch) * sizeof(double);
    at[5] = n, n += (size_t)(cap_r * p->num_classes) * sizeof(double);
    if (s) {
        unsigned char *c = scratch;
        s->truth = (dk_truth_row *)(void *)(c + at[0]);
        s->map = (int32_t *)(void *)(c + at[1]);
        s->rec = (dk_record *)(void *)(c + at[2]);
        s->delta = (double *)(void *)(c + at[3]);
        s->value = (double *)(void *)(c + at[4]);
        s->z = (double *)(void *)(c + at[5]);
        s->truth_cap = cap_t;
        s->rec_cap = cap_r;
    }
    return n;
}

size_t yl__darknet_scratch_bytes(const yl_problem *p) { return dk_layout(p, NULL, NULL); }

/* ---------------------------------------------------------------- darknet's arithmetic */

typedef struct {
    double x, y, w, h;
} dk_box;

typedef struct {
    const yl_problem *p;
    int64_t b;
    int l, f32, A, C;
    int64_t H, W, first; /* first: the image's first anchor of the layer in the batch */
    double net_w, net_h;
    const void *src;
    int src_dtype;
    int64_t src_stride; /* 5 + C dense, 5 compact */
    int64_t r0, r1;     /* compact: the image's rows of p->rows[l] */
    dk_truth_row *truth;
    int64_t n_truth;
    dk_scratch *s;
    int64_t n_rec;
    double bias[2 * YL_MAX_ANCHORS]; /* darknet's biases: float in fp32 mode */
    dk_box pred;                     /* the anchor being measured */
} dk_ctx;

/* The value darknet stores: a float in fp32 mode (one rounding of the exact double result,
 * which for one float +, -, *, / IS the float operation). */
static double R(const dk_ctx *c, double v) { return c->f32 ? (double)(float)v : v; }

/* activations.h: logistic_activate(x) = 1./(1. + exp(-x)), in double, stored as float */
static double logistic(const dk_ctx *c, double x) { return R(c, 1. / (1. + exp(-x))); }

/* box.c overlap, box_intersection, box_union, box_iou, in darknet's order */
static double overlap(const dk_ctx *c, double x1, double w1, double x2, double w2) {
    double l1 = R(c, x1 - R(c, w1 / 2)), l2 = R(c, x2 - R(c, w2 / 2));
    double left = l1 > l2 ? l1 : l2;
    double r1 = R(c, x1 + R(c, w1 / 2)), r2 = R(c, x2 + R(c, w2 / 2));
    double right = r1 < r2 ? r1 : r2;
    return R(c, right - left);
}

static double box_iou(const dk_ctx *c, dk_box a, dk_box b) {
    double w = overlap(c, a.x, a.w, b.x, b.w), h = overlap(c, a.y, a.h, b.y, b.h);
    double i = (w < 0 || h < 0) ? 0 : R(c, w * h);
    double u = R(c, R(c, R(c, a.w * a.h) + R(c, b.w * b.h)) - i);
    return R(c, i / u);
}

/* get_yolo_box: x, y are the activated outputs, w, h raw */
static dk_box yolo_box(const dk_ctx *c, double sx, double sy, double tw, double th, int n,
                       int64_t i, int64_t j) {
    return (dk_box){R(c, R(c, (double)i + sx) / (double)c->W), R(c, R(c, (double)j + sy) / (double)c->H),
                    R(c, exp(tw) * c->bias[2 * n] / c->net_w),
                    R(c, exp(th) * c->bias[2 * n + 1] / c->net_h)};
}

/* the BCE of a logit x against target z, stable */
static double bce(double z, double x) { return (x > 0 ? x : 0) - x * z + log1p(exp(-fabs(x))); }

/* ---------------------------------------------------------------- reading */

/* A value as darknet reads its float input. */
static double in(const dk_ctx *c, const void *base, int dtype, int64_t i) {
    if (dtype == YL_F32) { /* the common case, without yl__load's call */
        float f;
        memcpy(&f, (const unsigned char *)base + 4 * i, 4);
        return (double)f;
    }
    return R(c, yl__load(base, dtype, i));
}

/* The record of anchor a (made on first use, with the anchor's raw values: the 5 box
 * channels from the output (or box tensor), the class logits from the output or, compact,
 * the anchor's row). Returns its index, or -1 with err set (no row: YL_ENOROW). */
static int record(dk_ctx *c, int64_t a, const char *why, int64_t *out, yl_error *err) {
    dk_scratch *s = c->s;
    if (s->map[a] >= 0) {
        *out = s->map[a];
        return YL_OK;
    }
    const yl_problem *p = c->p;
    const int64_t ch = 5 + c->C;
    int64_t row = -1;
    if (p->compact) {
        const int64_t *index = p->row_index[c->l], want = c->first + a;
        row = yl__lower_bound(index + c->r0, c->r1 - c->r0, want) + c->r0;
        if (row == c->r1 || index[row] != want) {
            char name[24];
            int64_t cell = a / c->A;
            snprintf(name, sizeof name, "output_%d_rows", c->l);
            return yl__fail(err, YL_ENOROW, name, c->b, want,
                            "%s: no row for anchor %lld of image %lld, layer %d, cell (y %lld, "
                            "x %lld) (index %lld): darknet gives it %s",
                            name, (long long)(a % c->A), (long long)c->b, c->l,
                            (long long)(cell / c->W), (long long)(cell % c->W), (long long)want,
                            why);
        }
    }
    const int64_t r = c->n_rec++;
    dk_record *rec = &s->rec[r];
    memset(rec, 0, sizeof *rec);
    rec->anchor = a;
    rec->row = row;
    double *v = s->value + r * ch, *d = s->delta + r * ch;
    for (int e = 0; e < 5; e++)
        v[e] = in(c, c->src, c->src_dtype, (c->first + a) * c->src_stride + e);
    for (int64_t e = 5; e < ch; e++)
        v[e] = p->compact ? in(c, p->rows[c->l].data, p->rows[c->l].dtype, row * ch + e)
                          : in(c, c->src, c->src_dtype, (c->first + a) * ch + e);
    for (int64_t e = 0; e < ch; e++)
        d[e] = 0;
    s->map[a] = (int32_t)r;
    *out = r;
    return YL_OK;
}

/* Where truth tr goes on this layer: best_n over ALL anchors by shape IoU (strict >, from
 * 0), assigned only when the layer's mask holds it (*mask_n >= 0), at cell (*i, *j). */
static int assign(const dk_ctx *c, const dk_truth_row *tr, int64_t t, int *best_n, int *mask_n,
                  int64_t *i, int64_t *j, yl_error *err) {
    const yl_problem *p = c->p;
    double best = 0;
    *best_n = 0;
    for (int n = 0; n < p->cfg.num_anchors; n++) {
        dk_box pred = {0, 0, R(c, c->bias[2 * n] / c->net_w), R(c, c->bias[2 * n + 1] / c->net_h)};
        double iou = box_iou(c, pred, (dk_box){0, 0, tr->w, tr->h});
        if (iou > best) {
            best = iou;
            *best_n = n;
        }
    }
    *mask_n = -1;
    for (int k = 0; k < c->A && *mask_n < 0; k++)
        if (p->cfg.mask[c->l][k] == *best_n)
            *mask_n = k;
    if (*mask_n < 0)
        return YL_OK;
    /* darknet: i = (truth.x * l.w), a float product truncated; outside the grid it would
     * write outside its arrays, so it is refused */
    double fi = R(c, tr->x * (double)c->W), fj = R(c, tr->y * (double)c->H);
    if (!(fi > -1 && fi < (double)c->W && fj > -1 && fj < (double)c->H))
        return yl__fail(err, YL_EBOX, "truths", c->b, t,
                        "truths[%lld][%lld]: centre (%g, %g) lies outside layer %d's %lldx%lld "
                        "grid, where darknet assigns it (anchor %d)",
                        (long long)c->b, (long long)t, tr->x, tr->y, c->l, (long long)c->H,
                        (long long)c->W, *best_n);
    *i = (int64_t)fi;
    *j = (int64_t)fj;
    return YL_OK;
}

/* delta_yolo_class: the quirk `if (delta[index])` included; z tracks the targets it sets. */
static void delta_class(const dk_ctx *c, int64_t r, int cls, double *avg_cat) {
    const int64_t ch = 5 + c->C;
    double *d = c->s->delta + r * ch + 5, *z = c->s->z + r * c->C;
    const double *v = c->s->value + r * ch + 5;
    c->s->rec[r].cls_set = 1;
    if (d[0] != 0) {
        d[cls] = R(c, 1 - logistic(c, v[cls]));
        z[cls] = 1;
        if (avg_cat)
            *avg_cat += logistic(c, v[cls]);
        return;
    }
    for (int n = 0; n < c->C; n++) {
        double sn = logistic(c, v[n]);
        d[n] = R(c, (n == cls ? 1 : 0) - sn);
        z[n] = n == cls;
        if (n == cls && avg_cat)
            *avg_cat += sn;
    }
}

/* delta_yolo_box with anchor n at cell (i, j): returns IoU(pred, truth) */
static double delta_box(const dk_ctx *c, int64_t r, const dk_truth_row *t, int n, int64_t i,
                        int64_t j, double scale) {
    const int64_t ch = 5 + c->C;
    const double *v = c->s->value + r * ch;
    double *d = c->s->delta + r * ch;
    double sx = logistic(c, v[0]), sy = logistic(c, v[1]);
    dk_box pred = yolo_box(c, sx, sy, v[2], v[3], n, i, j);
    double iou = box_iou(c, pred, (dk_box){t->x, t->y, t->w, t->h});
    double tx = R(c, R(c, t->x * (double)c->W) - (double)i);
    double ty = R(c, R(c, t->y * (double)c->H) - (double)j);
    double tw = R(c, log(R(c, R(c, t->w * c->net_w) / c->bias[2 * n])));
    double th = R(c, log(R(c, R(c, t->h * c->net_h) / c->bias[2 * n + 1])));
    d[0] = R(c, scale * R(c, tx - sx)); 
    d[1] = R(c, scale * R(c, ty - sy));
    d[2] = R(c, scale * R(c, tw - v[2]));
    d[3] = R(c, scale * R(c, th - v[3]));
    dk_record *rec = &c->s->rec[r];
    rec->box_set = 1;
    rec->tgt[0] = tx, rec->tgt[1] = ty, rec->tgt[2] = tw, rec->tgt[3] = th;
    rec->scale = scale;
    return iou;
}

/* The image's truth list: rows until the first x == 0, at most max_truths; each checked. */
static int read_truths(dk_ctx *c, yl_error *err) {
    const yl_problem *p = c->p;
    const int64_t T = p->boxes.shape[1];
    static const char *const field[5] = {"x", "y", "w", "h", "class"};
    c->n_truth = 0;
    for (int64_t t = 0; t < c->s->truth_cap; t++) {
        double v[5];
        for (int e = 0; e < 5; e++) {
            double raw = yl__load(p->boxes.data, p->boxes.dtype, (c->b * T + t) * 5 + e);
            if (!isfinite(raw))
                return yl__fail(err, YL_ENONFINITE, "truths", c->b, t, "truths[%lld][%lld]: %s is %s",
                                (long long)c->b, (long long)t, field[e], yl__nonfinite_name(raw));
            v[e] = R(c, raw);
        }
        if (v[0] == 0) /* darknet: if(!truth.x) break; */
            break;
        if (!(v[2] > 0) || !(v[3] > 0))
            return yl__fail(err, YL_EBOX, "truths", c->b, t,
                            "truths[%lld][%lld]: w %g and h %g must be positive", (long long)c->b,
                            (long long)t, v[2], v[3]);
        if (v[4] != floor(v[4]) || v[4] < 0 || v[4] >= c->C)
            return yl__fail(err, YL_ECLASS, "truths", c->b, t,
                            "truths[%lld][%lld]: class id %g is not an integer in [0, %d)",
                            (long long)c->b, (long long)t, v[4], c->C);
        dk_truth_row *r = &c->s->truth[c->n_truth++];
        r->x = v[0], r->y = v[1], r->w = v[2], r->h = v[3], r->cls = (int)v[4];
    }
    return YL_OK;
}

/* ---------------------------------------------------------------- one layer */

static void gstore(void *g, int f64, int64_t i, double v) {
    if (f64)
        ((double *)g)[i] = v;
    else
        ((float *)g)[i] = (float)v;
}

/* Each truth's window of cells and raw t_w, t_h bounds for predictions that might reach
 * IoU > t = min(ignore_thresh, truth_thresh); a prediction outside every truth's has a best
 * IoU that decides nothing, so it is not decoded (the same answer, faster). IoU <=
 * min(w_p, w_t) / max(w_p, w_t) (the intersection is at most the narrower width times the
 * lower height, the union at least the larger area), so IoU > t needs t w_t < w_p < w_t / t,
 * i.e. log(t w_t net_w / anchor_w) < t_w < log(w_t net_w / (t anchor_w)), the same in h;
 * and overlap needs the centres within (w_p + w_t) / 2 < w_t (1 + 1/t) / 2, a prediction's
 * centre lying in its own cell. One cell of margin each side and 1e-3 in log space absorb
 * darknet's float rounding. t <= 0: every prediction is decoded. Returns whether culling
 * applies. */
static int cull_bounds(dk_ctx *c) {
    const yl_problem *p = c->p;
    const int64_t H = c->H, W = c->W;
    double t = p->cfg.ignore_thresh < p->cfg.darknet.truth_thresh ? p->cfg.ignore_thresh
                                                                  : p->cfg.darknet.truth_thresh;
    if (!(t > 0))
        return 0;
    const double lt = log(t);
    for (int64_t q = 0; q < c->n_truth; q++) {
        dk_truth_row *tr = &c->truth[q];
        double rx = tr->w * (1 + 1 / t) / 2, ry = tr->h * (1 + 1 / t) / 2;
        double i0 = floor((tr->x - rx) * (double)W) - 1, i1 = floor((tr->x + rx) * (double)W) + 1;
        double j0 = floor((tr->y - ry) * (double)H) - 1, j1 = floor((tr->y + ry) * (double)H) + 1;
        /* clamped to [-1, W] first, so the conversions stay in range */
        tr->i0 = (int64_t)(i0 < -1 ? -1 : i0 > (double)W ? (double)W : i0);
        tr->i1 = (int64_t)(i1 < -1 ? -1 : i1 > (double)W ? (double)W : i1);
        tr->j0 = (int64_t)(j0 < -1 ? -1 : j0 > (double)H ? (double)H : j0);
        tr->j1 = (int64_t)(j1 < -1 ? -1 : j1 > (double)H ? (double)H : j1);
        for (int k = 0; k < c->A; k++) {
            int n = p->cfg.mask[c->l][k];
            double lw = log(tr->w * c->net_w / c->bias[2 * n]);
            double lh = log(tr->h * c->net_h / c->bias[2 * n + 1]);
            tr->lo_w[k] = lw + lt - 1e-3, tr->hi_w[k] = lw - lt + 1e-3;
            tr->lo_h[k] = lh + lt - 1e-3, tr->hi_h[k] = lh - lt + 1e-3;
        }
    }
    return 1;
}

/* Whether some truth's window and bounds admit anchor k of cell (i, j) with raw t_w, t_h. */
static int admitted(const dk_ctx *c, int64_t i, int64_t j, int k, double tw, double th) {
    for (int64_t q = 0; q < c->n_truth; q++) {
        const dk_truth_row *tr = &c->truth[q];
        if (i >= tr->i0 && i <= tr->i1 && j >= tr->j0 && j <= tr->j1 && tw > tr->lo_w[k] &&
            tw < tr->hi_w[k] && th > tr->lo_h[k] && th < tr->hi_h[k])
            return 1;
    }
    return 0;
}

static int dk_layer(dk_ctx *c, const yl_grads *grads, yl_layer_sums *sum, yl_error *err) {
    const yl_problem *p = c->p;
    dk_scratch *s = c->s;
    const int l = c->l, A = c->A, C = c->C;
    const int64_t ch = 5 + C, n_anch = p->anchors[l];
    const double ignore = p->cfg.ignore_thresh, tt = p->cfg.darknet.truth_thresh;
    char name[24];
    snprintf(name, sizeof name, p->compact ? "output_%d_box" : "output_%d", l);
    int64_t bad = yl__find_nonfinite(c->src, c->src_dtype, c->first * c->src_stride,
                                     n_anch * c->src_stride);
    if (bad >= 0)
        return yl__fail_nonfinite(err, name, &p->output[l], c->b, c->first * c->src_stride + bad);
    if (p->compact) {
        const int64_t *index = p->row_index[l];
        c->r0 = yl__lower_bound(index, p->n_rows[l], c->first);
        c->r1 = yl__lower_bound(index, p->n_rows[l], c->first + n_anch);
        snprintf(name, sizeof name, "output_%d_rows", l);
        bad = c->r1 > c->r0 ? yl__find_nonfinite(p->rows[l].data, p->rows[l].dtype, c->r0 * ch,
                                                 (c->r1 - c->r0) * ch)
                            : -1;
        if (bad >= 0)
            return yl__fail_nonfinite(err, name, &p->rows[l], c->b, c->r0 * ch + bad);
    }
    void *g = grads ? grads->layer[l] : NULL;
    const int g64 = grads && grads->dtype == YL_F64;
    const size_t gsize = g64 ? sizeof(double) : sizeof(float);
    const int64_t g_stride = p->compact ? 1 : ch, g_ch = p->compact ? 0 : 4;
    if (g && !p->compact)
        memset((unsigned char *)g + (size_t)(c->first * ch) * gsize, 0, (size_t)(n_anch * ch) * gsize);
    for (int64_t a = 0; a < n_anch; a++)
        s->map[a] = -1;
    c->n_rec = 0;
    for (int n = 0; n < p->cfg.num_anchors; n++) { /* darknet's biases are floats */
        c->bias[2 * n] = R(c, p->cfg.anchors[2 * n]);
        c->bias[2 * n + 1] = R(c, p->cfg.anchors[2 * n + 1]);
    }

    /* The truths' slots first (they depend on the truths alone): their anchors are records
     * from the start, so the loop below leaves their final deltas to the truth loop. */
    for (int64_t t = 0; t < c->n_truth; t++) {
        int best_n, mask_n;
        int64_t i = 0, j = 0, r;
        int rc = assign(c, &c->truth[t], t, &best_n, &mask_n, &i, &j, err);
        if (rc == YL_OK && mask_n >= 0)
            rc = record(c, (j * c->W + i) * A + mask_n, "a truth", &r, err);
        if (rc != YL_OK)
            return rc;
    }

    const int culled = cull_bounds(c);

    /* darknet's first loop: every anchor, (j, i, n) order = memory order here */
    for (int64_t a = 0; a < n_anch; a++) {
        int64_t cell = a / A, i = cell % c->W, j = cell / c->W;
        int k = (int)(a % A), n = p->cfg.mask[l][k];
        int64_t base = (c->first + a) * c->src_stride;
        double to = in(c, c->src, c->src_dtype, base + 4);
        double best_iou = 0;
        int64_t best_t = 0;
        double t2 = in(c, c->src, c->src_dtype, base + 2), t3 = in(c, c->src, c->src_dtype, base + 3);
        int decode = c->n_truth > 0 && (!culled || admitted(c, i, j, k, t2, t3));
        if (decode) {
            double t0 = in(c, c->src, c->src_dtype, base), t1 = in(c, c->src, c->src_dtype, base + 1);
            c->pred = yolo_box(c, logistic(c, t0), logistic(c, t1), t2, t3, n, i, j);
        }
        for (int64_t t = 0; decode && t < c->n_truth; t++) {
            dk_box pred = c->pred;
            const dk_truth_row *tr = &c->truth[t];
            double iou = box_iou(c, pred, (dk_box){tr->x, tr->y, tr->w, tr->h});
            if (iou > best_iou) {
                best_iou = iou;
                best_t = t;
            }
        }
        double so = logistic(c, to);
        sum->sum_noobj += so;
        sum->n_noobj++;
        int obj = 0;
        double dobj = R(c, 0 - so);
        if (best_iou > ignore) {
            obj = -1;
            dobj = 0;
        }
        int64_t r = s->map[a];
        if (best_iou > tt) {
            int rc = record(c, a, "a prediction beyond truth_thresh", &r, err);
            if (rc != YL_OK)
                return rc;
            obj = 1;
            dobj = R(c, 1 - so);
            const dk_truth_row *tr = &c->truth[best_t];
            delta_class(c, r, tr->cls, NULL);
            delta_box(c, r, tr, n, i, j, R(c, 2 - R(c, tr->w * tr->h)));
        }
        if (r >= 0) {
            s->rec[r].obj = obj;
            s->delta[r * ch + 4] = dobj;
            continue;
        }
        /* an anchor nothing else touches: its objectness alone; ignored counts the anchors
         * whose objectness ends without a delta (a truth's slot is set again below) */
        if (obj == 0)
            sum->terms[2] += bce(0, to);
        else
            sum->ignored++;
        sum->cost += dobj * dobj;
        if (g)
            gstore(g, g64, (c->first + a) * g_stride + g_ch, -dobj);
    }

    /* darknet's truth loop, in list order: later truths overwrite a slot's box */
    for (int64_t t = 0; t < c->n_truth; t++) {
        const dk_truth_row *tr = &c->truth[t];
        int best_n, mask_n;
        int64_t i = 0, j = 0;
        assign(c, tr, t, &best_n, &mask_n, &i, &j, NULL); /* checked above */
        if (mask_n < 0)
            continue;
        int64_t a = (j * c->W + i) * A + mask_n, r = s->map[a];
        double iou = delta_box(c, r, tr, best_n, i, j, R(c, 2 - R(c, tr->w * tr->h)));
        double so = logistic(c, s->value[r * ch + 4]);
        sum->sum_obj += so;
        s->rec[r].obj = 1;
        s->delta[r * ch + 4] = R(c, 1 - so);
        delta_class(c, r, tr->cls, &sum->sum_class);
        sum->count++;
        sum->n_class++;
        sum->n_recall50 += iou > .5;
        sum->n_recall75 += iou > .75;
        sum->sum_iou += iou;
    }

    /* the records: their implicit loss, -delta as the gradient, delta^2 into the cost */
    void *grow = p->compact && grads ? grads->rows[l] : g;
    for (int64_t r = 0; r < c->n_rec; r++) {
        const dk_record *rec = &s->rec[r];
        const double *v = s->value + r * ch, *d = s->delta + r * ch, *z = s->z + r * C;
        if (rec->box_set) {
            sum->terms[0] += rec->scale * (bce(rec->tgt[0], v[0]) + bce(rec->tgt[1], v[1]));
            sum->terms[1] += rec->scale * 0.5 *
                             ((rec->tgt[2] - v[2]) * (rec->tgt[2] - v[2]) +
                              (rec->tgt[3] - v[3]) * (rec->tgt[3] - v[3]));
        }
        if (rec->obj >= 0)
            sum->terms[2] += bce(rec->obj, v[4]);
        if (rec->cls_set)
            for (int q = 0; q < C; q++)
                sum->terms[3] += bce(z[q], v[5 + q]);
        for (int64_t e = 0; e < ch; e++)
            sum->cost += d[e] * d[e];
        if (!g)
            continue;
        int64_t off = p->compact ? rec->row * ch : (c->first + rec->anchor) * ch;
        if (grow)
            for (int64_t e = 0; e < ch; e++)
                gstore(grow, g64, off + e, -d[e]);
        if (p->compact)
            gstore(g, g64, c->first + rec->anchor, -d[4]);
    }
    /* compact gradient rows of anchors without a record: zeros but their t_o gradient */
    if (g && p->compact && grads->rows[l]) {
        const int64_t *index = p->row_index[l];
        unsigned char *rows = grads->rows[l];
        const unsigned char *go = g;
        for (int64_t r = c->r0; r < c->r1; r++) {
            if (s->map[index[r] - c->first] >= 0)
                continue;
            memset(rows + (size_t)(r * ch) * gsize, 0, (size_t)ch * gsize);
            memcpy(rows + (size_t)(r * ch + 4) * gsize, go + (size_t)index[r] * gsize, gsize);
        }
    }
    return YL_OK;
}

int yl__darknet_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
                      yl_image_result *out, yl_error *err) {
    if (!out || (!scratch && p->scratch_size))
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: problem, scratch and out are required");
    if (b < 0 || b >= p->batch)
        return yl__fail(err, YL_EINVAL, "", b, -1, "yl_image: image %lld is outside the batch of %lld",
                        (long long)b, (long long)p->batch);
    if (grads && grads->dtype != YL_F32 && grads->dtype != YL_F64)
        return yl__fail(err, YL_EDTYPE, "grads", b, -1,
                        "grads: dtype %d, expected YL_F32 (float) or YL_F64 (double)", grads->dtype);
    for (int l = 0; grads && p->compact && l < p->num_layers; l++)
        if (grads->layer[l] && !grads->rows[l] && p->n_rows[l] > 0)
            return yl__fail(err, YL_EINVAL, "grads", b, l,
                            "grads: rows[%d] is NULL but output_%d_rows has %lld rows", l, l,
                            (long long)p->n_rows[l]);
    memset(out, 0, sizeof *out);
    out->num_layers = p->num_layers;
    dk_scratch s;
    dk_layout(p, scratch, &s);
    dk_ctx c = {.p = p, .b = b, .f32 = p->cfg.darknet.fp32, .C = p->num_classes, .s = &s,
                .net_w = p->input_w, .net_h = p->input_h, .truth = s.truth};
    int rc = read_truths(&c, err);
    if (rc != YL_OK)
        return rc;
    for (int l = 0; l < p->num_layers; l++) {
        c.l = l;
        c.A = p->cfg.layer_anchors[l];
        c.H = p->grid_h[l];
        c.W = p->grid_w[l];
        c.first = b * p->anchors[l];
        c.src = p->output[l].data;
        c.src_dtype = p->output[l].dtype;
        c.src_stride = p->compact ? 5 : 5 + c.C;
        rc = dk_layer(&c, grads, &out->layer[l], err);
        if (rc != YL_OK)
            return rc;
    }
    return YL_OK;
}
