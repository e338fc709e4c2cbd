/* libFuzzer target: a whole call of the core, described by the fuzz input.
 *
 * The input chooses the config (anchor count and values, ignore_thresh), every tensor's
 * dtype, ndim and dims (mostly a consistent batch, then a few perturbations that can make
 * any of them zero, negative, huge or inconsistent), boxes or y_true (or both, or neither),
 * and finally the values. yl_problem_init must either refuse with a well-formed error or
 * accept; an accepted problem whose data fit in YLF_CAP bytes is computed four ways
 * (1/2 threads, with/without gradients, which must agree bit for bit), a box problem also
 * through yl_boxes_to_y_true and the dense path (same bits again). A problem accepted with
 * shapes too large to allocate is not computed: its tensors point at a 1-byte buffer, so
 * a validator that read data would trip AddressSanitizer.
 *
 * Layout (all optional: a short input reads as zeros):
 *   flags  bits 0-1 anchors (0,1: 9; 2: 6; 3: next byte as a signed count)
 *          bit 2 custom anchor values (18 bytes, ylf_value each)
 *          bits 3-4 ignore_thresh (0.5 / ylf_value(byte) / raw fp64 / byte/128)
 *          bit 5 boxes (else y_true)   bit 6 odd ground-truth call (next byte)
 *          bit 7 n_outputs = L + signed byte
 *   sizes  B = 1 + b%3, H0 = 1 + b%4, W0 = 1 + (b/4)%4, C = 1 + (b/16)%4; then T = 1 + b%8
 *   layout bit l: output_l is 5-D; bit 3+l: y_true_l is 5-D
 *   dtypes bits 0-1 outputs, 2-3 y_true, 4 boxes FP64, 5 per-output dtypes follow
 *   perturbations: count (b&7, > 4 means none), then (tensor, field, value) each:
 *          tensor byte %8 (outputs 0-3, y_true 4-6, boxes 7), field byte %8 (0 dtype,
 *          1 ndim: a signed byte; 2-6 dim 0-4: a dim_table byte, or >= 200 and an int64;
 *          7 data NULL)
 *   values: per tensor a mode byte (raw bytes, one byte per value, PRNG, sparse) and data;
 *   whatever is left: a string for yl_dtype_from_name.
 */
#include "fuzz_common.h"

#define YLF_CAP (4u << 20) /* bytes of tensor data at most */

static const int64_t dim_table[] = {
    0, -1, 1, 2, 3, 4, 5, 6, 7, 8, 13, 15, 16, 17, 18, 19, 26, 32, 52, 64, 255, 256, 85,
    INT64_C(1) << 20, (INT64_C(1) << 20) + 1, INT64_C(1) << 21, INT64_C(1) << 31,
    INT64_C(1) << 32, INT32_MAX, (int64_t)INT32_MAX + 1, (int64_t)INT32_MAX + 5,
    (int64_t)INT32_MAX + 6, 3 * ((int64_t)INT32_MAX + 6), INT64_C(1) << 40, INT64_C(1) << 62,
    INT64_MAX, INT64_MIN, -(INT64_C(1) << 62), INT64_MAX / 3, INT64_MAX / 4 + 1,
    (int64_t)(SIZE_MAX / 16), (int64_t)(SIZE_MAX / 16) + 1, 1000003,
};
#define NDIM_TABLE ((int)(sizeof dim_table / sizeof dim_table[0]))

static int64_t read_dim(ylf_reader *r) {
    uint8_t v = ylf_u8(r);
    if (v < 200)
        return dim_table[v % NDIM_TABLE];
    return (int64_t)ylf_bytes_le(r, 8);
}

/* Bytes of t's data, or 0 when the shape is invalid or the data would exceed the cap. */
static size_t data_bytes(const yl_tensor *t) {
    size_t es = yl_dtype_size(t->dtype);
    if (!es || t->ndim < 1 || t->ndim > YL_MAX_DIMS)
        return 0;
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] <= 0 || (uint64_t)t->shape[d] > YLF_CAP)
            return 0;
        n *= (uint64_t)t->shape[d];
        if (n * es > YLF_CAP)
            return 0;
    }
    return (size_t)(n * es);
}

typedef struct {
    int tame; /* all values finite and moderate: the loss must come out finite */
} fill_info;

/* Fill n elements of t. */
static void fill(ylf_reader *r, void *data, int dtype, int64_t n, int64_t row, int is_truth,
                 double tame_max, double tame_min, fill_info *fi) {
    uint8_t mode = ylf_u8(r) & 3;
    size_t es = yl_dtype_size(dtype);
    if (mode == 0) { /* raw bytes, zeros after the input ends */
        size_t bytes = (size_t)n * es, k = ylf_left(r) < bytes ? ylf_left(r) : bytes;
        memcpy(data, r->d + r->pos, k);
        r->pos += k;
        memset((unsigned char *)data + k, 0, bytes - k);
    } else if (mode == 1) { /* one byte per value */
        for (int64_t i = 0; i < n; i++)
            ylf_store(data, dtype, i, ylf_value(ylf_u8(r)));
    } else if (mode == 2) { /* PRNG values of a chosen scale */
        uint64_t seed = ylf_bytes_le(r, 4);
        double scale = fabs(ylf_value(ylf_u8(r)));
        for (int64_t i = 0; i < n; i++)
            ylf_store(data, dtype, i, ylf_prng(&seed, scale));
    } else { /* sparse rows: a byte per row of `row` values, most rows zero */
        for (int64_t i = 0; i < n; i += row) {
            uint8_t b = ylf_u8(r);
            for (int64_t k = 0; k < row && i + k < n; k++) {
                double v = 0;
                if (b >= 192) {
                    v = ylf_value(ylf_u8(r));
                    if (is_truth && k == 4)
                        v = 1;
                    else if (is_truth && (k == 2 || k == 3))
                        v = fabs(v) + 0.125;
                }
                ylf_store(data, dtype, i + k, v);
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        double v = fabs(ylf_load(data, dtype, i));
        if (!(v <= tame_max) || (v != 0 && v < tame_min))
            fi->tame = 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ylf_reader rd = {data, size, 0}, *r = &rd;
    uint8_t flags = ylf_u8(r);

    yl_config cfg;
    int na = (flags & 3) == 2 ? 6 : 9;
    yl_config_default(&cfg, na);
    if ((flags & 3) == 3)
        cfg.num_anchors = (int8_t)ylf_u8(r);
    int tame_cfg = 1;
    if (flags & 4)
        for (int n = 0; n < 18; n++) {
            cfg.anchors[n] = ylf_value(ylf_u8(r));
            if (!(cfg.anchors[n] >= 0.01 && cfg.anchors[n] <= 1e4))
                tame_cfg = 0;
        }
    switch ((flags >> 3) & 3) {
    case 1:
        cfg.ignore_thresh = ylf_value(ylf_u8(r));
        break;
    case 2:
        cfg.ignore_thresh = ylf_raw_f64(r);
        break;
    case 3:
        cfg.ignore_thresh = ylf_u8(r) / 128.0;
        break;
    }
    int use_boxes = (flags >> 5) & 1;
    int odd_gt = (flags & 64) ? ylf_u8(r) % 5 : -1;
    int odd_gt_n = odd_gt == 2 ? (int8_t)ylf_u8(r) : 0;
    int L = cfg.num_anchors == 6 ? 2 : 3;
    int n_outputs = (flags & 128) ? L + (int8_t)ylf_u8(r) : L;

    uint8_t sz = ylf_u8(r), sz2 = ylf_u8(r);
    int64_t B = 1 + sz % 3, H0 = 1 + sz2 % 4, W0 = 1 + (sz2 / 4) % 4, C = 1 + (sz2 / 16) % 4;
    int64_t T = 1 + ylf_u8(r) % 8;
    uint8_t layout = ylf_u8(r), dt = ylf_u8(r);

    /* tensors 0..3 outputs (the 4th only for a wrong n_outputs), 4..6 y_true, 7 boxes */
    yl_tensor t[8];
    memset(t, 0, sizeof t);
    for (int k = 0; k < 4; k++) {
        int l = k < 3 ? k : 2;
        int64_t h = H0 << l, w = W0 << l;
        int five = (layout >> l) & 1;
        t[k] = five ? (yl_tensor){NULL, dt & 3, 5, {B, h, w, 3, 5 + C}}
                    : (yl_tensor){NULL, dt & 3, 4, {B, h, w, 3 * (5 + C)}};
        if (k < 3) {
            int yfive = (layout >> (3 + l)) & 1;
            t[4 + k] = yfive ? (yl_tensor){NULL, (dt >> 2) & 3, 5, {B, h, w, 3, 5 + C}}
                             : (yl_tensor){NULL, (dt >> 2) & 3, 4, {B, h, w, 3 * (5 + C)}};
        }
    }
    if (dt & 32)
        for (int k = 0; k < 3; k++)
            t[k].dtype = ylf_u8(r) & 3;
    t[7] = (yl_tensor){NULL, (dt & 16) ? YL_F64 : YL_F32, 3, {B, T, 5}};

    int null_data[8] = {0};
    uint8_t np = ylf_u8(r) & 7;
    for (int q = 0; q < (np <= 4 ? np : 0); q++) {
        int k = ylf_u8(r) % 8, field = ylf_u8(r) % 8;
        if (field == 0)
            t[k].dtype = (int8_t)ylf_u8(r);
        else if (field == 1)
            t[k].ndim = (int8_t)ylf_u8(r);
        else if (field < 7)
            t[k].shape[field - 2] = read_dim(r);
        else
            null_data[k] = 1;
    }

    /* data: real buffers where the shape is valid and small, else a 1-byte decoy */
    unsigned char *decoy = malloc(1);
    void *buf[8] = {0};
    int real[8] = {0};
    fill_info fi = {.tame = tame_cfg};
    for (int k = 0; k < 8; k++) {
        int used = k < 4 ? k < n_outputs : k < 7 ? !use_boxes : use_boxes;
        if (odd_gt == 0 || odd_gt == 2)
            used = used || (k >= 4 && k < 7) || k == 7;
        size_t bytes = used ? data_bytes(&t[k]) : 0;
        if (bytes) {
            buf[k] = malloc(bytes);
            real[k] = 1;
            int64_t n = (int64_t)(bytes / yl_dtype_size(t[k].dtype));
            int64_t row = t[k].ndim >= 1 ? t[k].shape[t[k].ndim - 1] : 1;
            if (k >= 4 && k < 7 && t[k].ndim == 4)
                row = t[k].shape[3] / 3 > 0 ? t[k].shape[3] / 3 : 1;
            double tmax = k < 4 ? (t[k].dtype == YL_F64 ? 1e30 : INFINITY) : k < 7 ? 1e4 : 1e5;
            double tmin = k < 4 ? 0 : k < 7 ? 1e-4 : 1e-3;
            fill(r, buf[k], t[k].dtype, n, row, k >= 4 && k < 7, tmax, tmin, &fi);
            t[k].data = buf[k];
        } else {
            t[k].data = decoy;
        }
        if (null_data[k])
            t[k].data = NULL;
    }

    const yl_tensor *boxes = use_boxes ? &t[7] : NULL;
    const yl_tensor *y_true = use_boxes ? NULL : &t[4];
    int n_y_true = use_boxes ? 0 : L;
    switch (odd_gt) {
    case 0: /* both */
        boxes = &t[7];
        y_true = &t[4];
        n_y_true = L;
        break;
    case 1: /* neither */
        boxes = NULL;
        y_true = NULL;
        n_y_true = 0;
        break;
    case 2: /* y_true with a wrong count */
        boxes = NULL;
        y_true = &t[4];
        n_y_true = odd_gt_n;
        break;
    case 3: /* y_true NULL with a count */
        boxes = NULL;
        y_true = NULL;
        n_y_true = L;
        break;
    case 4: /* boxes, and a y_true pointer with count 0 */
        boxes = &t[7];
        y_true = &t[4];
        n_y_true = 0;
        break;
    }

    /* the rest of the input, as a wire dtype name */
    {
        char name[16];
        size_t k = ylf_left(r) < sizeof name - 1 ? ylf_left(r) : sizeof name - 1;
        memcpy(name, r->d + r->pos, k);
        name[k] = 0;
        int d = yl_dtype_from_name(name);
        YLF_CHECK(d == -1 || (yl_dtype_name(d) && strcmp(yl_dtype_name(d), name) == 0 &&
                              yl_dtype_size(d) > 0),
                  "yl_dtype_from_name(\"%s\") = %d", name, d);
        yl_config c2;
        int crc = yl_config_default(&c2, cfg.num_anchors);
        YLF_CHECK(crc == ((cfg.num_anchors == 9 || cfg.num_anchors == 6) ? YL_OK : YL_EINVAL),
                  "yl_config_default(%d) = %d", cfg.num_anchors, crc);
    }

    yl_problem p;
    yl_error err;
    memset(&p, 0x5a, sizeof p);
    ylf_err_poison(&err);
    int rc = yl_problem_init(&p, &cfg, t, n_outputs, boxes, y_true, n_y_true, &err);
    ylf_check_err("yl_problem_init", rc, &err, -1);
    ylf_say("yl_problem_init", rc, &err);
    /* NULL arguments */
    YLF_CHECK(yl_problem_init(NULL, &cfg, t, n_outputs, boxes, y_true, n_y_true, NULL) ==
                  YL_EINVAL, "NULL problem accepted");
    if (rc != YL_OK)
        goto out;

    YLF_CHECK(p.num_layers == L && n_outputs == L, "num_layers %d for %d anchors, %d outputs",
              p.num_layers, cfg.num_anchors, n_outputs);
    YLF_CHECK(p.num_classes >= 1 && p.batch >= 1, "C %d, B %lld", p.num_classes,
              (long long)p.batch);
    YLF_CHECK(yl_scratch_size(&p) == p.scratch_size, "scratch size");
    for (int l = 0; l < L; l++)
        YLF_CHECK(p.grid_h[l] == p.grid_h[0] << l && p.grid_w[l] == p.grid_w[0] << l &&
                      p.layer_elems[l] == p.grid_h[l] * p.grid_w[l] * 3 * (5 + p.num_classes),
                  "layer %d: grid %lldx%lld, %lld elements", l, (long long)p.grid_h[l],
                  (long long)p.grid_w[l], (long long)p.layer_elems[l]);
    YLF_CHECK(p.has_boxes == (boxes != NULL), "has_boxes %d", p.has_boxes);

    /* only problems whose every tensor we really allocated are computed */
    int computable = 1;
    for (int l = 0; l < L; l++)
        computable &= real[l] && (p.has_boxes || real[4 + l]);
    computable &= !p.has_boxes || real[7];
    if (!computable) {
        if (ylf_verbose())
            fprintf(stderr, "not computed: a tensor is larger than the fuzzer allocates\n");
        goto out;
    }

    {
        yl_image_result img;
        void *scratch = malloc(p.scratch_size ? p.scratch_size : 1);
        ylf_err_poison(&err);
        int irc = yl_image(&p, p.batch, scratch, NULL, &img, &err);
        ylf_check_err("yl_image", irc, &err, -1);
        YLF_CHECK(irc == YL_EINVAL, "yl_image accepted image %lld of %lld", (long long)p.batch,
                  (long long)p.batch);
        irc = yl_image(&p, -1, scratch, NULL, &img, NULL);
        YLF_CHECK(irc == YL_EINVAL, "yl_image accepted image -1");
        free(scratch);
    }

    ylf_run run;
    ylf_compute_all(&p, &run);
    if (run.rc == YL_OK) {
        if (fi.tame) {
            for (int q = 0; q < 4; q++)
                YLF_CHECK(isfinite(run.r.terms[q]),
                          "moderate finite inputs, term %d is %g", q, run.r.terms[q]);
            for (int l = 0; l < L; l++) {
                int64_t n = p.layer_elems[l] * p.batch;
                for (int64_t i = 0; i < n; i++)
                    YLF_CHECK(!isnan(run.grad[l][i]), "moderate inputs, gradient %d[%lld] NaN",
                              l, (long long)i);
            }
        }
        if (!p.has_boxes)
            for (int l = 0; l < L; l++) {
                int64_t n = 0, rows = p.batch * p.grid_h[l] * p.grid_w[l] * 3;
                for (int64_t a = 0; a < rows; a++)
                    n += ylf_load(p.y_true[l].data, p.y_true[l].dtype,
                                  a * (5 + p.num_classes) + 4) != 0;
                YLF_CHECK((double)n == run.r.stats[l][YL_STAT_COUNT],
                          "layer %d: count %g, y_true has %lld nonzero objectness", l,
                          run.r.stats[l][YL_STAT_COUNT], (long long)n);
            }
    }
    if (p.has_boxes) {
        ylf_check_roundtrip(&p, t, &run);
    } else {
        float *dummy[3] = {NULL, NULL, NULL};
        ylf_err_poison(&err);
        int brc = yl_boxes_to_y_true(&p, dummy, &err);
        ylf_check_err("yl_boxes_to_y_true", brc, &err, -1);
        YLF_CHECK(brc == YL_EINVAL, "yl_boxes_to_y_true on a y_true problem: %d", brc);
    }
    ylf_run_free(&run);

out:
    for (int k = 0; k < 8; k++)
        free(buf[k]);
    free(decoy);
    return 0;
}
