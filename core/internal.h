/* Internal declarations shared by the files of core/. Never installed, never included by clients. */
#ifndef YOLOLOSS_INTERNAL_H
#define YOLOLOSS_INTERNAL_H

#include <math.h>

#include "yololoss.h"

#if defined(__GNUC__)
#define YL__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define YL__PRINTF(f, a)
#endif

/* errors.c: fill err (may be NULL) and return code. */
int yl__fail(yl_error *err, int code, const char *tensor, int64_t image, int64_t index,
             const char *fmt, ...) YL__PRINTF(6, 7);
/* "[1][3][5][17]": the multi-index of flat element `flat` of t, into buf. */
void yl__format_index(const yl_tensor *t, int64_t flat, char *buf, size_t size);
/* "NaN", "+Inf" or "-Inf". */
const char *yl__nonfinite_name(double v);
/* YL_ENONFINITE for element `flat` of t (named `name`) in image b: "name[1][3][5][17] is NaN". */
int yl__fail_nonfinite(yl_error *err, const char *name, const yl_tensor *t, int64_t b,
                       int64_t flat);

/* definitions.c: one row per loss definition (YL_DEFINITION_MAP), its functions. */
typedef struct {
    /* cfg's defaults for a yolov3 (9 anchors) or yolov3-tiny (6) model */
    int (*defaults)(yl_config *cfg, int num_anchors);
    /* check cfg's definition-specific parts and fill p->cfg's layers (p->cfg = *cfg already) */
    int (*config)(yl_problem *p, const yl_config *cfg, yl_error *err);
    /* check the ground truth (boxes: the definition's box list) into p */
    int (*truth)(yl_problem *p, const yl_tensor *boxes, const yl_tensor *y_true, int n_y_true,
                 yl_error *err);
    size_t (*scratch_bytes)(const yl_problem *p);
    int (*image)(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
                 yl_image_result *out, yl_error *err);
} yl__definition;

/* The row of a definition, or NULL. */
const yl__definition *yl__definition_of(int definition);
/* Whether its terms are means over the batch (the map's last column). */
int yl__definition_mean(int definition);
/* problem.c: keras-yolo3's config; the layer checks of an explicit descriptor. */
int yl__keras_config(yl_problem *p, const yl_config *cfg, yl_error *err);
int yl__check_layers(const yl_config *cfg, yl_error *err);
int yl__keras_truth(yl_problem *p, const yl_tensor *boxes, const yl_tensor *y_true,
                    int n_y_true, yl_error *err);
/* Element count of t into *elems; errors name `name` (NULL data, dtype, dims, overflow). */
int yl__check_dims(const yl_tensor *t, const char *name, int64_t *elems, yl_error *err);
/* image.c: keras-yolo3's image. */
int yl__keras_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
                    yl_image_result *out, yl_error *err);

/* keras's sigmoid, in double, given e = exp(-|x|): no overflow for any x. The loss
 * (image.c) and the decode (decode.c) share it, so both see the same bits. */
static inline double yl__sigmoid_e(double x, double e) { return (x >= 0 ? 1.0 : e) / (1.0 + e); }
static inline double yl__sigmoid(double x) { return yl__sigmoid_e(x, exp(-fabs(x))); }

/* keras's yolo_head for one anchor: out = centre x, y and size w, h normalised to the
 * input, given sigmoid(t_x), sigmoid(t_y), exp(t_w), exp(t_h) of cell (i, j) of a W x H
 * grid, the anchor's size aw, ah and the input's in_w, in_h in pixels. */
static inline void yl__head_box(double sx, double sy, double ew, double eh, double i, double j,
                                double W, double H, double aw, double ah, double in_w,
                                double in_h, double out[4]) {
    out[0] = (sx + i) / W;
    out[1] = (sy + j) / H;
    out[2] = ew * aw / in_w;
    out[3] = eh * ah / in_h;
}

/* darknet.c: darknet's row (defaults from cfg/yolov3.cfg and cfg/yolov3-tiny.cfg). */
int yl__darknet_default(yl_config *cfg, int num_anchors);
int yl__darknet_config(yl_problem *p, const yl_config *cfg, yl_error *err);
int yl__darknet_truth(yl_problem *p, const yl_tensor *truths, const yl_tensor *y_true,
                      int n_y_true, yl_error *err);
size_t yl__darknet_scratch_bytes(const yl_problem *p);
int yl__darknet_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
                      yl_image_result *out, yl_error *err);

/* image.c: the first index in the sorted a[0, n) that is >= v. */
int64_t yl__lower_bound(const int64_t *a, int64_t n, int64_t v);

/* dtype.c: element access. */
double yl__load(const void *base, int dtype, int64_t i);

/* kernels.c: the per-element kernels, a scalar (reference) and an AVX2 build. */
typedef struct {
    double linear[4], noobj[4], prod[4], small[4], logs[4];
    int blocks;
} yl__noobj_acc;

typedef struct {
    const char *name;
    /* A grid row's read: the index (relative to first) of the first non-finite element of
     * the n anchors' n * stride elements from first, or -1; and to[q] = t_o (element
     * first + q * stride + ch) and e[q] = exp(-|t_o|) of each anchor. */
    int64_t (*read_row)(const void *base, int dtype, int64_t first, int64_t n, int64_t stride,
                        int64_t ch, double *to, double *e);
    /* out[q] = element first + q*stride, q < n, as double */
    void (*gather)(const void *base, int dtype, int64_t first, int64_t stride, int64_t n,
                   double *out);
    /* out[q] = exp(-|x[q]|), finite x, within 2 ulp */
    void (*exp_neg_abs)(const double *x, double *out, int64_t n);
    /* the anchors without a truth of a row (n a multiple of 4); see kernels.c */
    void (*noobj)(const double *to, const double *e, const double *m, const double *ig,
                  int64_t n, double *s_o, yl__noobj_acc *acc);
    /* cand[i] = 1 where b[0] <= tw[i] <= b[1] and b[2] <= th[i] <= b[3], else kept */
    void (*admit)(const double *tw, const double *th, int64_t n, const double b[4],
                  double *cand);
    /* keras's boxes of n culling candidates of grid row j from their raw t and exp(-|t|)
     * (4 arrays of stride n_at each), their cell columns ci and anchor sizes aw, ah in
     * pixels; grid_in: W, H, input w, input h. Out: x, y, w, h (4 arrays of stride n_at). */
    void (*decode)(const double *t, const double *e, const double *ci, const double *aw,
                   const double *ah, int64_t n, int64_t n_at, double j, const double grid_in[4],
                   double *out);
    /* hit[r] = 1 where box r (decode's out) reaches IoU >= thresh with box b, else kept */
    void (*reach)(const double *box, int64_t n, int64_t n_at, const double b[4], double thresh,
                  double *hit);
} yl__kernels;

const yl__kernels *yl__kernels_for(int kernel);
void yl__noobj_init(yl__noobj_acc *acc);
void yl__noobj_flush(yl__noobj_acc *acc);
/* BCE(0, t_o) summed over the ignored anchors; *noobj_sum: sum of their sigmoid(t_o). */
double yl__noobj_total(const yl__noobj_acc *acc, double *noobj_sum);
/* The scalar scan, for the value checks outside the row loop. */
int64_t yl__find_nonfinite(const void *base, int dtype, int64_t first, int64_t n);
/* The scalar exp(-|x|), for tests. */
void yl__exp_neg_abs(const double *x, double *out, int64_t n);


/* truth.c: one truth anchor of one layer of one image, whichever way the truth came. */
typedef struct {
    int64_t anchor;   /* (j*W + i)*3 + k within the layer */
    int64_t row;      /* compact problems: its row in p->rows[l] */
    double x, y, w, h; /* normalised, as y_true holds them */
    double obj;       /* objectness (1 for boxes) */
    int32_t cls_head; /* boxes: first link of its class chain, -1 none */
    int32_t near_i0, near_i1, near_j0, near_j1; /* cells whose predictions may reach it */
    /* raw t_w, t_h that may reach it, per anchor k of the layer */
    double tw_lo[YL_NUM_ANCHORS_PER_LAYER], tw_hi[YL_NUM_ANCHORS_PER_LAYER];
    double th_lo[YL_NUM_ANCHORS_PER_LAYER], th_hi[YL_NUM_ANCHORS_PER_LAYER];
} yl__truth;

typedef struct {
    int32_t cls;
    int32_t next;
} yl__class_link;

/* Scratch for one layer's truths, carved from the caller's scratch buffer. */
typedef struct {
    yl__truth *truth;      /* capacity: truth_cap */
    int64_t truth_cap;
    int32_t *anchor_map;   /* boxes: per anchor of the layer, index into truth or -1 */
    yl__class_link *links; /* boxes: one per row */
    int32_t *row_truths;   /* truth_cap: the truths near the current grid row */
    double *class_target;  /* C doubles */
    /* The values of one truth anchor (5 + C, the class logits padded with zeros to a
     * multiple of 4), and of its class logits: exp(-|x|), 1 (0 in the padding), sigmoid. */
    double *row_values, *class_e, *class_m, *class_s;
    /* t_o and exp(-|t_o|) of a band of grid rows, read together (yl__band_rows) */
    double *band_to, *band_e;
    /* a grid row's t_o, exp(-|t_o|), no-truth mask, counts-in-loss mask and sigmoid(t_o),
     * 3*W each, padded to a multiple of 4 */
    double *row_to, *row_e, *row_m, *row_ig, *row_s;
    /* a grid row's raw t_x, t_y, t_w and t_h, and per anchor 1 when some truth's window and
     * t_w, t_h bounds admit it (3*W each, anchor-major: anchor k of cell i at k W + i) */
    double *row_tx, *row_ty, *row_tw, *row_th;
    double *row_cand;
    /* the candidates of a row (image.c, ignore_candidates): their q; t_x, t_y, t_w, t_h,
     * exp(-|.|) of each and their decoded boxes, 4 arrays of 3*W each; their cell column,
     * anchor width and height and whether a truth reaches them, 4 arrays of 3*W */
    int32_t *cand_q;
    double *cand_t, *cand_e, *cand_box, *cand_aux;
} yl__scratch;

/* Grid rows of layer l read in one go (image.c): as many as fit YL__BAND_BYTES of input,
 * at least 1. Reading them in one pass, then culling and summing each, kept the memory
 * streaming: measured in docs/core.md. */
#define YL__BAND_BYTES (256 * 1024)
int64_t yl__band_rows(const yl_problem *p, int l);
void yl__scratch_carve(const yl_problem *p, void *scratch, yl__scratch *s);
size_t yl__scratch_bytes(const yl_problem *p);

/* The truths of image b on layer l, sorted by anchor. Checks the truth values. */
int yl__gather_truths(const yl_problem *p, int64_t b, int l, yl__scratch *s, int64_t *n,
                      yl_error *err);
/* Class targets of truth t into s->class_target (C doubles). */
void yl__class_targets(const yl_problem *p, int64_t b, int l, const yl__truth *t,
                       yl__scratch *s);

#endif
