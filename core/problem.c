/* yl_problem_init: everything about a batch that can be checked without reading values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static const double yolov3_anchors[18] = {10, 13, 16, 30, 33, 23, 30, 61, 62,
                                          45, 59, 119, 116, 90, 156, 198, 373, 326};
static const double tiny_anchors[12] = {10, 14, 23, 27, 37, 58, 81, 82, 135, 169, 344, 319};

/* keras-yolo3's masks by layer count; tiny's second mask really is [1,2,3] (anchor 0 unused). */
static const int masks[2][YL_MAX_LAYERS][YL_NUM_ANCHORS_PER_LAYER] = {
    {{3, 4, 5}, {1, 2, 3}, {-1, -1, -1}}, /* 2 layers */
    {{6, 7, 8}, {3, 4, 5}, {0, 1, 2}},    /* 3 layers */
};

/* keras-yolo3's layers for its anchor count (9: 3 layers, 6: 2), into the descriptor. */
static void keras_layers(yl_config *cfg) {
    int L = cfg->num_anchors / YL_NUM_ANCHORS_PER_LAYER;
    cfg->num_layers = L;
    for (int l = 0; l < L; l++) {
        cfg->layer_anchors[l] = YL_NUM_ANCHORS_PER_LAYER;
        cfg->stride[l] = 32 >> l;
        for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++)
            cfg->mask[l][k] = masks[L - 2][l][k];
    }
}

int yl_config_default(yl_config *cfg, int num_anchors) {
    memset(cfg, 0, sizeof *cfg);
    cfg->definition = YL_DEF_KERAS;
    cfg->ignore_thresh = 0.5;
    cfg->num_anchors = num_anchors;
    if (num_anchors == 9)
        memcpy(cfg->anchors, yolov3_anchors, sizeof yolov3_anchors);
    else if (num_anchors == 6)
        memcpy(cfg->anchors, tiny_anchors, sizeof tiny_anchors);
    else
        return YL_EINVAL;
    keras_layers(cfg);
    return YL_OK;
}

/* Element count of t, or -1 when a dim is not positive or the byte size overflows. */
int yl__check_dims(const yl_tensor *t, const char *name, int64_t *elems, yl_error *err) {
    if (!t->data)
        return yl__fail(err, YL_EINVAL, name, -1, -1, "%s: data pointer is NULL", name);
    size_t esize = yl_dtype_size(t->dtype);
    if (!esize)
        return yl__fail(err, YL_EDTYPE, name, -1, -1, "%s: unknown dtype %d", name, t->dtype);
    if (t->ndim < 1 || t->ndim > YL_MAX_DIMS)
        return yl__fail(err, YL_ESHAPE, name, -1, -1, "%s: %d dims (expected 1 to %d)", name,
                        t->ndim, YL_MAX_DIMS);
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 0)
            return yl__fail(err, YL_ESHAPE, name, -1, d, "%s: dim %d is %lld (must be positive)",
                            name, d, (long long)t->shape[d]);
        if (n > INT64_MAX / t->shape[d] || n * t->shape[d] > (int64_t)(SIZE_MAX / esize / 2))
            return yl__fail(err, YL_EOVERFLOW, name, -1, d, "%s: element count overflows", name);
        n *= t->shape[d];
    }
    *elems = n;
    return YL_OK;
}

/* A per-layer tensor (raw output or y_true) must be (B,H,W,A*(5+C)) or (B,H,W,A,5+C), A the
 * layer's anchor count. */
static int layer_shape(const yl_tensor *t, const char *name, int A, int64_t *bhw,
                       int64_t *channels, yl_error *err) {
    if (t->ndim == 4) {
        if (t->shape[3] % A != 0 || t->shape[3] / A < 6)
            return yl__fail(err, YL_ESHAPE, name, -1, 3,
                            "%s: %lld channels is not %d*(5+C) with C >= 1", name,
                            (long long)t->shape[3], A);
        *channels = t->shape[3] / A;
    } else if (t->ndim == 5) {
        if (t->shape[3] != A || t->shape[4] < 6)
            return yl__fail(err, YL_ESHAPE, name, -1, 3,
                            "%s: shape (..., %lld, %lld) is not (..., %d, 5+C) with C >= 1", name,
                            (long long)t->shape[3], (long long)t->shape[4], A);
        *channels = t->shape[4];
    } else {
        return yl__fail(err, YL_ESHAPE, name, -1, -1,
                        "%s: %d dims (expected 4: B,H,W,%d*(5+C) or 5: B,H,W,%d,5+C)", name,
                        t->ndim, A, A);
    }
    for (int d = 0; d < 3; d++)
        bhw[d] = t->shape[d];
    return YL_OK;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

int64_t yl__band_rows(const yl_problem *p, int l) {
    int64_t stride = p->compact ? 5 : 5 + p->num_classes;
    int64_t row_bytes = YL_NUM_ANCHORS_PER_LAYER * p->grid_w[l] * stride *
                        (int64_t)yl_dtype_size(p->output[l].dtype);
    int64_t rows = YL__BAND_BYTES / (row_bytes > 0 ? row_bytes : 1);
    return rows < 1 ? 1 : rows > p->grid_h[l] ? p->grid_h[l] : rows;
}

/* The one scratch layout: the largest layer's truth list and anchor map, class links and
 * targets, and one grid row of the per-anchor arrays. Returns its size in bytes; with a
 * buffer, also points s's members into it. */
static size_t scratch_layout(const yl_problem *p, void *scratch, yl__scratch *s) {
    int64_t max_anchors = 0, max_row = p->grid_w[p->num_layers - 1];
    for (int l = 0; l < p->num_layers; l++)
        if (p->anchors[l] > max_anchors)
            max_anchors = p->anchors[l];
    int64_t band = 0; /* the most anchors of one band (image.c) */
    for (int l = 0; l < p->num_layers; l++)
        if (yl__band_rows(p, l) * p->grid_w[l] * YL_NUM_ANCHORS_PER_LAYER > band)
            band = yl__band_rows(p, l) * p->grid_w[l] * YL_NUM_ANCHORS_PER_LAYER;
    int64_t rows = p->has_boxes ? p->boxes.shape[1] : 0;
    int64_t truth_cap = p->has_boxes && rows < max_anchors ? rows : max_anchors;
    size_t row = (size_t)((max_row * YL_NUM_ANCHORS_PER_LAYER + 3) & ~3) * sizeof(double);
    size_t cls = (size_t)((p->num_classes + 3) & ~3) * sizeof(double); /* padded to 4 */
    enum { TRUTH, MAP, LINKS, TARGET, TRUTHS, VALUES, CLS_E, CLS_M, CLS_S, BAND_TO, BAND_E, CAND, CAND_Q, CAND_T, CAND_E, CAND_BOX,
           CAND_AUX, TO, E, M, IG, S, TX, TY, TW, TH, N_AT };
    size_t at[N_AT], n = 0;
    at[TRUTH] = n, n += align8((size_t)truth_cap * sizeof(yl__truth));
    at[MAP] = n, n += align8(p->has_boxes ? (size_t)max_anchors * sizeof(int32_t) : 0);
    at[LINKS] = n, n += align8((size_t)rows * sizeof(yl__class_link));
    at[TARGET] = n, n += align8((size_t)p->num_classes * sizeof(double));
    at[TRUTHS] = n, n += align8((size_t)truth_cap * sizeof(int32_t));
    at[VALUES] = n, n += 5 * sizeof(double) + cls;
    at[CLS_E] = n, n += cls;
    at[CLS_M] = n, n += cls;
    at[CLS_S] = n, n += cls;
    at[BAND_TO] = n, n += (size_t)band * sizeof(double);
    at[BAND_E] = n, n += (size_t)band * sizeof(double);
    at[CAND] = n, n += row;
    at[CAND_Q] = n, n += align8((size_t)(max_row * YL_NUM_ANCHORS_PER_LAYER) * sizeof(int32_t));
    at[CAND_T] = n, n += 4 * row;
    at[CAND_E] = n, n += 4 * row;
    at[CAND_BOX] = n, n += 4 * row;
    at[CAND_AUX] = n, n += 4 * row;
    for (int r = TO; r < N_AT; r++) /* the double arrays of one grid row */
        at[r] = n, n += row;
    if (scratch) {
        unsigned char *c = scratch;
        s->truth_cap = truth_cap;
        s->truth = (yl__truth *)(void *)(c + at[TRUTH]);
        s->anchor_map = p->has_boxes ? (int32_t *)(void *)(c + at[MAP]) : NULL;
        s->links = (yl__class_link *)(void *)(c + at[LINKS]);
        s->class_target = (double *)(void *)(c + at[TARGET]);
        s->row_truths = (int32_t *)(void *)(c + at[TRUTHS]);
        s->row_values = (double *)(void *)(c + at[VALUES]);
        s->class_e = (double *)(void *)(c + at[CLS_E]);
        s->class_m = (double *)(void *)(c + at[CLS_M]);
        s->class_s = (double *)(void *)(c + at[CLS_S]);
        s->band_to = (double *)(void *)(c + at[BAND_TO]);
        s->band_e = (double *)(void *)(c + at[BAND_E]);
        s->row_cand = (double *)(void *)(c + at[CAND]);
        s->cand_q = (int32_t *)(void *)(c + at[CAND_Q]);
        s->cand_t = (double *)(void *)(c + at[CAND_T]);
        s->cand_e = (double *)(void *)(c + at[CAND_E]);
        s->cand_box = (double *)(void *)(c + at[CAND_BOX]);
        s->cand_aux = (double *)(void *)(c + at[CAND_AUX]);
        s->row_to = (double *)(void *)(c + at[TO]);
        s->row_e = (double *)(void *)(c + at[E]);
        s->row_m = (double *)(void *)(c + at[M]);
        s->row_ig = (double *)(void *)(c + at[IG]);
        s->row_s = (double *)(void *)(c + at[S]);
        s->row_tx = (double *)(void *)(c + at[TX]);
        s->row_ty = (double *)(void *)(c + at[TY]);
        s->row_tw = (double *)(void *)(c + at[TW]);
        s->row_th = (double *)(void *)(c + at[TH]);
    }
    return n;
}

size_t yl__scratch_bytes(const yl_problem *p) { return scratch_layout(p, NULL, NULL); }

void yl__scratch_carve(const yl_problem *p, void *scratch, yl__scratch *s) {
    scratch_layout(p, scratch, s);
}

size_t yl_scratch_size(const yl_problem *p) { return p->scratch_size; }

/* keras-yolo3's row of the definition table: 9 or 6 anchors, the layers they imply. */
int yl__keras_config(yl_problem *p, const yl_config *cfg, yl_error *err) {
    if (cfg->num_anchors != 9 && cfg->num_anchors != 6)
        return yl__fail(err, YL_EINVAL, "anchors", -1, -1,
                        "anchors: %d anchors given, expected 9 (3 layers) or 6 (tiny, 2 layers)",
                        cfg->num_anchors);
    keras_layers(&p->cfg);
    for (int l = 0; l < p->cfg.num_layers; l++)
        for (int k = 0; k < YL_NUM_ANCHORS_PER_LAYER; k++)
            p->mask[l][k] = p->cfg.mask[l][k];
    return YL_OK;
}

/* A descriptor's layers as given (every definition but keras-yolo3, whose layers follow
 * from its anchor count): 1..YL_MAX_LAYERS layers of 1..YL_MAX_LAYER_ANCHORS anchors, each
 * mask index naming an anchor, positive strides. */
int yl__check_layers(const yl_config *cfg, yl_error *err) {
    if (cfg->num_anchors < 1 || cfg->num_anchors > YL_MAX_ANCHORS)
        return yl__fail(err, YL_EINVAL, "anchors", -1, -1,
                        "anchors: %d anchors given, expected 1 to %d", cfg->num_anchors,
                        YL_MAX_ANCHORS);
    if (cfg->num_layers < 1 || cfg->num_layers > YL_MAX_LAYERS)
        return yl__fail(err, YL_EINVAL, "anchors", -1, -1,
                        "model: %d layers, expected 1 to %d", cfg->num_layers, YL_MAX_LAYERS);
    for (int l = 0; l < cfg->num_layers; l++) {
        int A = cfg->layer_anchors[l];
        if (A < 1 || A > YL_MAX_LAYER_ANCHORS)
            return yl__fail(err, YL_EINVAL, "anchors", -1, l,
                            "model: layer %d has %d anchors, expected 1 to %d", l, A,
                            YL_MAX_LAYER_ANCHORS);
        for (int k = 0; k < A; k++)
            if (cfg->mask[l][k] < 0 || cfg->mask[l][k] >= cfg->num_anchors)
                return yl__fail(err, YL_EINVAL, "anchors", -1, l,
                                "model: layer %d's anchor %d is anchor %d, outside the %d "
                                "anchors given",
                                l, k, cfg->mask[l][k], cfg->num_anchors);
        if (cfg->stride[l] < 1)
            return yl__fail(err, YL_EINVAL, "anchors", -1, l,
                            "model: layer %d's stride %d is not positive", l, cfg->stride[l]);
    }
    return YL_OK;
}

/* The definition, its own checks and layers, then what all share: anchors, ignore_thresh,
 * the class count and how many per-layer outputs the caller passed (n_given). */
static int init_config(yl_problem *p, const yl_config *cfg, int n_given, yl_error *err) {
    p->cfg = *cfg;
    const yl__definition *def = yl__definition_of(cfg->definition);
    if (!def)
        return yl__fail(err, YL_EINVAL, "definition", -1, -1,
                        "definition: %d is not a loss definition (0 to %d)", cfg->definition,
                        YL_NUM_DEFINITIONS - 1);
    int rc = def->config(p, cfg, err);
    if (rc != YL_OK)
        return rc;
    for (int n = 0; n < 2 * cfg->num_anchors; n++)
        if (!isfinite(cfg->anchors[n]) || cfg->anchors[n] <= 0)
            return yl__fail(err, YL_EINVAL, "anchors", -1, n,
                            "anchors: value %d (%g) is not a positive finite number", n,
                            cfg->anchors[n]);
    if (!isfinite(cfg->ignore_thresh))
        return yl__fail(err, YL_EINVAL, "ignore_thresh", -1, -1,
                        "ignore_thresh: %g is not a finite number", cfg->ignore_thresh);
    if (cfg->num_classes < 0)
        return yl__fail(err, YL_EINVAL, "num_classes", -1, -1,
                        "num_classes: %d is negative (0: as the outputs hold)", cfg->num_classes);
    p->num_layers = p->cfg.num_layers;
    int L = p->num_layers;
    if (n_given != L)
        return yl__fail(err, YL_EINVAL, "output_0", -1, -1,
                        "%d raw outputs given, the %d anchors need %d (output_0..output_%d)",
                        n_given, cfg->num_anchors, L, L - 1);
    return YL_OK;
}

/* Layer l's batch, grid and channels (5+C) as one output tensor `name` states them: the
 * same batch and channels as layer 0's, each grid twice the previous one. */
static int accept_layer(yl_problem *p, int l, const char *name, const int64_t bhw[3],
                        int64_t ch, int64_t *channels, yl_error *err) {
    if (l == 0) {
        p->batch = bhw[0];
        *channels = ch;
    } else if (bhw[0] != p->batch) {
        return yl__fail(err, YL_ESHAPE, name, -1, 0,
                        "%s: batch size %lld differs from output_0's %lld", name,
                        (long long)bhw[0], (long long)p->batch);
    } else if (ch != *channels) {
        return yl__fail(err, YL_ESHAPE, name, -1, 3,
                        "%s: %lld channels per anchor (C = %lld) differ from output_0's "
                        "%lld (C = %lld)",
                        name, (long long)ch, (long long)ch - 5, (long long)*channels,
                        (long long)*channels - 5);
    }
    /* every layer sees the same input: grid * stride is layer 0's (keras: each layer
     * doubles the previous grid) */
    const int *st = p->cfg.stride;
    int64_t want_h = l == 0 ? bhw[1] : p->grid_h[0] * st[0] / st[l];
    int64_t want_w = l == 0 ? bhw[2] : p->grid_w[0] * st[0] / st[l];
    if (l > 0 && (want_h * st[l] != p->grid_h[0] * st[0] || want_w * st[l] != p->grid_w[0] * st[0]))
        return yl__fail(err, YL_ESHAPE, name, -1, 1,
                        "%s: output_0's input %lldx%lld px is not a whole grid of stride %d", name,
                        (long long)(p->grid_h[0] * st[0]), (long long)(p->grid_w[0] * st[0]),
                        st[l]);
    if (bhw[1] != want_h || bhw[2] != want_w) {
        if (p->cfg.definition == YL_DEF_KERAS)
            return yl__fail(err, YL_ESHAPE, name, -1, 1,
                            "%s: grid %lldx%lld, expected %lldx%lld (each layer doubles the "
                            "previous grid)",
                            name, (long long)bhw[1], (long long)bhw[2], (long long)want_h,
                            (long long)want_w);
        return yl__fail(err, YL_ESHAPE, name, -1, 1,
                        "%s: grid %lldx%lld, expected %lldx%lld (input %lldx%lld px, stride %d)",
                        name, (long long)bhw[1], (long long)bhw[2], (long long)want_h,
                        (long long)want_w, (long long)(p->grid_h[0] * st[0]),
                        (long long)(p->grid_w[0] * st[0]), st[l]);
    }
    if (bhw[1] > (INT64_C(1) << 20) || bhw[2] > (INT64_C(1) << 20))
        return yl__fail(err, YL_EOVERFLOW, name, -1, 1, "%s: grid %lldx%lld is too large",
                        name, (long long)bhw[1], (long long)bhw[2]);
    p->grid_h[l] = bhw[1];
    p->grid_w[l] = bhw[2];
    p->anchors[l] = bhw[1] * bhw[2] * p->cfg.layer_anchors[l];
    if (ch > INT64_MAX / p->anchors[l] ||
        p->anchors[l] * ch > (int64_t)(SIZE_MAX / sizeof(double) / 2))
        return yl__fail(err, YL_EOVERFLOW, name, -1, 3,
                        "%s: %lld anchors of %lld channels overflow a dense layer", name,
                        (long long)p->anchors[l], (long long)ch);
    p->layer_elems[l] = p->anchors[l] * ch;
    return YL_OK;
}

/* The class count, the input size and the ground truth (the definition's); then the
 * scratch size. Shared by both initialisers once the layers are accepted. */
static int init_truth(yl_problem *p, int64_t channels, const yl_tensor *boxes,
                      const yl_tensor *y_true, int n_y_true, yl_error *err) {
    if (channels - 5 > INT32_MAX)
        return yl__fail(err, YL_EOVERFLOW, "output_0", -1, 3, "output_0: too many classes");
    p->num_classes = (int)(channels - 5);
    if (p->cfg.num_classes && p->num_classes != p->cfg.num_classes)
        return yl__fail(err, YL_ESHAPE, "output_0", -1, 3,
                        "output_0: %lld channels per anchor hold %d classes, the model has %d",
                        (long long)channels, p->num_classes, p->cfg.num_classes);
    p->input_h = (double)p->cfg.stride[0] * (double)p->grid_h[0];
    p->input_w = (double)p->cfg.stride[0] * (double)p->grid_w[0];

    int rc = yl__definition_of(p->cfg.definition)->truth(p, boxes, y_true, n_y_true, err);
    if (rc != YL_OK)
        return rc;
    p->scratch_size = yl__definition_of(p->cfg.definition)->scratch_bytes(p);
    return YL_OK;
}

/* keras-yolo3's ground truth: exactly one of boxes (B, T, 5) and y_true (L dense tensors). */
int yl__keras_truth(yl_problem *p, const yl_tensor *boxes, const yl_tensor *y_true,
                    int n_y_true, yl_error *err) {
    int L = p->num_layers;
    char name[24];
    int has_y_true = y_true && n_y_true > 0;
    if (boxes && has_y_true)
        return yl__fail(err, YL_EINVAL, "boxes", -1, -1,
                        "both boxes and y_true given: send exactly one kind of ground truth");
    if (!boxes && !has_y_true)
        return yl__fail(err, YL_EINVAL, "boxes", -1, -1,
                        "no ground truth: send boxes (B,T,5) or y_true_0..y_true_%d", L - 1);
    if (boxes) {
        int64_t elems;
        int rc = yl__check_dims(boxes, "boxes", &elems, err);
        if (rc != YL_OK)
            return rc;
        if (boxes->dtype != YL_F32 && boxes->dtype != YL_F64)
            return yl__fail(err, YL_EDTYPE, "boxes", -1, -1, "boxes: dtype %s, expected FP32 or FP64",
                            yl_dtype_name(boxes->dtype));
        if (boxes->ndim != 3 || boxes->shape[2] != 5)
            return yl__fail(err, YL_ESHAPE, "boxes", -1, -1,
                            "boxes: expected shape (B, T, 5) of x_min, y_min, x_max, y_max, class");
        if (boxes->shape[0] != p->batch)
            return yl__fail(err, YL_ESHAPE, "boxes", -1, 0,
                            "boxes: batch size %lld differs from output_0's %lld",
                            (long long)boxes->shape[0], (long long)p->batch);
        if (boxes->shape[1] > INT32_MAX)
            return yl__fail(err, YL_EOVERFLOW, "boxes", -1, 1, "boxes: too many rows");
        p->has_boxes = 1;
        p->boxes = *boxes;
    } else {
        if (n_y_true != L)
            return yl__fail(err, YL_EINVAL, "y_true_0", -1, -1,
                            "%d y_true tensors given, the model has %d layers (y_true_0..y_true_%d)",
                            n_y_true, L, L - 1);
        for (int l = 0; l < L; l++) {
            const yl_tensor *t = &y_true[l];
            int64_t elems, bhw[3], ch;
            snprintf(name, sizeof name, "y_true_%d", l);
            int rc = yl__check_dims(t, name, &elems, err);
            if (rc == YL_OK)
                rc = layer_shape(t, name, p->cfg.layer_anchors[l], bhw, &ch, err);
            if (rc != YL_OK)
                return rc;
            int64_t channels = 5 + (int64_t)p->num_classes;
            if (bhw[0] != p->batch || bhw[1] != p->grid_h[l] || bhw[2] != p->grid_w[l] ||
                ch != channels)
                return yl__fail(err, YL_ESHAPE, name, -1, -1,
                                "%s: shape (%lld, %lld, %lld, 3, %lld) does not match "
                                "output_%d's (%lld, %lld, %lld, 3, %lld)",
                                name, (long long)bhw[0], (long long)bhw[1], (long long)bhw[2],
                                (long long)ch, l, (long long)p->batch, (long long)p->grid_h[l],
                                (long long)p->grid_w[l], (long long)channels);
            p->y_true[l] = *t;
        }
    }
    return YL_OK;
}

int yl_problem_init(yl_problem *p, const yl_config *cfg, const yl_tensor *outputs,
                    int n_outputs, const yl_tensor *boxes, const yl_tensor *y_true,
                    int n_y_true, yl_error *err) {
    if (!p || !cfg || !outputs)
        return yl__fail(err, YL_EINVAL, "", -1, -1, "problem, config and outputs are required");
    memset(p, 0, sizeof *p);
    int rc = init_config(p, cfg, n_outputs, err);
    if (rc != YL_OK)
        return rc;
    char name[24];
    int64_t channels = 0;
    for (int l = 0; l < p->num_layers; l++) {
        const yl_tensor *t = &outputs[l];
        int64_t elems, bhw[3], ch;
        snprintf(name, sizeof name, "output_%d", l);
        rc = yl__check_dims(t, name, &elems, err);
        if (rc == YL_OK)
            rc = layer_shape(t, name, p->cfg.layer_anchors[l], bhw, &ch, err);
        if (rc == YL_OK)
            rc = accept_layer(p, l, name, bhw, ch, &channels, err);
        if (rc != YL_OK)
            return rc;
        p->output[l] = *t;
    }
    return init_truth(p, channels, boxes, y_true, n_y_true, err);
}

/* A compact layer: box (B,H,W,3,5), rows (N,5+C), index in range and strictly increasing. */
static int compact_layer(yl_problem *p, int l, const yl_compact_layer *cl, int64_t *channels,
                         yl_error *err) {
    char name[24];
    int64_t elems;
    snprintf(name, sizeof name, "output_%d_box", l);
    int rc = yl__check_dims(&cl->box, name, &elems, err);
    if (rc != YL_OK)
        return rc;
    int A = p->cfg.layer_anchors[l];
    if (cl->box.ndim != 5 || cl->box.shape[3] != A || cl->box.shape[4] != 5)
        return yl__fail(err, YL_ESHAPE, name, -1, -1,
                        "%s: expected shape (B, H, W, %d, 5) of t_x, t_y, t_w, t_h, t_o", name, A);
    const yl_tensor *r = &cl->rows;
    snprintf(name, sizeof name, "output_%d_rows", l);
    if (r->ndim != 2 || r->shape[0] < 0 || r->shape[1] < 6)
        return yl__fail(err, YL_ESHAPE, name, -1, -1,
                        "%s: expected shape (N, 5+C) with N >= 0 and C >= 1", name);
    if (r->shape[0] > 0) {
        rc = yl__check_dims(r, name, &elems, err);
        if (rc != YL_OK)
            return rc;
    } else if (!yl_dtype_size(r->dtype)) {
        return yl__fail(err, YL_EDTYPE, name, -1, -1, "%s: unknown dtype %d", name, r->dtype);
    }
    snprintf(name, sizeof name, "output_%d_box", l);
    int64_t bhw[3] = {cl->box.shape[0], cl->box.shape[1], cl->box.shape[2]};
    rc = accept_layer(p, l, name, bhw, r->shape[1], channels, err);
    if (rc != YL_OK)
        return rc;
    int64_t N = r->shape[0], total = p->batch * p->anchors[l];
    snprintf(name, sizeof name, "output_%d_index", l);
    if (N > 0 && !cl->index)
        return yl__fail(err, YL_EINVAL, name, -1, -1, "%s: NULL for %lld rows", name,
                        (long long)N);
    for (int64_t n = 0; n < N; n++) {
        int64_t a = cl->index[n];
        if (a < 0 || a >= total)
            return yl__fail(err, YL_EINVAL, name, -1, n,
                            "%s[%lld]: anchor index %lld is outside [0, %lld) (B*H*W*%d)", name,
                            (long long)n, (long long)a, (long long)total, A);
        if (n > 0 && a <= cl->index[n - 1])
            return yl__fail(err, YL_EINVAL, name, -1, n,
                            "%s[%lld]: anchor index %lld does not exceed the previous one, "
                            "%lld (indices must be strictly increasing)",
                            name, (long long)n, (long long)a, (long long)cl->index[n - 1]);
    }
    p->output[l] = cl->box;
    p->rows[l] = *r;
    p->row_index[l] = cl->index;
    p->n_rows[l] = N;
    return YL_OK;
}

int yl_problem_init_compact(yl_problem *p, const yl_config *cfg, const yl_compact_layer *layers,
                            int n_layers, const yl_tensor *boxes, const yl_tensor *y_true,
                            int n_y_true, yl_error *err) {
    if (!p || !cfg || !layers)
        return yl__fail(err, YL_EINVAL, "", -1, -1, "problem, config and layers are required");
    memset(p, 0, sizeof *p);
    int rc = init_config(p, cfg, n_layers, err);
    if (rc != YL_OK)
        return rc;
    p->compact = 1;
    int64_t channels = 0;
    for (int l = 0; l < p->num_layers; l++) {
        rc = compact_layer(p, l, &layers[l], &channels, err);
        if (rc != YL_OK)
            return rc;
    }
    return init_truth(p, channels, boxes, y_true, n_y_true, err);
}
