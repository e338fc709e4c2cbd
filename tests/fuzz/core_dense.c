/* libFuzzer target: dense y_true (FP16, BF16, FP32, FP64; 4-D or 5-D).
 *
 * A small fixed-shape batch with finite raw outputs; the fuzz input is the y_true rows:
 * soft and negative objectness, zero and negative widths, centres anywhere, soft and
 * multi-hot class targets, NaN/Inf, raw bit patterns. Every call must either fail with
 * the error the policy defines for the first bad value (lowest image, then layer, then:
 * the first non-finite element of that image's slice, else the first row with nonzero
 * objectness and width or height <= 0; err.index the flat element, a message that starts
 * with the tensor name and its multi-index), or succeed; then:
 *   - 1/2 threads, loss only/gradients agree bit for bit (fuzz_common.h);
 *   - the count statistic is the number of rows with nonzero objectness;
 *   - the same values as FP64 (the conversion is exact), the other layout (4-D/5-D), and
 *     the outputs as FP64 give the same bits (and the same error).
 *
 * Layout: cfg byte (bit 0 tiny; bits 1-2 ignore_thresh 0.5 / ylf_value / byte/128 /
 * raw fp64; bits 3-4 y_true dtype; bit 5 one dtype byte per layer follows; bit 6 5-D;
 * bit 7 PRNG outputs), size byte (B = 1 + b%2, H0 = 1 + (b/2)%2, W0 = 1 + (b/4)%2,
 * C = 1 + (b/8)%3, outputs dtype (b/24)%3: FP32, FP16, BF16), PRNG seed (4 bytes) and
 * scale byte, then per anchor row a kind byte: < 128 zeros, 255 raw bytes of the dtype,
 * else objectness, x, y, w, h and C class bytes (see row()).
 */
#include "fuzz_common.h"

static double obj_value(uint8_t b) {
    static const double t[] = {1, 1, 1, 0.5, 0.9, 1e-7, -1, 2, 0, 0.9999, 1e30, -0.0};
    return b < 192 ? t[b % 12] : ylf_value(b);
}

static double xy_value(uint8_t b) { return b < 200 ? b / 200.0 : ylf_value(b); }

static double wh_value(uint8_t b) { return b < 200 ? b / 100.0 : ylf_value(b); }

static double class_value(uint8_t b) {
    static const double t[] = {0, 1, 0, 0.9, 0.1, 1, -1, 2};
    return b < 192 ? t[b % 8] : ylf_value(b);
}

static void row(ylf_reader *r, void *data, int dtype, int64_t off, int C) {
    uint8_t kind = ylf_u8(r);
    if (kind < 128) {
        for (int c = 0; c < 5 + C; c++)
            ylf_store(data, dtype, off + c, 0);
        return;
    }
    if (kind == 255) {
        size_t es = yl_dtype_size(dtype);
        for (size_t k = 0; k < (size_t)(5 + C) * es; k++)
            ((unsigned char *)data)[(size_t)off * es + k] = ylf_u8(r);
        return;
    }
    ylf_store(data, dtype, off + 4, obj_value(ylf_u8(r)));
    ylf_store(data, dtype, off + 0, xy_value(ylf_u8(r)));
    ylf_store(data, dtype, off + 1, xy_value(ylf_u8(r)));
    ylf_store(data, dtype, off + 2, wh_value(ylf_u8(r)));
    ylf_store(data, dtype, off + 3, wh_value(ylf_u8(r)));
    for (int c = 0; c < C; c++)
        ylf_store(data, dtype, off + 5 + c, class_value(ylf_u8(r)));
}

typedef struct {
    int code;
    int layer;
    int64_t b, index;
} expect;

/* The policy, independently. */
static expect first_bad(const yl_problem *p, const yl_tensor *yt) {
    int64_t stride = 5 + p->num_classes;
    for (int64_t b = 0; b < p->batch; b++)
        for (int l = 0; l < p->num_layers; l++) {
            int64_t per = p->layer_elems[l], first = b * per;
            for (int64_t i = 0; i < per; i++)
                if (!isfinite(ylf_load(yt[l].data, yt[l].dtype, first + i)))
                    return (expect){YL_ENONFINITE, l, b, first + i};
            for (int64_t a = 0; a < per; a += stride) {
                int64_t off = first + a;
                double obj = ylf_load(yt[l].data, yt[l].dtype, off + 4);
                double w = ylf_load(yt[l].data, yt[l].dtype, off + 2);
                double h = ylf_load(yt[l].data, yt[l].dtype, off + 3);
                if (obj != 0 && !(w > 0 && h > 0))
                    return (expect){YL_EBOX, l, b, off + 4};
            }
        }
    return (expect){YL_OK, -1, -1, -1};
}

/* "y_true_1[0][3][2][1][4]" for flat element `flat` of t. */
static void name_index(int l, const yl_tensor *t, int64_t flat, char *buf, size_t n) {
    int64_t idx[YL_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
    size_t used = (size_t)snprintf(buf, n, "y_true_%d", l);
    for (int d = 0; d < t->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "[%lld]", (long long)idx[d]);
}

/* The same batch another way: same bits, same error (the message too, unless the layout
 * changed and with it the printed index). */
static void same_as(const yl_problem *p, const yl_tensor *out, const yl_tensor *yt,
                    const ylf_run *ref, int same_msg, const char *what) {
    yl_problem q;
    yl_error err;
    int rc = yl_problem_init(&q, &p->cfg, out, p->num_layers, NULL, yt, p->num_layers, &err);
    YLF_CHECK(rc == YL_OK, "%s: refused: %s", what, err.msg);
    ylf_run x;
    ylf_compute(&q, 1, 0x00, &x);
    int same = x.rc == ref->rc;
    if (same && x.rc == YL_OK)
        same = memcmp(&x.r, &ref->r, sizeof x.r) == 0;
    else if (same)
        same = same_msg ? ylf_same_err(&x.err, &ref->err)
                        : x.err.code == ref->err.code && x.err.image == ref->err.image &&
                              x.err.index == ref->err.index &&
                              strcmp(x.err.tensor, ref->err.tensor) == 0;
    if (!same) {
        ylf_describe("original", ref);
        ylf_describe(what, &x);
        YLF_FAIL("%s changes the result", what);
    }
    if (x.rc == YL_OK)
        for (int l = 0; l < p->num_layers; l++)
            YLF_CHECK(memcmp(x.grad[l], ref->grad[l],
                             (size_t)(p->layer_elems[l] * p->batch) * sizeof(float)) == 0,
                      "%s changes the gradient of layer %d", what, l);
    ylf_run_free(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ylf_reader rd = {data, size, 0}, *r = &rd;
    uint8_t cb = ylf_u8(r), sb = ylf_u8(r);
    yl_config cfg;
    yl_config_default(&cfg, (cb & 1) ? 6 : 9);
    switch ((cb >> 1) & 3) {
    case 1:
        cfg.ignore_thresh = ylf_value(ylf_u8(r));
        break;
    case 2:
        cfg.ignore_thresh = ylf_u8(r) / 128.0;
        break;
    case 3:
        cfg.ignore_thresh = ylf_raw_f64(r);
        break;
    }
    int L = (cb & 1) ? 2 : 3, five = (cb >> 6) & 1;
    int ydt[3];
    for (int l = 0; l < 3; l++)
        ydt[l] = (cb >> 3) & 3;
    if (cb & 32)
        for (int l = 0; l < L; l++)
            ydt[l] = ylf_u8(r) & 3;
    static const int out_dtypes[3] = {YL_F32, YL_F16, YL_BF16};
    int odt = out_dtypes[(sb / 24) % 3];
    int64_t B = 1 + sb % 2, H0 = 1 + (sb / 2) % 2, W0 = 1 + (sb / 4) % 2;
    int C = 1 + (sb / 8) % 3;
    uint64_t seed = ylf_bytes_le(r, 4);
    double scale = fabs(ylf_value(ylf_u8(r)));
    if (!(scale <= 60000))
        scale = 60000;

    yl_tensor out[3], yt[3];
    void *odata[3] = {0}, *ydata[3] = {0};
    for (int l = 0; l < L; l++) {
        int64_t h = H0 << l, w = W0 << l, n = B * h * w * 3 * (5 + C);
        odata[l] = calloc((size_t)n, yl_dtype_size(odt));
        if (cb & 128)
            for (int64_t i = 0; i < n; i++)
                ylf_store(odata[l], odt, i, ylf_prng(&seed, scale));
        out[l] = (yl_tensor){odata[l], odt, 4, {B, h, w, 3 * (5 + C)}};
        ydata[l] = malloc((size_t)n * yl_dtype_size(ydt[l]));
        for (int64_t a = 0; a < n; a += 5 + C)
            row(r, ydata[l], ydt[l], a, C);
        yt[l] = five ? (yl_tensor){ydata[l], ydt[l], 5, {B, h, w, 3, 5 + C}}
                     : (yl_tensor){ydata[l], ydt[l], 4, {B, h, w, 3 * (5 + C)}};
    }

    yl_problem p;
    yl_error err;
    ylf_err_poison(&err);
    int rc = yl_problem_init(&p, &cfg, out, L, NULL, yt, L, &err);
    ylf_check_err("yl_problem_init", rc, &err, -1);
    ylf_say("yl_problem_init", rc, &err);
    if (rc != YL_OK) {
        YLF_CHECK(!isfinite(cfg.ignore_thresh) && rc == YL_EINVAL &&
                      strcmp(err.tensor, "ignore_thresh") == 0,
                  "a well-shaped dense batch refused: %s", err.msg);
        goto out;
    }
    expect want = first_bad(&p, yt);

    ylf_run run;
    ylf_compute_all(&p, &run);
    if (run.rc != want.code ||
        (want.code != YL_OK && (run.err.image != want.b || run.err.index != want.index))) {
        ylf_describe("yl_compute", &run);
        YLF_FAIL("expected %s at y_true_%d image %lld element %lld", yl_err_name(want.code),
                 want.layer, (long long)want.b, (long long)want.index);
    }
    if (run.rc != YL_OK) {
        char prefix[96], tname[16];
        name_index(want.layer, &yt[want.layer], want.index, prefix, sizeof prefix);
        snprintf(tname, sizeof tname, "y_true_%d", want.layer);
        YLF_CHECK(strcmp(run.err.tensor, tname) == 0 &&
                      strncmp(run.err.msg, prefix, strlen(prefix)) == 0,
                  "error \"%s\" (tensor %s) does not start with \"%s\"", run.err.msg,
                  run.err.tensor, prefix);
    } else {
        int tame = 1;
        for (int l = 0; l < L; l++) {
            int64_t n = p.layer_elems[l] * B, count = 0;
            for (int64_t i = 0; i < n; i++) {
                double v = fabs(ylf_load(yt[l].data, yt[l].dtype, i));
                if (v > 1e4 || (v != 0 && v < 1e-4))
                    tame = 0;
                if (i % (5 + C) == 4)
                    count += v != 0;
            }
            YLF_CHECK((double)count == run.r.stats[l][YL_STAT_COUNT],
                      "layer %d: count %g, y_true has %lld nonzero objectness", l,
                      run.r.stats[l][YL_STAT_COUNT], (long long)count);
        }
        if (tame) {
            for (int q = 0; q < 4; q++)
                YLF_CHECK(isfinite(run.r.terms[q]), "moderate inputs, term %d is %g", q,
                          run.r.terms[q]);
            for (int l = 0; l < L; l++)
                for (int64_t i = 0; i < p.layer_elems[l] * B; i++)
                    YLF_CHECK(!isnan(run.grad[l][i]), "moderate inputs, gradient NaN");
        }
    }

    {
        /* the same values as FP64, and in the other layout */
        yl_tensor wide[3], other[3], owide[3];
        void *wdata[3] = {0}, *owdata[3] = {0};
        for (int l = 0; l < L; l++) {
            int64_t n = p.layer_elems[l] * B;
            wdata[l] = malloc((size_t)n * sizeof(double));
            owdata[l] = malloc((size_t)n * sizeof(double));
            for (int64_t i = 0; i < n; i++) {
                ((double *)wdata[l])[i] = ylf_load(yt[l].data, yt[l].dtype, i);
                ((double *)owdata[l])[i] = ylf_load(out[l].data, out[l].dtype, i);
            }
            wide[l] = yt[l];
            wide[l].data = wdata[l];
            wide[l].dtype = YL_F64;
            owide[l] = out[l];
            owide[l].data = owdata[l];
            owide[l].dtype = YL_F64;
            other[l] = five ? (yl_tensor){ydata[l], ydt[l], 4,
                                          {B, p.grid_h[l], p.grid_w[l], 3 * (5 + C)}}
                            : (yl_tensor){ydata[l], ydt[l], 5,
                                          {B, p.grid_h[l], p.grid_w[l], 3, 5 + C}};
        }
        if (ydt[0] != YL_F64 || ydt[1] != YL_F64 || (L == 3 && ydt[2] != YL_F64))
            same_as(&p, out, wide, &run, 1, "y_true as FP64");
        same_as(&p, out, other, &run, 0, "y_true in the other layout");
        same_as(&p, owide, yt, &run, 1, "the outputs as FP64");
        for (int l = 0; l < L; l++) {
            free(wdata[l]);
            free(owdata[l]);
        }
    }
    ylf_run_free(&run);

out:
    for (int l = 0; l < L; l++) {
        free(odata[l]);
        free(ydata[l]);
    }
    return 0;
}
