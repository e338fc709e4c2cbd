/* libFuzzer target: compact problems (yl_problem_init_compact) against the dense problem
 * built from the same values.
 *
 * A small batch with finite PRNG outputs and fuzzed box rows; the compact form keeps every
 * anchor's 5 box channels and the rows of the truth anchors plus fuzz-chosen extras (rows
 * in the outputs' dtype or FP64), maybe without one truth row; or the row indices come raw
 * from the input (unsorted, repeated, out of range). Every call must:
 *   - at init, refuse the first bad index (layer order, then position) with YL_EINVAL
 *     naming "output_<l>_index[<n>]", err.index = n; accept everything else;
 *   - at compute, fail with YL_ENOROW for the lowest image with a truth anchor without a
 *     row (first layer, first anchor; err.index its flat index) when no earlier image has a
 *     bad box row; else exactly as the dense problem does; or else give the dense bits:
 *     result, per-image terms, the t_o gradient (dense channel 4) and the gradient rows
 *     (dense rows), fp32 and fp64, on 1 and 2 threads, loss only or not.
 *
 * Layout: cfg byte (bit 0 tiny; bit 1 boxes FP64; bits 2-3 outputs FP32/FP16/BF16/FP64;
 * bit 4 rows FP64; bit 5 raw indices; bit 6 drop one truth row), size byte (B = 1 + b%2,
 * H0 = 1 + (b/2)%2, W0 = 1 + (b/4)%2, C = 1 + (b/8)%3, T = 1 + (b/24)%6), the output
 * PRNG seed (4 bytes), then per box row 5 bytes (coordinates as whole pixels of -10% ..
 * 110% of the input, byte % (C+1) the class; x_max <= x_min is padding), then: raw mode,
 * per layer a count byte n and n 2-byte little-endian signed indices; else the drop byte
 * and per anchor of each layer one byte (< 32: an extra row).
 */
#include "fuzz_common.h"

typedef struct {
    void *box[YL_MAX_LAYERS], *rows[YL_MAX_LAYERS];
    int64_t *index[YL_MAX_LAYERS];
    yl_compact_layer layer[YL_MAX_LAYERS];
} compact;

static void compact_free(compact *c) {
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(c->box[l]);
        free(c->rows[l]);
        free(c->index[l]);
    }
}

/* Rows of the given indices (each in range) copied from the dense output. */
static void fill_rows(const yl_problem *pd, int l, compact *c, int64_t N, int rows_dt) {
    const yl_tensor *o = &pd->output[l];
    int64_t stride = 5 + pd->num_classes, total = pd->batch * pd->anchors[l];
    c->rows[l] = calloc((size_t)(N * stride) + 1, yl_dtype_size(rows_dt));
    YLF_CHECK(c->rows[l], "oom");
    for (int64_t r = 0; r < N; r++) {
        int64_t a = c->index[l][r];
        if (a < 0 || a >= total)
            continue;
        for (int64_t q = 0; q < stride; q++)
            ylf_store(c->rows[l], rows_dt, r * stride + q, ylf_load(o->data, o->dtype, a * stride + q));
    }
    c->layer[l].rows = (yl_tensor){N ? c->rows[l] : NULL, rows_dt, 2, {N, stride}};
    c->layer[l].index = c->index[l];
}

/* The first bad index: layer and position, or layer -1. */
static void first_bad_index(const yl_problem *pd, const compact *c, int *layer, int64_t *pos) {
    for (int l = 0; l < pd->num_layers; l++) {
        int64_t total = pd->batch * pd->anchors[l];
        for (int64_t n = 0; n < c->layer[l].rows.shape[0]; n++) {
            int64_t a = c->index[l][n];
            if (a < 0 || a >= total || (n > 0 && a <= c->index[l][n - 1])) {
                *layer = l;
                *pos = n;
                return;
            }
        }
    }
    *layer = -1;
}

typedef struct {
    int rc;
    yl_error err;
    yl_result r;
    double *terms;
    yl_grads g;
} crun;

static void crun_free(crun *x) {
    free(x->terms);
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(x->g.layer[l]);
        free(x->g.rows[l]);
    }
}

static void crun_compute(const yl_problem *p, int threads, int gdtype, crun *x) {
    memset(x, 0, sizeof *x);
    size_t es = gdtype >= 0 ? yl_dtype_size(gdtype) : 0;
    x->g.dtype = gdtype;
    x->terms = malloc((size_t)p->batch * 4 * sizeof(double));
    YLF_CHECK(x->terms, "oom");
    for (int l = 0; es && l < p->num_layers; l++) {
        size_t n = (size_t)(p->batch * (p->compact ? p->anchors[l] : p->layer_elems[l]));
        x->g.layer[l] = malloc(n * es + 1);
        YLF_CHECK(x->g.layer[l], "oom");
        memset(x->g.layer[l], 0xff, n * es);
        if (p->compact) {
            size_t m = (size_t)(p->n_rows[l] * (5 + p->num_classes));
            x->g.rows[l] = malloc(m * es + 1);
            YLF_CHECK(x->g.rows[l], "oom");
            memset(x->g.rows[l], 0xff, m * es);
        }
    }
    ylf_err_poison(&x->err);
    x->rc = yl_compute(p, threads, es ? &x->g : NULL, &x->r, x->terms, &x->err);
    ylf_check_err("yl_compute", x->rc, &x->err, p->batch);
}

/* Compact run c against dense run d (same gradient dtype): the same bits throughout. */
static void same_as_dense(const yl_problem *pd, const yl_problem *pc, const crun *d,
                          const crun *c, const char *what) {
    YLF_CHECK(c->rc == YL_OK && memcmp(&d->r, &c->r, sizeof d->r) == 0 &&
                  memcmp(d->terms, c->terms, (size_t)pd->batch * 4 * sizeof(double)) == 0,
              "%s: compact result differs from dense (rc %s, loss %.17g vs %.17g)", what,
              yl_err_name(c->rc), c->r.loss, d->r.loss);
    if (!d->g.layer[0])
        return;
    size_t es = yl_dtype_size(d->g.dtype);
    int64_t stride = 5 + pd->num_classes;
    for (int l = 0; l < pd->num_layers; l++) {
        const unsigned char *dg = d->g.layer[l], *cg = c->g.layer[l], *cr = c->g.rows[l];
        for (int64_t a = 0; a < pd->batch * pd->anchors[l]; a++)
            YLF_CHECK(memcmp(dg + (size_t)(a * stride + 4) * es, cg + (size_t)a * es, es) == 0,
                      "%s: layer %d anchor %lld: t_o gradient differs", what, l, (long long)a);
        for (int64_t r = 0; r < pc->n_rows[l]; r++)
            YLF_CHECK(memcmp(dg + (size_t)(pc->row_index[l][r] * stride) * es,
                             cr + (size_t)(r * stride) * es, (size_t)stride * es) == 0,
                      "%s: layer %d row %lld: gradient row differs", what, l, (long long)r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ylf_reader rd = {data, size, 0}, *r = &rd;
    uint8_t cfgb = ylf_u8(r), sz = ylf_u8(r);
    int L = cfgb & 1 ? 2 : 3, bf64 = (cfgb >> 1) & 1, raw = (cfgb >> 5) & 1;
    static const int odts[4] = {YL_F32, YL_F16, YL_BF16, YL_F64};
    int odt = odts[(cfgb >> 2) & 3], rdt = (cfgb >> 4) & 1 ? YL_F64 : odt;
    int64_t B = 1 + sz % 2, H0 = 1 + (sz / 2) % 2, W0 = 1 + (sz / 4) % 2;
    int C = 1 + (sz / 8) % 3;
    int64_t T = 1 + (sz / 24) % 6;
    yl_config cfg;
    yl_config_default(&cfg, 3 * L);
    double in_w = 32.0 * (double)W0, in_h = 32.0 * (double)H0;

    uint64_t seed = ylf_bytes_le(r, 4);
    yl_tensor out[3];
    void *odata[3] = {0};
    for (int l = 0; l < L; l++) {
        int64_t n = B * (H0 << l) * (W0 << l) * 3 * (5 + C);
        odata[l] = calloc((size_t)n, yl_dtype_size(odt));
        YLF_CHECK(odata[l], "oom");
        for (int64_t i = 0; i < n; i++)
            ylf_store(odata[l], odt, i, ylf_prng(&seed, 3.0));
        out[l] = (yl_tensor){odata[l], odt, 4, {B, H0 << l, W0 << l, 3 * (5 + C)}};
    }
    double *bx = calloc((size_t)(B * T * 5), sizeof(double));
    YLF_CHECK(bx, "oom");
    for (int64_t t = 0; t < B * T; t++)
        for (int q = 0; q < 5; q++) {
            uint8_t b = ylf_u8(r);
            double dim = q % 2 ? in_h : in_w;
            bx[t * 5 + q] = q == 4 ? (double)(b % (C + 1)) : floor(((double)b - 24.0) * dim / 200.0);
        }
    void *bdata = bx;
    float *bx32 = NULL;
    if (!bf64) {
        bx32 = malloc((size_t)(B * T * 5) * sizeof(float));
        YLF_CHECK(bx32, "oom");
        for (int64_t i = 0; i < B * T * 5; i++)
            bx32[i] = (float)bx[i];
        bdata = bx32;
    }
    yl_tensor boxes = {bdata, bf64 ? YL_F64 : YL_F32, 3, {B, T, 5}};

    yl_problem pd, pc;
    yl_error err;
    ylf_err_poison(&err);
    int rc = yl_problem_init(&pd, &cfg, out, L, &boxes, NULL, 0, &err);
    ylf_check_err("yl_problem_init", rc, &err, -1);
    YLF_CHECK(rc == YL_OK, "a well-shaped batch refused: %s", err.msg);

    /* which anchors hold a truth (when the boxes are valid) */
    float *yt[YL_MAX_LAYERS] = {0};
    for (int l = 0; l < L; l++) {
        yt[l] = calloc((size_t)(B * pd.layer_elems[l]) + 1, sizeof(float));
        YLF_CHECK(yt[l], "oom");
    }
    /* images before a bad box row have their truths in yt (yl_boxes_to_y_true goes in
     * image order); from the bad image on, the dense box error comes first */
    int64_t b_limit = yl_boxes_to_y_true(&pd, yt, &err) == YL_OK ? B : err.image;

    compact c;
    memset(&c, 0, sizeof c);
    int64_t stride = 5 + C;
    uint8_t drop = raw ? 0 : ylf_u8(r);
    int dropping = (cfgb >> 6) & 1, dropped = 0;
    for (int l = 0; l < L; l++) {
        int64_t total = B * pd.anchors[l], N = 0;
        c.box[l] = calloc((size_t)(total * 5), yl_dtype_size(odt));
        YLF_CHECK(c.box[l], "oom");
        for (int64_t a = 0; a < total; a++)
            for (int q = 0; q < 5; q++)
                ylf_store(c.box[l], odt, a * 5 + q, ylf_load(odata[l], odt, a * stride + q));
        c.layer[l].box = (yl_tensor){c.box[l], odt, 5, {B, H0 << l, W0 << l, 3, 5}};
        if (raw) {
            int64_t n = ylf_u8(r) % 24;
            c.index[l] = calloc((size_t)n + 1, sizeof(int64_t));
            YLF_CHECK(c.index[l], "oom");
            for (int64_t k = 0; k < n; k++)
                c.index[l][k] = (int16_t)ylf_bytes_le(r, 2);
            N = n;
        } else {
            c.index[l] = calloc((size_t)total + 1, sizeof(int64_t));
            YLF_CHECK(c.index[l], "oom");
            for (int64_t a = 0; a < total; a++) {
                int truth = yt[l][a * stride + 4] != 0;
                int extra = ylf_u8(r) < 32;
                if (truth && dropping && !dropped && drop-- == 0) {
                    dropped = 1;
                    continue;
                }
                if (truth || extra)
                    c.index[l][N++] = a;
            }
        }
        fill_rows(&pd, l, &c, N, rdt);
    }

    ylf_err_poison(&err);
    rc = yl_problem_init_compact(&pc, &cfg, c.layer, L, &boxes, NULL, 0, &err);
    ylf_say("yl_problem_init_compact", rc, &err);
    int bad_l;
    int64_t bad_n = -1;
    first_bad_index(&pd, &c, &bad_l, &bad_n);
    if (bad_l >= 0) {
        char prefix[48];
        snprintf(prefix, sizeof prefix, "output_%d_index[%lld]", bad_l, (long long)bad_n);
        YLF_CHECK(rc == YL_EINVAL && err.index == bad_n && strncmp(err.msg, prefix, strlen(prefix)) == 0,
                  "bad index %s: got %s \"%s\"", prefix, yl_err_name(rc), err.msg);
        ylf_check_err("yl_problem_init_compact", rc, &err, -1);
        goto out;
    }
    ylf_check_err("yl_problem_init_compact", rc, &err, -1);
    YLF_CHECK(rc == YL_OK, "a valid compact layout refused: %s", err.msg);

    /* the expected error: the dense one, else the lowest image's first missing row */
    int64_t miss_b = -1, miss_index = -1;
    for (int64_t b = 0; b < b_limit && miss_b < 0; b++)
            for (int l = 0; l < L && miss_b < 0; l++)
                for (int64_t a = b * pd.anchors[l]; a < (b + 1) * pd.anchors[l]; a++) {
                    if (yt[l][a * stride + 4] == 0)
                        continue;
                    int found = 0;
                    for (int64_t k = 0; k < pc.n_rows[l] && !found; k++)
                        found = pc.row_index[l][k] == a;
                    if (!found) {
                        miss_b = b;
                        miss_index = a;
                        break;
                    }
                }
    static const int gdts[3] = {-1, YL_F32, YL_F64};
    for (int gi = 0; gi < 3; gi++) {
        crun d, x1, x2;
        crun_compute(&pd, 1, gdts[gi], &d);
        crun_compute(&pc, 1, gdts[gi], &x1);
        crun_compute(&pc, 2, gdts[gi], &x2);
        ylf_say("compact", x1.rc, &x1.err);
        if (miss_b >= 0) {
            YLF_CHECK(x1.rc == YL_ENOROW && x1.err.image == miss_b &&
                          x1.err.index == miss_index && ylf_same_err(&x1.err, &x2.err),
                      "missing row of image %lld (index %lld): got %s \"%s\"", (long long)miss_b,
                      (long long)miss_index, yl_err_name(x1.rc), x1.err.msg);
        } else if (d.rc != YL_OK) {
            YLF_CHECK(x1.rc == d.rc && ylf_same_err(&x1.err, &d.err) && x2.rc == d.rc &&
                          ylf_same_err(&x2.err, &d.err),
                      "dense fails with %s \"%s\", compact with %s \"%s\"", yl_err_name(d.rc),
                      d.err.msg, yl_err_name(x1.rc), x1.err.msg);
        } else {
            same_as_dense(&pd, &pc, &d, &x1, "1 thread");
            same_as_dense(&pd, &pc, &d, &x2, "2 threads");
        }
        crun_free(&d);
        crun_free(&x1);
        crun_free(&x2);
    }

out:
    compact_free(&c);
    for (int l = 0; l < L; l++) {
        free(odata[l]);
        free(yt[l]);
    }
    free(bx);
    free(bx32);
    return 0;
}
