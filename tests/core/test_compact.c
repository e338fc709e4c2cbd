/* The paths that must give the bits of the dense, scalar path: compact problems
 * (yl_problem_init_compact) against the dense problem built from the same values, the
 * AVX2 kernels against the scalar ones (the reference branch), and fp64 gradients against
 * fp32 ones:
 * - every golden case and random cases (all four dtypes, boxes and dense y_true, tiny and
 *   3 layers, 4-D and 5-D dense layouts, rows that are exactly the truth anchors or a
 *   superset, box and rows in different dtypes): results, statistics, per-image terms and
 *   gradients bit-identical (the compact t_o gradient is the dense channel 4, a gradient
 *   row the dense row), for fp32 and fp64 gradients, on 1 and 3 threads;
 * - fp64 gradients rounded to float are the fp32 gradients, bit for bit;
 * - every case above, dense and compact, gives the same bytes with YL_KERNEL_SCALAR and
 *   YL_KERNEL_AVX2 (where the CPU has AVX2; elsewhere both are the scalar build);
 * - a truth anchor without a row is YL_ENOROW naming image, layer, cell and anchor; bad
 *   indices, shapes and gradient buffers are refused at init or call, named.
 * The dense path itself is proven against the numpy reference and finite differences
 * elsewhere (test_golden.c, test_core.c, tests/python).
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_case.h"
#include "suites.h"
#include "yololoss.h"

static uint64_t rng;

static double uniform(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static double normal(void) {
    return sqrt(-2 * log(uniform() + 1e-300)) * cos(6.283185307179586 * uniform());
}

static double ld(const void *data, int dtype, int64_t i) {
    const unsigned char *p = data;
    switch (dtype) {
    case YL_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case YL_F64: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return d;
    }
    default: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return dtype == YL_F16 ? yl_half_to_double(h) : yl_bf16_to_double(h);
    }
    }
}

/* Store v, which must be representable in dtype (it always came from a value of dtype). */
static void st(void *data, int dtype, int64_t i, double v) {
    unsigned char *p = data;
    if (dtype == YL_F32) {
        float f = (float)v;
        memcpy(p + 4 * i, &f, 4);
    } else if (dtype == YL_F64) {
        memcpy(p + 8 * i, &v, 8);
    } else {
        uint16_t h = dtype == YL_F16 ? yl_double_to_half(v) : yl_double_to_bf16(v);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* ---------------------------------------------------------------- building compact */

/* The compact form of a dense problem's outputs. */
typedef struct {
    yl_compact_layer layer[YL_MAX_LAYERS];
    void *box[YL_MAX_LAYERS], *rows[YL_MAX_LAYERS];
    int64_t *index[YL_MAX_LAYERS];
    int64_t n_truth_rows; /* rows that hold a truth, over all layers */
} compact;

/* is_truth[l][b*anchors + a]: whether anchor a of image b holds a truth in pd. */
static unsigned char *truth_mask(const yl_problem *pd, int l, float *const *yt) {
    int64_t A = pd->anchors[l], n = pd->batch * A, stride = 5 + pd->num_classes;
    unsigned char *m = calloc((size_t)n, 1);
    ck_assert_ptr_nonnull(m);
    for (int64_t a = 0; a < n; a++)
        m[a] = pd->has_boxes ? yt[l][a * stride + 4] != 0
                             : ld(pd->y_true[l].data, pd->y_true[l].dtype, a * stride + 4) != 0;
    return m;
}

/* Rows: every truth anchor, plus each other anchor with probability extra; when drop >= 0,
 * the drop-th truth row (in index order, over layer drop_layer) is left out. A dtype of -1
 * is the layer's own (golden cases may mix dtypes across layers). */
static void make_compact(const yl_problem *pd, compact *c, int box_dt, int rows_dt,
                         double extra, int drop_layer, int64_t drop) {
    memset(c, 0, sizeof *c);
    const int64_t stride = 5 + pd->num_classes;
    float *yt[YL_MAX_LAYERS] = {0};
    if (pd->has_boxes) {
        yl_error err;
        for (int l = 0; l < pd->num_layers; l++)
            yt[l] = malloc((size_t)(pd->batch * pd->layer_elems[l]) * sizeof(float));
        ck_assert_int_eq(yl_boxes_to_y_true(pd, yt, &err), YL_OK);
    }
    for (int l = 0; l < pd->num_layers; l++) {
        const yl_tensor *o = &pd->output[l];
        int box_dtype = box_dt < 0 ? o->dtype : box_dt, rows_dtype = rows_dt < 0 ? o->dtype : rows_dt;
        int64_t A = pd->anchors[l], n = pd->batch * A;
        unsigned char *is_truth = truth_mask(pd, l, yt);
        c->box[l] = malloc((size_t)(n * 5) * yl_dtype_size(box_dtype));
        c->index[l] = malloc((size_t)n * sizeof(int64_t));
        c->rows[l] = malloc((size_t)(n * stride) * yl_dtype_size(rows_dtype) + 1);
        ck_assert(c->box[l] && c->index[l] && c->rows[l]);
        int64_t N = 0, seen_truth = 0;
        for (int64_t a = 0; a < n; a++) {
            for (int q = 0; q < 5; q++)
                st(c->box[l], box_dtype, a * 5 + q, ld(o->data, o->dtype, a * stride + q));
            int keep = is_truth[a] || uniform() < extra;
            if (is_truth[a] && l == drop_layer && seen_truth++ == drop)
                keep = 0;
            if (!keep)
                continue;
            if (is_truth[a])
                c->n_truth_rows++;
            c->index[l][N] = a;
            for (int64_t q = 0; q < stride; q++)
                st(c->rows[l], rows_dtype, N * stride + q, ld(o->data, o->dtype, a * stride + q));
            N++;
        }
        free(is_truth);
        c->layer[l].box = (yl_tensor){c->box[l], box_dtype, 5,
                                      {pd->batch, pd->grid_h[l], pd->grid_w[l], 3, 5}};
        c->layer[l].rows = (yl_tensor){N ? c->rows[l] : NULL, rows_dtype, 2, {N, stride}};
        c->layer[l].index = c->index[l];
    }
    for (int l = 0; l < pd->num_layers; l++)
        free(yt[l]);
}

static void free_compact(compact *c) {
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(c->box[l]);
        free(c->rows[l]);
        free(c->index[l]);
    }
}

static int init_compact_like(yl_problem *pc, const yl_problem *pd, const compact *c,
                             yl_error *err) {
    return yl_problem_init_compact(pc, &pd->cfg, c->layer, pd->num_layers,
                                   pd->has_boxes ? &pd->boxes : NULL,
                                   pd->has_boxes ? NULL : pd->y_true,
                                   pd->has_boxes ? 0 : pd->num_layers, err);
}

/* ---------------------------------------------------------------- the comparison */

typedef struct {
    yl_result r;
    double *terms;
    yl_grads g;
    size_t bytes[YL_MAX_LAYERS], row_bytes[YL_MAX_LAYERS];
} run_out;

/* Gradient buffers pre-filled with 0xff bytes (NaN): an element not written cannot pass. */
static void run_problem(const yl_problem *p, int threads, int gdtype, run_out *o) {
    memset(o, 0, sizeof *o);
    size_t es = yl_dtype_size(gdtype);
    o->g.dtype = gdtype;
    o->terms = malloc((size_t)p->batch * 4 * sizeof(double));
    for (int l = 0; l < p->num_layers && gdtype >= 0; l++) {
        o->bytes[l] = (size_t)(p->batch * (p->compact ? p->anchors[l] : p->layer_elems[l])) * es;
        o->g.layer[l] = malloc(o->bytes[l]);
        memset(o->g.layer[l], 0xff, o->bytes[l]);
        if (p->compact) {
            o->row_bytes[l] = (size_t)(p->n_rows[l] * (5 + p->num_classes)) * es;
            o->g.rows[l] = malloc(o->row_bytes[l] + 1);
            memset(o->g.rows[l], 0xff, o->row_bytes[l]);
        }
    }
    yl_error err;
    int rc = yl_compute(p, threads, gdtype >= 0 ? &o->g : NULL, &o->r, o->terms, &err);
    ck_assert_msg(rc == YL_OK, "compute (%s): %s", p->compact ? "compact" : "dense", err.msg);
}

static void free_run(run_out *o) {
    free(o->terms);
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(o->g.layer[l]);
        free(o->g.rows[l]);
    }
}

static int same_element(const void *a, int64_t i, const void *b, int64_t j, size_t es) {
    return memcmp((const unsigned char *)a + i * (int64_t)es,
                  (const unsigned char *)b + j * (int64_t)es, es) == 0;
}

static int same_grads(const yl_problem *p, const run_out *a, const run_out *b) {
    for (int l = 0; l < p->num_layers; l++)
        if (memcmp(a->g.layer[l], b->g.layer[l], a->bytes[l]) != 0 ||
            (a->row_bytes[l] && memcmp(a->g.rows[l], b->g.rows[l], a->row_bytes[l]) != 0))
            return 0;
    return 1;
}

/* The scalar and the AVX2 kernels: the same bytes out, both gradient dtypes. */
static void check_kernels(const yl_problem *p, const char *what) {
    yl_problem ps = *p, pv = *p;
    ps.kernel = YL_KERNEL_SCALAR;
    pv.kernel = YL_KERNEL_AVX2;
    for (int gd = 0; gd < 2; gd++) {
        run_out a, b;
        run_problem(&ps, 1, gd ? YL_F64 : YL_F32, &a);
        run_problem(&pv, 2, gd ? YL_F64 : YL_F32, &b);
        ck_assert_msg(memcmp(&a.r, &b.r, sizeof a.r) == 0 &&
                          memcmp(a.terms, b.terms, (size_t)p->batch * 4 * sizeof(double)) == 0,
                      "%s (%s): %s kernels give loss %.17g, scalar %.17g", what,
                      p->compact ? "compact" : "dense", yl_kernel_name(&pv), b.r.loss, a.r.loss);
        ck_assert_msg(same_grads(p, &a, &b), "%s (%s): %s kernels' gradient differs", what,
                      p->compact ? "compact" : "dense", yl_kernel_name(&pv));
        free_run(&a);
        free_run(&b);
    }
}

/* Compact vs dense on threads 1 and 3, fp32 and fp64 gradients and loss only; scalar vs
 * AVX2 kernels. */
static void check_identical(const yl_problem *pd, const yl_problem *pc, const char *what) {
    const int64_t stride = 5 + pd->num_classes;
    run_out f32_dense;
    run_problem(pd, 1, YL_F32, &f32_dense);
    static const int grad_dtypes[2] = {YL_F32, YL_F64};
    for (int gi = 0; gi < 2; gi++) {
        int gd = grad_dtypes[gi];
        size_t es = yl_dtype_size(gd);
        run_out d, c;
        run_problem(pd, 1, gd, &d);
        for (int threads = 1; threads <= 3; threads += 2) {
            run_problem(pc, threads, gd, &c);
            ck_assert_msg(memcmp(&d.r, &c.r, sizeof d.r) == 0,
                          "%s, %s grads, %d threads: result differs: loss dense %.17g compact %.17g",
                          what, yl_dtype_name(gd), threads, d.r.loss, c.r.loss);
            ck_assert_msg(memcmp(d.terms, c.terms, (size_t)pd->batch * 4 * sizeof(double)) == 0,
                          "%s: image terms differ", what);
            for (int l = 0; l < pd->num_layers; l++) {
                int64_t n = pd->batch * pd->anchors[l];
                /* find the first mismatch, then assert once: Check records every assertion
                 * (a write per call), far too slow per element under valgrind */
                int64_t a = 0;
                while (a < n && same_element(d.g.layer[l], a * stride + 4, c.g.layer[l], a, es))
                    a++;
                if (a < n)
                    ck_assert_msg(0,
                                  "%s, %s: layer %d anchor %lld: t_o gradient dense %.17g "
                                  "compact %.17g",
                                  what, yl_dtype_name(gd), l, (long long)a,
                                  ld(d.g.layer[l], gd, a * stride + 4), ld(c.g.layer[l], gd, a));
                for (int64_t r = 0; r < pc->n_rows[l]; r++) {
                    int64_t ra = pc->row_index[l][r];
                    int64_t q = 0;
                    while (q < stride && same_element(d.g.layer[l], ra * stride + q, c.g.rows[l],
                                                      r * stride + q, es))
                        q++;
                    if (q < stride)
                        ck_assert_msg(0,
                                      "%s, %s: layer %d row %lld (anchor %lld) channel %lld: "
                                      "dense %.17g compact %.17g",
                                      what, yl_dtype_name(gd), l, (long long)r, (long long)ra,
                                      (long long)q, ld(d.g.layer[l], gd, ra * stride + q),
                                      ld(c.g.rows[l], gd, r * stride + q));
                }
            }
            free_run(&c);
        }
        if (gd == YL_F64) /* computed in double, rounded once: (float) of fp64 is fp32 */
            for (int l = 0; l < pd->num_layers; l++)
                for (int64_t i = 0; i < pd->batch * pd->layer_elems[l]; i++) {
                    float f = (float)((double *)d.g.layer[l])[i];
                    if (memcmp(&f, (float *)f32_dense.g.layer[l] + i, 4) != 0)
                        ck_assert_msg(0,
                                  "%s: layer %d element %lld: fp64 %.17g rounds to %.9g, fp32 "
                                  "gradient is %.9g",
                                  what, l, (long long)i, ((double *)d.g.layer[l])[i], (double)f,
                                  (double)((float *)f32_dense.g.layer[l])[i]);
                }
        free_run(&d);
    }
    run_out c;
    run_problem(pc, 2, -1, &c); /* loss only */
    ck_assert_msg(memcmp(&f32_dense.r, &c.r, sizeof c.r) == 0, "%s: loss-only differs", what);
    free_run(&c);
    free_run(&f32_dense);
    check_kernels(pd, what);
    check_kernels(pc, what);
}

/* ---------------------------------------------------------------- golden cases */

static const char *golden_dir(void) {
    const char *env = getenv("YL_GOLDEN_DIR");
    return env && env[0] ? env : "tests/golden";
}

START_TEST(compact_equals_dense_on_golden_cases) {
    DIR *d = opendir(golden_dir());
    ck_assert_msg(d != NULL, "no golden directory %s", golden_dir());
    struct dirent *e;
    int done = 0;
    rng = 4242;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024], msg[600];
        snprintf(path, sizeof path, "%s/%s", golden_dir(), e->d_name);
        golden_case gc;
        ck_assert_msg(case_load(path, &gc, msg, sizeof msg) == 0, "%s", msg);
        yl_problem pd, pc;
        yl_error err;
        if (gc.is_error || yl_problem_init(&pd, &gc.cfg, gc.t_output, gc.num_layers,
                                           gc.has_boxes ? &gc.t_boxes : NULL,
                                           gc.has_boxes ? NULL : gc.t_y_true,
                                           gc.has_boxes ? 0 : gc.num_layers, &err) != YL_OK) {
            case_free(&gc);
            continue;
        }
        for (int variant = 0; variant < 2; variant++) {
            compact c;
            /* exact rows in the output's dtype; a superset with fp64 rows */
            make_compact(&pd, &c, -1, variant ? YL_F64 : -1, variant ? 0.3 : 0.0, -1, -1);
            ck_assert_msg(init_compact_like(&pc, &pd, &c, &err) == YL_OK, "%s: %s", e->d_name,
                          err.msg);
            char what[300];
            snprintf(what, sizeof what, "golden %s (%s rows)", e->d_name,
                     variant ? "superset" : "exact");
            check_identical(&pd, &pc, what);
            free_compact(&c);
        }
        case_free(&gc);
        done++;
    }
    closedir(d);
    ck_assert_int_ge(done, 15);
}
END_TEST

/* ---------------------------------------------------------------- random cases */

typedef struct {
    int anchors, B, C, T, out_dtype, ndim, truth; /* truth: -1 boxes F32, -2 boxes F64, else y_true dtype */
    int64_t gh, gw;
    double sd, thresh, soft;
} spec;

typedef struct {
    yl_config cfg;
    yl_tensor out[3], boxes, y_true[3];
    void *out_data[3], *yt_data[3];
    double *box_data;
} dense_case;

/* A dense problem per spec: logits N(0, sd), T boxes per image (two padding rows), or the
 * y_true keras would build from them, soft objectness `soft` when not 1. */
static void make_dense(const spec *s, dense_case *x, yl_problem *pd, uint64_t seed) {
    memset(x, 0, sizeof *x);
    rng = seed;
    yl_config_default(&x->cfg, s->anchors);
    x->cfg.ignore_thresh = s->thresh;
    int L = s->anchors / 3;
    int64_t stride = 5 + s->C;
    for (int l = 0; l < L; l++) {
        int64_t h = s->gh << l, w = s->gw << l, n = s->B * h * w * 3 * stride;
        x->out_data[l] = malloc((size_t)n * yl_dtype_size(s->out_dtype));
        for (int64_t i = 0; i < n; i++) {
            double v = s->sd * normal();
            if (s->out_dtype == YL_F16) /* representable: store what the dtype holds */
                v = yl_half_to_double(yl_double_to_half(v));
            else if (s->out_dtype == YL_BF16)
                v = yl_bf16_to_double(yl_double_to_bf16(v));
            else if (s->out_dtype == YL_F32)
                v = (float)v;
            st(x->out_data[l], s->out_dtype, i, v);
        }
        x->out[l] = s->ndim == 5
                        ? (yl_tensor){x->out_data[l], s->out_dtype, 5, {s->B, h, w, 3, stride}}
                        : (yl_tensor){x->out_data[l], s->out_dtype, 4, {s->B, h, w, 3 * stride}};
    }
    double in_w = 32.0 * (double)s->gw, in_h = 32.0 * (double)s->gh;
    x->box_data = calloc((size_t)(s->B * s->T * 5), sizeof(double));
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T - 2; t++) {
            double *r = x->box_data + ((size_t)b * s->T + t) * 5;
            double w = 4 + uniform() * in_w * 0.5, h = 4 + uniform() * in_h * 0.5;
            r[0] = floor(uniform() * (in_w - w));
            r[1] = floor(uniform() * (in_h - h));
            r[2] = r[0] + floor(w);
            r[3] = r[1] + floor(h);
            r[4] = floor(uniform() * s->C);
        }
    x->boxes = (yl_tensor){x->box_data, YL_F64, 3, {s->B, s->T, 5}};
    yl_error err;
    if (s->truth == -2) {
        ck_assert_msg(yl_problem_init(pd, &x->cfg, x->out, L, &x->boxes, NULL, 0, &err) == YL_OK,
                      "%s", err.msg);
        return;
    }
    if (s->truth == -1) { /* boxes as float32: round the rows (they are integers < 2^24) */
        float *f = malloc((size_t)(s->B * s->T * 5) * sizeof(float));
        for (int64_t i = 0; i < s->B * s->T * 5; i++)
            f[i] = (float)x->box_data[i];
        free(x->box_data);
        x->box_data = (double *)(void *)f;
        x->boxes.data = f;
        x->boxes.dtype = YL_F32;
        ck_assert_msg(yl_problem_init(pd, &x->cfg, x->out, L, &x->boxes, NULL, 0, &err) == YL_OK,
                      "%s", err.msg);
        return;
    }
    yl_problem pb;
    ck_assert_msg(yl_problem_init(&pb, &x->cfg, x->out, L, &x->boxes, NULL, 0, &err) == YL_OK,
                  "%s", err.msg);
    float *yt[3];
    for (int l = 0; l < L; l++)
        yt[l] = malloc((size_t)(pb.batch * pb.layer_elems[l]) * sizeof(float));
    ck_assert_int_eq(yl_boxes_to_y_true(&pb, yt, &err), YL_OK);
    for (int l = 0; l < L; l++) {
        int64_t n = pb.batch * pb.layer_elems[l];
        x->yt_data[l] = malloc((size_t)n * yl_dtype_size(s->truth));
        for (int64_t i = 0; i < n; i++) {
            double v = yt[l][i];
            if (i % stride == 4 && v != 0)
                v = s->soft;
            st(x->yt_data[l], s->truth, i, v);
        }
        x->y_true[l] = (yl_tensor){x->yt_data[l], s->truth, 5,
                                   {s->B, s->gh << l, s->gw << l, 3, stride}};
        free(yt[l]);
    }
    ck_assert_msg(yl_problem_init(pd, &x->cfg, x->out, L, NULL, x->y_true, L, &err) == YL_OK,
                  "%s", err.msg);
}

static void free_dense(dense_case *x) {
    for (int l = 0; l < 3; l++) {
        free(x->out_data[l]);
        free(x->yt_data[l]);
    }
    free(x->box_data);
}

START_TEST(compact_equals_dense_on_random_cases) {
    static const int dtypes[4] = {YL_F32, YL_F16, YL_BF16, YL_F64};
    static const int truths[6] = {-1, -2, YL_F32, YL_F16, YL_BF16, YL_F64};
    static const double threshes[4] = {0.5, 0.1, 0.7, 0.0};
    double ignored = 0;
    for (int n = 0; n < 24; n++) {
        spec s = {.anchors = n % 3 == 2 ? 6 : 9, .B = 1 + n % 3, .C = 1 + (n * 7) % 12,
                  .T = 6 + n % 5, .out_dtype = dtypes[n % 4], .ndim = 4 + n % 2,
                  .truth = truths[n % 6], .gh = 1 + n % 3, .gw = 1 + (n / 3) % 3,
                  .sd = n % 4 == 3 ? 4.0 : 1.5, .thresh = threshes[(n / 4) % 4],
                  .soft = n % 2 ? 0.75 : 1.0};
        dense_case x;
        yl_problem pd, pc;
        make_dense(&s, &x, &pd, 900 + (uint64_t)n);
        compact c;
        int box_dtype = n % 5 == 0 ? YL_F64 : -1, rows_dtype = n % 3 == 0 ? YL_F64 : -1;
        make_compact(&pd, &c, box_dtype, rows_dtype, n % 2 ? 0.25 : 0.0, -1, -1);
        yl_error err;
        ck_assert_msg(init_compact_like(&pc, &pd, &c, &err) == YL_OK, "case %d: %s", n, err.msg);
        char what[200];
        snprintf(what, sizeof what, "random case %d (%d anchors, %s, truth %d, thresh %g)", n,
                 s.anchors, yl_dtype_name(s.out_dtype), s.truth, s.thresh);
        check_identical(&pd, &pc, what);
        yl_result r;
        ck_assert_int_eq(yl_compute(&pd, 1, NULL, &r, NULL, &err), YL_OK);
        for (int l = 0; l < pd.num_layers; l++)
            ignored += r.stats[l][YL_STAT_IGNORED];
        free_compact(&c);
        free_dense(&x);
    }
    ck_assert_msg(ignored > 0, "no anchor was ignored: the near-truth path went untested");
}
END_TEST

/* 416x416 (13/26/52, tiny 13/26), C = 80, dense truths: the culling at the size users run,
 * every output dtype, boxes and dense y_true (soft objectness), exact and superset rows. */
START_TEST(compact_equals_dense_full_size) {
    static const int dtypes[6] = {YL_F16, YL_F32, YL_BF16, YL_F64, YL_F32, YL_F16};
    static const int truths[6] = {-1, YL_F16, -2, YL_BF16, YL_F64, -1};
    /* under valgrind (YL_TEST_QUICK=1, tests.mk) the first case only: it is 50x slower */
    const char *quick = getenv("YL_TEST_QUICK");
    int cases = quick && strcmp(quick, "1") == 0 ? 1 : 6;
    for (int n = 0; n < cases; n++) {
        spec s = {.anchors = n >= 4 ? 6 : 9, .B = 1 + n % 3, .C = 80, .T = 40,
                  .out_dtype = dtypes[n], .ndim = 4 + n % 2, .truth = truths[n], .gh = 13,
                  .gw = 13, .sd = 1.5, .thresh = n == 3 ? 0.3 : 0.5, .soft = n % 2 ? 0.7 : 1};
        dense_case x;
        yl_problem pd, pc;
        make_dense(&s, &x, &pd, 77 + (uint64_t)n);
        compact c;
        make_compact(&pd, &c, n == 2 ? YL_F64 : -1, n % 2 && dtypes[n] != YL_F64 ? YL_F32 : -1,
                     n % 3 ? 0.01 : 0,
                     -1, -1);
        yl_error err;
        ck_assert_msg(init_compact_like(&pc, &pd, &c, &err) == YL_OK, "%s", err.msg);
        ck_assert_int_gt(c.n_truth_rows, 15 * s.B);
        char what[160];
        snprintf(what, sizeof what, "416x416 case %d (%d anchors, %s, truth %d)", n, s.anchors,
                 yl_dtype_name(s.out_dtype), s.truth);
        check_identical(&pd, &pc, what);
        free_compact(&c);
        free_dense(&x);
    }
}
END_TEST

/* ---------------------------------------------------------------- errors */

static void small_case(dense_case *x, yl_problem *pd) {
    spec s = {.anchors = 9, .B = 3, .C = 4, .T = 8, .out_dtype = YL_F32, .ndim = 4,
              .truth = -2, .gh = 2, .gw = 3, .sd = 1.0, .thresh = 0.5, .soft = 1};
    make_dense(&s, x, pd, 5);
}

START_TEST(missing_truth_row_is_named) {
    dense_case x;
    yl_problem pd, pc;
    small_case(&x, &pd);
    int tested = 0;
    for (int l = 0; l < pd.num_layers; l++) {
        compact full;
        make_compact(&pd, &full, YL_F32, YL_F32, 0, -1, -1);
        int64_t truths = full.layer[l].rows.shape[0];
        for (int64_t drop = 0; drop < truths; drop += 3) {
            compact c;
            make_compact(&pd, &c, YL_F32, YL_F32, 0, l, drop);
            int64_t want = full.index[l][drop], A = pd.anchors[l];
            int64_t b = want / A, a = want % A, cell = a / 3;
            yl_error err;
            ck_assert_int_eq(init_compact_like(&pc, &pd, &c, &err), YL_OK);
            yl_result r;
            ck_assert_int_eq(yl_compute(&pc, 2, NULL, &r, NULL, &err), YL_ENOROW);
            char msg[256], name[24];
            snprintf(name, sizeof name, "output_%d_rows", l);
            snprintf(msg, sizeof msg,
                     "%s: no row for the truth anchor of image %lld, layer %d, cell (y %lld, x "
                     "%lld), anchor %lld (index %lld)",
                     name, (long long)b, l, (long long)(cell / pd.grid_w[l]),
                     (long long)(cell % pd.grid_w[l]), (long long)(a % 3), (long long)want);
            ck_assert_str_eq(err.msg, msg);
            ck_assert_str_eq(err.tensor, name);
            ck_assert_int_eq(err.image, b);
            ck_assert_int_eq(err.index, want);
            ck_assert_str_eq(yl_strerror(YL_ENOROW), "missing compact row");
            ck_assert_str_eq(yl_err_name(YL_ENOROW), "YL_ENOROW");
            free_compact(&c);
            tested++;
        }
        free_compact(&full);
    }
    ck_assert_int_ge(tested, 3);
    free_dense(&x);
}
END_TEST

static void expect_init_error(const yl_problem *pd, compact *c, int code, const char *tensor,
                              const char *substr) {
    yl_problem pc;
    yl_error err;
    memset(&err, 0, sizeof err);
    int rc = init_compact_like(&pc, pd, c, &err);
    ck_assert_msg(rc == code, "want %s, got %s (%s)", yl_err_name(code), yl_err_name(rc), err.msg);
    ck_assert_str_eq(err.tensor, tensor);
    ck_assert_msg(strstr(err.msg, substr) != NULL, "'%s' does not contain '%s'", err.msg, substr);
}

START_TEST(bad_compact_inputs_are_refused) {
    dense_case x;
    yl_problem pd;
    small_case(&x, &pd);
    compact c;
    make_compact(&pd, &c, YL_F32, YL_F32, 0.5, -1, -1);
    ck_assert_int_gt(c.layer[1].rows.shape[0], 8);
    int64_t keep = c.index[1][7];
    c.index[1][7] = c.index[1][6];
    expect_init_error(&pd, &c, YL_EINVAL, "output_1_index", "output_1_index[7]");
    c.index[1][7] = c.index[1][6] - 1;
    expect_init_error(&pd, &c, YL_EINVAL, "output_1_index", "strictly increasing");
    c.index[1][7] = keep;
    int64_t last = c.layer[2].rows.shape[0] - 1, keep2 = c.index[2][last];
    c.index[2][last] = pd.batch * pd.anchors[2];
    expect_init_error(&pd, &c, YL_EINVAL, "output_2_index", "is outside [0,");
    c.index[2][last] = keep2;
    keep = c.index[0][0];
    c.index[0][0] = -1;
    expect_init_error(&pd, &c, YL_EINVAL, "output_0_index", "output_0_index[0]");
    c.index[0][0] = keep;
    c.layer[0].index = NULL;
    expect_init_error(&pd, &c, YL_EINVAL, "output_0_index", "NULL");
    c.layer[0].index = c.index[0];
    c.layer[1].box.shape[4] = 6;
    expect_init_error(&pd, &c, YL_ESHAPE, "output_1_box", "(B, H, W, 3, 5)");
    c.layer[1].box.shape[4] = 5;
    c.layer[2].rows.shape[1] = 10;
    expect_init_error(&pd, &c, YL_ESHAPE, "output_2_box", "channels");
    c.layer[2].rows.shape[1] = 9;
    c.layer[0].rows.ndim = 3;
    expect_init_error(&pd, &c, YL_ESHAPE, "output_0_rows", "(N, 5+C)");
    c.layer[0].rows.ndim = 2;
    c.layer[1].box.shape[1] = 3;
    expect_init_error(&pd, &c, YL_ESHAPE, "output_1_box", "grid");
    c.layer[1].box.shape[1] = 4;
    c.layer[0].rows.dtype = 9;
    expect_init_error(&pd, &c, YL_EDTYPE, "output_0_rows", "dtype");
    c.layer[0].rows.dtype = YL_F32;

    /* a valid problem: bad gradient buffers and non-finite values at compute */
    yl_problem pc;
    yl_error err;
    ck_assert_int_eq(init_compact_like(&pc, &pd, &c, &err), YL_OK);
    yl_result r;
    run_out o;
    run_problem(&pc, 1, YL_F32, &o);
    void *keep_rows = o.g.rows[1];
    o.g.rows[1] = NULL;
    ck_assert_int_eq(yl_compute(&pc, 1, &o.g, &r, NULL, &err), YL_EINVAL);
    ck_assert_msg(strstr(err.msg, "rows[1] is NULL") != NULL, "%s", err.msg);
    o.g.rows[1] = keep_rows;
    o.g.dtype = YL_F16;
    ck_assert_int_eq(yl_compute(&pc, 1, &o.g, &r, NULL, &err), YL_EDTYPE);
    ck_assert_str_eq(err.tensor, "grads");
    free_run(&o);

    float *rows1 = c.rows[1];
    int64_t stride = 5 + pd.num_classes, r5 = 5;
    float keepf = rows1[r5 * stride + 6];
    rows1[r5 * stride + 6] = NAN;
    ck_assert_int_eq(yl_compute(&pc, 1, NULL, &r, NULL, &err), YL_ENONFINITE);
    char want[64];
    snprintf(want, sizeof want, "output_1_rows[5][6] is NaN");
    ck_assert_str_eq(err.msg, want);
    ck_assert_int_eq(err.image, c.index[1][5] / pd.anchors[1]);
    rows1[r5 * stride + 6] = keepf;
    float *box0 = c.box[0];
    box0[2 * 5 + 3] = INFINITY; /* image 0, cell (0, 0), anchor 2, t_h */
    for (int kernel = YL_KERNEL_SCALAR; kernel <= YL_KERNEL_AVX2; kernel++) {
        pc.kernel = kernel;
        ck_assert_int_eq(yl_compute(&pc, 1, NULL, &r, NULL, &err), YL_ENONFINITE);
        ck_assert_str_eq(err.msg, "output_0_box[0][0][0][2][3] is +Inf");
    }
    free_compact(&c);

    /* no rows at all is a valid layout (N = 0, data NULL) but a truth needs its row */
    make_compact(&pd, &c, YL_F32, YL_F32, 0, -1, -1);
    for (int l = 0; l < pd.num_layers; l++) {
        c.layer[l].rows.shape[0] = 0;
        c.layer[l].rows.data = NULL;
    }
    ck_assert_int_eq(init_compact_like(&pc, &pd, &c, &err), YL_OK);
    ck_assert_int_eq(yl_compute(&pc, 1, NULL, &r, NULL, &err), YL_ENOROW);
    free_compact(&c);
    free_dense(&x);
}
END_TEST

/* A single NaN or Inf anywhere, in every dtype: both kernels' scans find that element. */
START_TEST(both_kernels_find_every_nonfinite) {
    static const int dtypes[4] = {YL_F32, YL_F16, YL_BF16, YL_F64};
    static const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int d = 0; d < 4; d++) {
        spec s = {.anchors = 9, .B = 2, .C = 7, .T = 6, .out_dtype = dtypes[d], .ndim = 4,
                  .truth = -2, .gh = 2, .gw = 3, .sd = 1.0, .thresh = 0.5, .soft = 1};
        dense_case x;
        yl_problem pd;
        make_dense(&s, &x, &pd, 300 + (uint64_t)d);
        for (int n = 0; n < 40; n++) {
            int l = n % 3;
            int64_t count = pd.batch * pd.layer_elems[l];
            int64_t at = n < 3 ? (n == 0 ? 0 : count - 1) : (int64_t)(uniform() * (double)count);
            double keep = ld(x.out_data[l], dtypes[d], at);
            st(x.out_data[l], dtypes[d], at, bad[n % 3]);
            for (int kernel = YL_KERNEL_SCALAR; kernel <= YL_KERNEL_AVX2; kernel++) {
                pd.kernel = kernel;
                yl_result r;
                yl_error err;
                ck_assert_int_eq(yl_compute(&pd, 2, NULL, &r, NULL, &err), YL_ENONFINITE);
                char name[16];
                snprintf(name, sizeof name, "output_%d", l);
                ck_assert_msg(err.index == at && strcmp(err.tensor, name) == 0,
                              "%s, kernel %d: element %lld of %s, reported %s %lld (%s)",
                              yl_dtype_name(dtypes[d]), kernel, (long long)at, name,
                              err.tensor, (long long)err.index, err.msg);
            }
            st(x.out_data[l], dtypes[d], at, keep);
        }
        free_dense(&x);
    }
}
END_TEST

Suite *compact_suite(void) {
    Suite *s = suite_create("compact");
    TCase *t = tcase_create("compact");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, compact_equals_dense_on_golden_cases);
    tcase_add_test(t, compact_equals_dense_on_random_cases);
    tcase_add_test(t, compact_equals_dense_full_size);
    tcase_add_test(t, missing_truth_row_is_named);
    tcase_add_test(t, bad_compact_inputs_are_refused);
    tcase_add_test(t, both_kernels_find_every_nonfinite);
    suite_add_tcase(s, t);
    return s;
}
