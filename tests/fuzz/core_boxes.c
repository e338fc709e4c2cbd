/* libFuzzer target: the box list (keras-yolo3's preprocess_true_boxes and its policy).
 *
 * A small fixed-shape batch with finite raw outputs; the fuzz input is mostly the box
 * rows, FP32 or FP64, with NaN, Inf, negative, huge and fractional values and padding
 * rows anywhere. Every call must either fail with the error of the first bad row
 * (lowest image, then lowest row: code, err.image = b, err.index = t, a message that
 * starts "boxes[b][t]: ") as docs/semantics.md's policy defines it, or succeed; then:
 *   - 1/2 threads, loss only/gradients agree bit for bit (fuzz_common.h);
 *   - yl_boxes_to_y_true's dense y_true, fed back through the dense path, gives the same
 *     bits (result and gradient), and the truths it holds are well formed;
 *   - the same rows with the padding moved to the end, or as FP64 when they were FP32,
 *     give the same bits.
 *
 * Layout: cfg byte (bit 0 tiny; bits 1-2 ignore_thresh 0.5 / ylf_value / byte/128 /
 * raw fp64; bit 3 boxes FP64; bits 4-5 outputs zeros / PRNG / PRNG of a scale / a byte
 * each; bit 6 outputs FP16), size byte (B = 1 + b%3, H0 = 1 + (b/3)%3, W0 = 1 + (b/9)%3),
 * classes byte (C = 1 + b%5, T = 1 + (b/5)%16), then per row a kind byte (%4 == 0:
 * padding) and five value bytes: < 96 a whole pixel (-10% .. 110% of the input), < 128
 * a half pixel, < 192 ylf_specials[b - 128], else raw FP32/FP64 bits; a class byte < 96
 * is b % (C + 1). Then the output PRNG seed (4 bytes), scale byte (mode 2 only) and, for
 * mode 3, one byte per output value.
 */
#include "fuzz_common.h"

/* IEEE double to float (overflow to +-inf), without relying on the conversion. */
static float to_f32(double v) {
    if (v > FLT_MAX)
        return v >= 3.4028235677973366e38 ? INFINITY : FLT_MAX;
    if (v < -FLT_MAX)
        return v <= -3.4028235677973366e38 ? -INFINITY : -FLT_MAX;
    return (float)v;
}

static double box_value(ylf_reader *r, int field, int C, double input_dim, int f64) {
    uint8_t s = ylf_u8(r);
    if (field == 4 && s < 96)
        return (double)(s % (C + 1));
    if (s < 96) /* a whole pixel, -10% .. 110% of the input */
        return floor(((double)s - 8.0) * input_dim / 80.0);
    if (s < 128) /* a half pixel, -17% .. 115% */
        return floor(((double)s - 100.0) * input_dim / 24.0) + 0.5;
    if (s < 128 + YLF_NSPECIAL)
        return ylf_specials[s - 128];
    return f64 ? ylf_raw_f64(r) : (double)ylf_raw_f32(r);
}

/* The policy, independently: the first bad row of the batch, or none. */
typedef struct {
    int code;
    int64_t b, t;
} expect;

static expect first_bad_row(const yl_tensor *bx, int C, double in_w, double in_h) {
    int64_t B = bx->shape[0], T = bx->shape[1];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            double v[5];
            for (int c = 0; c < 5; c++)
                v[c] = ylf_load(bx->data, bx->dtype, (b * T + t) * 5 + c);
            for (int c = 0; c < 5; c++)
                if (!isfinite(v[c]))
                    return (expect){YL_ENONFINITE, b, t};
            float x0 = to_f32(v[0]), y0 = to_f32(v[1]), x1 = to_f32(v[2]), y1 = to_f32(v[3]);
            float w = x1 - x0, h = y1 - y0;
            if (!(w > 0))
                continue; /* padding: only the width is tested */
            if (!(h > 0))
                return (expect){YL_EBOX, b, t};
            if (v[4] != floor(v[4]) || v[4] < 0 || v[4] >= C)
                return (expect){YL_ECLASS, b, t};
            float cx = floorf((x0 + x1) / 2.0f), cy = floorf((y0 + y1) / 2.0f);
            if (!(cx >= 0 && cx < in_w && cy >= 0 && cy < in_h))
                return (expect){YL_EBOX, b, t};
            /* a size float32 cannot hold, or that normalises to 0 (keras: log(0)) */
            float nw = (float)((double)w / in_w), nh = (float)((double)h / in_h);
            if (!(isfinite(nw) && nw > 0 && isfinite(nh) && nh > 0))
                return (expect){YL_EBOX, b, t};
        }
    return (expect){YL_OK, -1, -1};
}

static int is_padding(const yl_tensor *bx, int64_t row) {
    float x0 = to_f32(ylf_load(bx->data, bx->dtype, row * 5));
    float x1 = to_f32(ylf_load(bx->data, bx->dtype, row * 5 + 2));
    float w = x1 - x0;
    return !(w > 0);
}

/* Compute the same problem with other boxes; must give the same bits as `ref`. */
static void same_as(const yl_problem *p, const yl_tensor *outputs, const yl_tensor *bx,
                    const ylf_run *ref, const char *what) {
    yl_problem q;
    yl_error err;
    int rc = yl_problem_init(&q, &p->cfg, outputs, p->num_layers, bx, NULL, 0, &err);
    YLF_CHECK(rc == YL_OK, "%s: refused: %s", what, err.msg);
    ylf_run x;
    ylf_compute(&q, 1, 0x00, &x);
    if (x.rc != ref->rc || (x.rc == YL_OK && memcmp(&x.r, &ref->r, sizeof x.r) != 0) ||
        (x.rc != YL_OK && !ylf_same_err(&x.err, &ref->err))) {
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
    uint8_t cb = ylf_u8(r), sb = ylf_u8(r), kb = ylf_u8(r);
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
    int L = (cb & 1) ? 2 : 3, f64 = (cb >> 3) & 1, omode = (cb >> 4) & 3;
    int odt = (cb & 64) ? YL_F16 : YL_F32;
    int64_t B = 1 + sb % 3, H0 = 1 + (sb / 3) % 3, W0 = 1 + (sb / 9) % 3;
    int C = 1 + kb % 5;
    int64_t T = 1 + (kb / 5) % 16;
    double in_w = 32.0 * (double)W0, in_h = 32.0 * (double)H0;

    /* boxes */
    int bdt = f64 ? YL_F64 : YL_F32;
    void *bdata = malloc((size_t)(B * T * 5) * yl_dtype_size(bdt));
    for (int64_t row = 0; row < B * T; row++) {
        int pad = ylf_u8(r) % 4 == 0;
        for (int c = 0; c < 5; c++) {
            double v = pad ? 0 : box_value(r, c, C, (c & 1) ? in_h : in_w, f64);
            if (f64)
                ylf_store(bdata, YL_F64, row * 5 + c, v);
            else {
                float f = to_f32(v);
                memcpy((char *)bdata + 4 * (row * 5 + c), &f, 4);
            }
        }
    }
    yl_tensor bx = {bdata, bdt, 3, {B, T, 5}};

    /* outputs: finite, so that every error is a box error */
    yl_tensor out[3];
    void *odata[3] = {0};
    uint64_t seed = ylf_bytes_le(r, 4);
    double scale = omode == 2 ? fabs(ylf_value(ylf_u8(r))) : 2.0;
    if (!isfinite(scale))
        scale = 1e30;
    for (int l = 0; l < L; l++) {
        int64_t n = B * (H0 << l) * (W0 << l) * 3 * (5 + C);
        odata[l] = calloc((size_t)n, yl_dtype_size(odt));
        for (int64_t i = 0; omode && i < n; i++) {
            double v = omode == 3 ? ylf_value(ylf_u8(r)) : ylf_prng(&seed, scale);
            if (odt == YL_F16 && !(fabs(v) < 65504))
                v = v > 0 ? 65504 : -65504;
            if (!isfinite(v) || fabs(v) > FLT_MAX)
                v = 0;
            ylf_store(odata[l], odt, i, v);
        }
        out[l] = (yl_tensor){odata[l], odt, 4, {B, H0 << l, W0 << l, 3 * (5 + C)}};
    }

    yl_problem p;
    yl_error err;
    ylf_err_poison(&err);
    int rc = yl_problem_init(&p, &cfg, out, L, &bx, NULL, 0, &err);
    ylf_check_err("yl_problem_init", rc, &err, -1);
    ylf_say("yl_problem_init", rc, &err);
    if (rc != YL_OK) {
        YLF_CHECK(!isfinite(cfg.ignore_thresh) && rc == YL_EINVAL &&
                      strcmp(err.tensor, "ignore_thresh") == 0,
                  "a well-shaped box batch refused: %s", err.msg);
        goto out;
    }

    expect want = first_bad_row(&bx, C, in_w, in_h);
    ylf_run run;
    ylf_compute_all(&p, &run);
    if (run.rc != want.code || (want.code != YL_OK && (run.err.image != want.b ||
                                                       run.err.index != want.t))) {
        ylf_describe("yl_compute", &run);
        YLF_FAIL("expected %s at boxes[%lld][%lld]", yl_err_name(want.code), (long long)want.b,
                 (long long)want.t);
    }
    if (run.rc != YL_OK) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "boxes[%lld][%lld]: ", (long long)want.b,
                 (long long)want.t);
        YLF_CHECK(strcmp(run.err.tensor, "boxes") == 0 &&
                      strncmp(run.err.msg, prefix, strlen(prefix)) == 0,
                  "error \"%s\" (tensor %s) does not start with \"%s\"", run.err.msg,
                  run.err.tensor, prefix);
    }
    ylf_check_roundtrip(&p, out, &run);

    if (run.rc == YL_OK) {
        /* padding moved to the end of each image's list */
        size_t es = yl_dtype_size(bdt);
        unsigned char *moved = calloc((size_t)(B * T * 5), es);
        int any = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t k = 0;
            for (int64_t t = 0; t < T; t++)
                if (!is_padding(&bx, b * T + t)) {
                    any |= k != t;
                    memcpy(moved + (size_t)((b * T + k++) * 5) * es,
                           (unsigned char *)bdata + (size_t)((b * T + t) * 5) * es, 5 * es);
                }
        }
        yl_tensor mb = {moved, bdt, 3, {B, T, 5}};
        if (any)
            same_as(&p, out, &mb, &run, "moving the padding rows to the end");
        free(moved);
    }
    if (!f64) {
        /* FP32 rows as FP64: keras converts to float32 first, so nothing changes */
        double *wide = malloc((size_t)(B * T * 5) * sizeof(double));
        for (int64_t i = 0; i < B * T * 5; i++)
            wide[i] = ylf_load(bdata, YL_F32, i);
        yl_tensor wb = {wide, YL_F64, 3, {B, T, 5}};
        same_as(&p, out, &wb, &run, "the same rows as FP64");
        free(wide);
    }
    ylf_run_free(&run);

out:
    for (int l = 0; l < L; l++)
        free(odata[l]);
    free(bdata);
    return 0;
}
