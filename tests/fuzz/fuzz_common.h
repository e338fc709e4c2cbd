/* Shared by the libFuzzer targets of the core (tests/fuzz/core_*.c): a reader over the fuzz
 * input, value tables, element stores, and the invariants every call must keep.
 *
 * Every check aborts with a message (libFuzzer then saves the input as a crash). The
 * invariants are only what the API promises (core/yololoss.h, docs/semantics.md):
 *   - a return code is YL_OK or one of YL_ERRNO_MAP; err->code equals it;
 *   - err->msg and err->tensor are NUL-terminated, msg is non-empty, names err->tensor
 *     when that is non-empty, and tensor is one of the documented names;
 *   - on error no result (yl_result, image terms) is written;
 *   - 1 thread and 2 threads, loss-only and with gradients: bit-identical results, same
 *     error; the gradient is fully written on success (two differently pre-filled buffers
 *     come out identical).
 */
#ifndef YL_FUZZ_COMMON_H
#define YL_FUZZ_COMMON_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yololoss.h"

#define YLF_FAIL(...)                                                              \
    do {                                                                           \
        fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: ", __FILE__, __LINE__);   \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, "\n");                                                     \
        abort();                                                                   \
    } while (0)

#define YLF_CHECK(cond, ...)                                                       \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "\ncheck failed: %s\n", #cond);                       \
            YLF_FAIL(__VA_ARGS__);                                                 \
        }                                                                          \
    } while (0)

/* Known core bugs (reported, with their regression inputs crash-* in the corpus) stop
 * every run at once. To fuzz past them for other bugs, set YLF_TOLERATE_KNOWN=1 in the
 * environment (`YLF_TOLERATE_KNOWN=1 make fuzz`): each YLF_KNOWN(condition) then excuses
 * exactly that case. Remove a YLF_KNOWN when its bug is fixed. */
static inline int ylf_tolerate_known(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("YLF_TOLERATE_KNOWN");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}
#define YLF_KNOWN(cond) (ylf_tolerate_known() && (cond))

/* ------------------------------------------------------------------ input reader */

typedef struct {
    const uint8_t *d;
    size_t n, pos;
} ylf_reader;

static inline size_t ylf_left(const ylf_reader *r) { return r->n - r->pos; }

static inline uint8_t ylf_u8(ylf_reader *r) { return r->pos < r->n ? r->d[r->pos++] : 0; }

static inline uint64_t ylf_bytes_le(ylf_reader *r, int k) {
    uint64_t v = 0;
    for (int i = 0; i < k; i++)
        v |= (uint64_t)ylf_u8(r) << (8 * i);
    return v;
}

static inline double ylf_raw_f64(ylf_reader *r) {
    uint64_t u = ylf_bytes_le(r, 8);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static inline float ylf_raw_f32(ylf_reader *r) {
    uint32_t u = (uint32_t)ylf_bytes_le(r, 4);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Special values: boundaries of every dtype, of exp/log, of the grid and of IoU. */
static const double ylf_specials[] = {
    0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 10.0, 100.0, 416.0, 1000.0, 1e6,
    1e30, -1e30, 3.4028234663852886e38, -3.4028234663852886e38, 3.5e38, 1e300, -1e300,
    DBL_MAX, -DBL_MAX, 1e-30, 1.401298464324817e-45, 1e-40, 5e-324, 1e-300, 1.1754943508222875e-38,
    88.0, 89.0, 709.0, 710.0, -88.0, -89.0, -709.0, -710.0, 745.0, -745.0, 36.0, -36.0,
    NAN, -NAN, INFINITY, -INFINITY, 0.25, 0.75, 0.9999999, 1.0000001, 2.0000001,
    65504.0, 65520.0, 65536.0, 0.49999999999999994, 0.5000000000000001, 1e-6, -1e-6,
    16777216.0, 16777217.0, 4294967296.0, 9007199254740993.0, 0.1, 0.9, 13.0, 26.0, 52.0,
};
#define YLF_NSPECIAL ((int)(sizeof ylf_specials / sizeof ylf_specials[0]))

/* One byte to a value: mostly small multiples of 1/8 in [-8, 8), sometimes a special. */
static inline double ylf_value(uint8_t b) {
    if (b < 160)
        return ((double)b - 80.0) / 8.0;
    return ylf_specials[(b - 160) % YLF_NSPECIAL];
}

/* ------------------------------------------------------------------ elements */

static inline double ylf_load(const void *base, int dtype, int64_t i) {
    const unsigned char *p = base;
    switch (dtype) {
    case YL_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return (double)f;
    }
    case YL_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return yl_half_to_double(h);
    }
    case YL_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return yl_bf16_to_double(h);
    }
    default: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return d;
    }
    }
}

/* Store v in dtype (rounded as the dtype's conversion does; out-of-range values become
 * +-inf, as IEEE says and the C standard leaves undefined, so clamp first). */
static inline void ylf_store(void *base, int dtype, int64_t i, double v) {
    unsigned char *p = base;
    switch (dtype) {
    case YL_F32: {
        float f = isnan(v) ? NAN
                  : v > FLT_MAX ? (v >= 3.4028235677973366e38 ? INFINITY : FLT_MAX)
                  : v < -FLT_MAX ? (v <= -3.4028235677973366e38 ? -INFINITY : -FLT_MAX)
                                 : (float)v;
        memcpy(p + 4 * i, &f, 4);
        break;
    }
    case YL_F16: {
        uint16_t h = yl_double_to_half(v);
        memcpy(p + 2 * i, &h, 2);
        break;
    }
    case YL_BF16: {
        double c = isnan(v) ? v : v > FLT_MAX ? INFINITY : v < -FLT_MAX ? -INFINITY : v;
        uint16_t h = yl_double_to_bf16(c);
        memcpy(p + 2 * i, &h, 2);
        break;
    }
    default:
        memcpy(p + 8 * i, &v, 8);
        break;
    }
}

/* Deterministic small-value generator (for tensors larger than the fuzz input). */
static inline double ylf_prng(uint64_t *s, double scale) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(*s >> 11) * 0x1.0p-53 * 2.0 - 1.0) * scale;
}

/* ------------------------------------------------------------------ invariants */

static inline int ylf_known_code(int rc) {
    switch (rc) {
    case YL_OK:
#define YLF__CASE(name, code, text) case YL_##name:
        YL_ERRNO_MAP(YLF__CASE)
#undef YLF__CASE
        return 1;
    }
    return 0;
}

static inline int ylf_known_tensor(const char *t) {
    static const char *const names[] = {
        "",         "output_0", "output_1",      "output_2",      "y_true_0",
        "y_true_1", "y_true_2", "boxes",         "anchors",       "ignore_thresh",
        "grads",    "output_0_box", "output_1_box", "output_2_box", "output_0_rows",
        "output_1_rows", "output_2_rows", "output_0_index", "output_1_index",
        "output_2_index"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(t, names[i]) == 0)
            return 1;
    return 0;
}

/* Pre-fill an error so that a field left unwritten shows. */
static inline void ylf_err_poison(yl_error *e) { memset(e, 0xa5, sizeof *e); }

/* The promises of a return code and its yl_error; batch < 0 when unknown. */
static inline void ylf_check_err(const char *call, int rc, const yl_error *e, int64_t batch) {
    YLF_CHECK(ylf_known_code(rc), "%s returned %d, not in the error table", call, rc);
    YLF_CHECK(strcmp(yl_err_name(rc), "YL_UNKNOWN") != 0 &&
                  strcmp(yl_strerror(rc), "unknown error") != 0,
              "%s: code %d has no name", call, rc);
    if (rc == YL_OK)
        return;
    YLF_CHECK(e->code == rc, "%s returned %d but err.code is %d", call, rc, e->code);
    YLF_CHECK(memchr(e->msg, 0, sizeof e->msg) != NULL, "%s: err.msg not NUL-terminated", call);
    YLF_CHECK(memchr(e->tensor, 0, sizeof e->tensor) != NULL,
              "%s: err.tensor not NUL-terminated", call);
    YLF_CHECK(e->msg[0] != 0, "%s: %s with an empty message", call, yl_err_name(rc));
    YLF_CHECK(ylf_known_tensor(e->tensor), "%s: err.tensor \"%s\" is not a documented name",
              call, e->tensor);
    YLF_CHECK(e->tensor[0] == 0 || strstr(e->msg, e->tensor) != NULL,
              "%s: %s: message \"%s\" does not name its tensor \"%s\"", call, yl_err_name(rc),
              e->msg, e->tensor);
    YLF_CHECK(e->image >= -1 && e->index >= -1, "%s: image %lld, index %lld", call,
              (long long)e->image, (long long)e->index);
    YLF_CHECK(batch < 0 || e->image < batch, "%s: image %lld outside the batch of %lld", call,
              (long long)e->image, (long long)batch);
}

static inline int ylf_same_err(const yl_error *a, const yl_error *b) {
    return a->code == b->code && strcmp(a->tensor, b->tensor) == 0 && a->image == b->image &&
           a->index == b->index && strcmp(a->msg, b->msg) == 0;
}

/* YLF_VERBOSE=1 in the environment: say what each call returned (to read a seed). */
static inline int ylf_verbose(void) {
    static int v = -1;
    if (v < 0)
        v = getenv("YLF_VERBOSE") != NULL;
    return v;
}

static inline void ylf_say(const char *what, int rc, const yl_error *e) {
    if (!ylf_verbose())
        return;
    if (rc == YL_OK)
        fprintf(stderr, "%s: YL_OK\n", what);
    else
        fprintf(stderr, "%s: %s [%s] image %lld index %lld: %s\n", what, yl_err_name(rc),
                e->tensor, (long long)e->image, (long long)e->index, e->msg);
}

/* The result of one way of computing a problem. */
typedef struct {
    int rc;
    yl_error err;
    yl_result r;
    double *terms;    /* B*4 */
    float *grad[YL_MAX_LAYERS];
} ylf_run;

static inline void ylf_run_free(ylf_run *x) {
    free(x->terms);
    for (int l = 0; l < YL_MAX_LAYERS; l++)
        free(x->grad[l]);
    memset(x, 0, sizeof *x);
}

/* yl_compute on nthreads, gradients pre-filled with `fill` (or loss only when fill < 0). */
static inline void ylf_compute(const yl_problem *p, int nthreads, int fill, ylf_run *x) {
    memset(x, 0, sizeof *x);
    x->terms = malloc((size_t)p->batch * 4 * sizeof(double));
    YLF_CHECK(x->terms, "oom");
    memset(x->terms, 0x5a, (size_t)p->batch * 4 * sizeof(double));
    if (fill >= 0)
        for (int l = 0; l < p->num_layers; l++) {
            size_t bytes = (size_t)(p->layer_elems[l] * p->batch) * sizeof(float);
            x->grad[l] = malloc(bytes ? bytes : 1);
            YLF_CHECK(x->grad[l], "oom");
            memset(x->grad[l], fill, bytes);
        }
    memset(&x->r, 0x5a, sizeof x->r);
    ylf_err_poison(&x->err);
    yl_grads g = {.dtype = YL_F32};
    for (int l = 0; l < p->num_layers; l++)
        g.layer[l] = x->grad[l];
    x->rc = yl_compute(p, nthreads, fill >= 0 ? &g : NULL, &x->r, x->terms, &x->err);
    ylf_check_err("yl_compute", x->rc, &x->err, p->batch);
    if (x->rc != YL_OK) {
        /* "On error no result is written" */
        unsigned char pat[sizeof x->r];
        memset(pat, 0x5a, sizeof pat);
        YLF_CHECK(memcmp(&x->r, pat, sizeof pat) == 0, "yl_compute wrote a result on error %s",
                  yl_err_name(x->rc));
        for (int64_t i = 0; i < p->batch * 4; i++) {
            uint64_t u;
            memcpy(&u, &x->terms[i], 8);
            YLF_CHECK(u == 0x5a5a5a5a5a5a5a5aull, "yl_compute wrote image terms on error");
        }
    }
}

static inline int ylf_same_result(const yl_problem *p, const ylf_run *a, const ylf_run *b) {
    if (a->rc != b->rc)
        return 0;
    if (a->rc != YL_OK)
        return ylf_same_err(&a->err, &b->err);
    return memcmp(&a->r, &b->r, sizeof a->r) == 0 &&
           memcmp(a->terms, b->terms, (size_t)p->batch * 4 * sizeof(double)) == 0;
}

static inline void ylf_describe(const char *what, const ylf_run *x) {
    if (x->rc != YL_OK)
        fprintf(stderr, "  %s: %s (%s) image %lld index %lld: %s\n", what, yl_err_name(x->rc),
                x->err.tensor, (long long)x->err.image, (long long)x->err.index, x->err.msg);
    else
        fprintf(stderr, "  %s: loss %.17g = %.17g + %.17g + %.17g + %.17g\n", what, x->r.loss,
                x->r.terms[0], x->r.terms[1], x->r.terms[2], x->r.terms[3]);
}

/* The sums a result must be made of, exactly as documented (loss = sum of terms, terms =
 * sums of layer terms in layer order), and the ranges of the statistics. */
static inline void ylf_check_result(const yl_problem *p, const yl_result *r) {
    YLF_CHECK(r->num_layers == p->num_layers, "num_layers %d", r->num_layers);
    double t[4] = {0, 0, 0, 0};
    for (int l = 0; l < p->num_layers; l++)
        for (int q = 0; q < 4; q++)
            t[q] += r->layer_terms[l][q];
    for (int q = 0; q < 4; q++)
        YLF_CHECK(memcmp(&t[q], &r->terms[q], 8) == 0 || (isnan(t[q]) && isnan(r->terms[q])),
                  "terms[%d] %.17g is not the sum of its layer terms %.17g", q, r->terms[q], t[q]);
    double loss = r->terms[0] + r->terms[1] + r->terms[2] + r->terms[3];
    YLF_CHECK(memcmp(&loss, &r->loss, 8) == 0 || (isnan(loss) && isnan(r->loss)),
              "loss %.17g is not the sum of the terms %.17g", r->loss, loss);
    for (int l = 0; l < p->num_layers; l++) {
        const double *st = r->stats[l];
        double anchors = (double)(p->batch * p->grid_h[l] * p->grid_w[l] * 3);
        YLF_CHECK(st[YL_STAT_COUNT] >= 0 && st[YL_STAT_COUNT] <= anchors &&
                      st[YL_STAT_COUNT] == floor(st[YL_STAT_COUNT]),
                  "layer %d count %g of %g anchors", l, st[YL_STAT_COUNT], anchors);
        YLF_CHECK(st[YL_STAT_IGNORED] >= 0 &&
                      st[YL_STAT_IGNORED] <= anchors - st[YL_STAT_COUNT] &&
                      st[YL_STAT_IGNORED] == floor(st[YL_STAT_IGNORED]),
                  "layer %d ignored %g with count %g of %g anchors", l, st[YL_STAT_IGNORED],
                  st[YL_STAT_COUNT], anchors);
        /* means of sigmoids and shares: exactly within [0, 1] (a rounded sum of n values
         * <= 1 is <= n); an IoU of a box with itself may round an ulp above 1 */
        static const int unit[] = {YL_STAT_AVG_CLASS, YL_STAT_AVG_OBJ, YL_STAT_AVG_NOOBJ,
                                   YL_STAT_RECALL50, YL_STAT_RECALL75};
        for (int k = 0; k < 5; k++)
            YLF_CHECK(st[unit[k]] >= 0 && st[unit[k]] <= 1, "layer %d stat %d is %.17g", l,
                      unit[k], st[unit[k]]);
        YLF_CHECK(st[YL_STAT_AVG_IOU] >= 0 && st[YL_STAT_AVG_IOU] <= 1 + 1e-12,
                  "layer %d avg_iou is %.17g", l, st[YL_STAT_AVG_IOU]);
        YLF_CHECK(st[YL_STAT_RECALL75] <= st[YL_STAT_RECALL50], "layer %d recall75 > recall50", l);
        if (st[YL_STAT_COUNT] == 0)
            YLF_CHECK(st[YL_STAT_AVG_IOU] == 0 && st[YL_STAT_AVG_OBJ] == 0 &&
                          st[YL_STAT_AVG_CLASS] == 0 && st[YL_STAT_RECALL50] == 0,
                      "layer %d: averages over no truths are not 0", l);
    }
}

/* Compute p four ways (1 and 2 threads; loss only and with gradients) and check they agree
 * bit for bit. The gradient run of 1 thread is left in *out (caller frees). */
static inline void ylf_compute_all(const yl_problem *p, ylf_run *out) {
    ylf_run lo1, lo2, g2;
    ylf_compute(p, 0, -1, &lo1); /* "<= 0: 1" */
    ylf_compute(p, 2, -1, &lo2);
    ylf_compute(p, 1, 0x00, out);
    ylf_compute(p, 2, 0xff, &g2); /* 0xffffffff is a NaN: unwritten elements show */
    if (!ylf_same_result(p, &lo1, &lo2) || !ylf_same_result(p, &lo1, out) ||
        !ylf_same_result(p, out, &g2)) {
        ylf_describe("loss only, 0 threads", &lo1);
        ylf_describe("loss only, 2 threads", &lo2);
        ylf_describe("gradient, 1 thread  ", out);
        ylf_describe("gradient, 2 threads ", &g2);
        YLF_FAIL("thread counts or gradient/loss-only runs disagree");
    }
    if (ylf_verbose())
        ylf_describe("yl_compute", out);
    if (out->rc == YL_OK) {
        for (int l = 0; l < p->num_layers; l++)
            YLF_CHECK(memcmp(out->grad[l], g2.grad[l],
                             (size_t)(p->layer_elems[l] * p->batch) * sizeof(float)) == 0,
                      "gradient of layer %d differs between 1 and 2 threads (or is not fully "
                      "written)", l);
        ylf_check_result(p, &out->r);
    }
    ylf_run_free(&lo1);
    ylf_run_free(&lo2);
    ylf_run_free(&g2);
}

/* A problem's statistics count must equal the anchors with nonzero objectness in y_true. */
static inline int64_t ylf_count_truths(const float *y, int64_t elems, int64_t stride) {
    int64_t n = 0;
    for (int64_t i = 4; i < elems; i += stride)
        n += y[i] != 0;
    return n;
}

/* yl_boxes_to_y_true for a box problem, then the same batch through the dense path: the
 * result must be the same bits (docs: the box path equals the dense path fed with
 * yl_boxes_to_y_true's output). `boxrun` is the box path's gradient run. */
static inline void ylf_check_roundtrip(const yl_problem *p, const yl_tensor *outputs,
                                       const ylf_run *boxrun) {
    int L = p->num_layers, C = p->num_classes;
    float *yt[YL_MAX_LAYERS] = {0};
    for (int l = 0; l < L; l++) {
        size_t n = (size_t)(p->layer_elems[l] * p->batch);
        yt[l] = malloc(n * sizeof(float));
        YLF_CHECK(yt[l], "oom");
        memset(yt[l], 0xff, n * sizeof(float)); /* NaN everywhere: "fully overwritten" */
    }
    yl_error err;
    ylf_err_poison(&err);
    int rc = yl_boxes_to_y_true(p, yt, &err);
    ylf_check_err("yl_boxes_to_y_true", rc, &err, p->batch);
    if (rc != YL_OK) {
        /* the same rows are checked by yl_compute; it may stop earlier on an output of a
         * lower image, never later, and a box error must be this very one */
        YLF_CHECK(boxrun->rc != YL_OK, "yl_boxes_to_y_true failed (%s) where yl_compute "
                  "succeeded", err.msg);
        YLF_CHECK(boxrun->err.image <= err.image,
                  "yl_compute reports image %lld, yl_boxes_to_y_true image %lld",
                  (long long)boxrun->err.image, (long long)err.image);
        if (strcmp(boxrun->err.tensor, "boxes") == 0)
            YLF_CHECK(ylf_same_err(&boxrun->err, &err),
                      "box errors differ: yl_compute \"%s\", yl_boxes_to_y_true \"%s\"",
                      boxrun->err.msg, err.msg);
        YLF_CHECK(strcmp(err.tensor, "boxes") == 0 || err.code == YL_ENOMEM,
                  "yl_boxes_to_y_true error names %s", err.tensor);
        goto out;
    }
    YLF_CHECK(strcmp(boxrun->err.tensor, "boxes") != 0 || boxrun->rc == YL_OK,
              "yl_compute reports a box error (%s) that yl_boxes_to_y_true does not",
              boxrun->err.msg);
    {
        /* shape and content of what was written */
        int64_t stride = 5 + C;
        for (int l = 0; l < L; l++) {
            int64_t n = p->layer_elems[l] * p->batch;
            for (int64_t a = 0; a < n; a += stride) {
                const float *row = yt[l] + a;
                if (row[4] == 0) {
                    for (int64_t c = 0; c < stride; c++)
                        YLF_CHECK(row[c] == 0 && !signbit(row[c]),
                                  "y_true_%d element %lld: %g in a row without objectness", l,
                                  (long long)(a + c), (double)row[c]);
                    continue;
                }
                YLF_CHECK(row[4] == 1, "y_true_%d objectness %g", l, (double)row[4]);
                YLF_CHECK(isfinite(row[2]) && row[2] > 0 && isfinite(row[3]) && row[3] > 0,
                          "y_true_%d: a truth of size %g x %g", l, (double)row[2],
                          (double)row[3]);
                YLF_CHECK(row[0] >= 0 && row[0] < 1 && row[1] >= 0 && row[1] < 1,
                          "y_true_%d centre (%g, %g) outside [0, 1)", l, (double)row[0],
                          (double)row[1]);
                int ones = 0;
                for (int c = 0; c < C; c++) {
                    YLF_CHECK(row[5 + c] == 0 || row[5 + c] == 1, "y_true_%d class target %g",
                              l, (double)row[5 + c]);
                    ones += row[5 + c] == 1;
                }
                YLF_CHECK(ones >= 1, "y_true_%d: a truth without a class", l);
                /* the cell of the centre is the cell the row is in */
                int64_t anchor = (a / stride) % (p->grid_h[l] * p->grid_w[l] * 3);
                int64_t cell = anchor / 3, i = cell % p->grid_w[l], j = cell / p->grid_w[l];
                YLF_CHECK((int64_t)floor((double)row[0] * (double)p->grid_w[l]) == i &&
                              (int64_t)floor((double)row[1] * (double)p->grid_h[l]) == j,
                          "y_true_%d: centre (%g, %g) not in its cell (%lld, %lld)", l,
                          (double)row[0], (double)row[1], (long long)i, (long long)j);
            }
        }
    }
    {
        yl_tensor dense[YL_MAX_LAYERS];
        for (int l = 0; l < L; l++)
            dense[l] = (yl_tensor){yt[l], YL_F32, 5,
                                   {p->batch, p->grid_h[l], p->grid_w[l], 3, 5 + C}};
        yl_problem q;
        ylf_err_poison(&err);
        rc = yl_problem_init(&q, &p->cfg, outputs, L, NULL, dense, L, &err);
        ylf_check_err("yl_problem_init(dense from boxes)", rc, &err, p->batch);
        YLF_CHECK(rc == YL_OK, "the dense y_true built from boxes is refused: %s", err.msg);
        ylf_run d;
        ylf_compute(&q, 1, 0x00, &d);
        if (d.rc != boxrun->rc ||
            (d.rc == YL_OK && memcmp(&d.r, &boxrun->r, sizeof d.r) != 0) ||
            (d.rc != YL_OK && !ylf_same_err(&d.err, &boxrun->err))) {
            ylf_describe("box path  ", boxrun);
            ylf_describe("dense path", &d);
            YLF_FAIL("the box path and the dense path of yl_boxes_to_y_true's output differ");
        }
        if (d.rc == YL_OK) {
            for (int l = 0; l < L; l++) {
                int64_t n = p->layer_elems[l] * p->batch;
                YLF_CHECK(memcmp(d.grad[l], boxrun->grad[l], (size_t)n * sizeof(float)) == 0,
                          "gradient of layer %d differs between box and dense paths", l);
                int64_t count = ylf_count_truths(yt[l], n, 5 + C);
                YLF_CHECK((double)count == d.r.stats[l][YL_STAT_COUNT],
                          "layer %d: count %g, y_true has %lld truths", l,
                          d.r.stats[l][YL_STAT_COUNT], (long long)count);
            }
        }
        ylf_run_free(&d);
    }
out:
    for (int l = 0; l < L; l++)
        free(yt[l]);
}

#endif
