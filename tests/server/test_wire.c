/*
 * test_wire.c: the wire extensions of issue 15 against the real daemon.
 *
 *   compact   compact requests (output_l_box/_rows/_index) give bit for bit the dense
 *             answer of the in-process core: terms, stats, image_terms, grad_l_obj == the
 *             dense gradient's channel 4, grad_l_rows == its rows, grad_l (asked for) == the
 *             dense gradient; boxes and y_true, every dtype, 3-layer and tiny, JSON and
 *             binary, FP32 and FP64 gradients; the missing-row 400 and the other bad inputs.
 *   shm       Triton's system shared memory: inputs read from regions, gradients written
 *             into them, equal to the in-process answer; every bad input a 400 naming tensor
 *             and region; the token; --shared-memory off; a client that exits with regions
 *             registered; a region unregistered while a request uses it.
 * Expected values come from the core called in-process on the dense tensors (cases.c); the
 * core's own compact path is not used to compute them.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Requests built tensor by tensor                                                      */

enum { WT_BINARY, WT_JSON, WT_SHM };

typedef struct {
    char name[32];
    const char *datatype; /* "FP32", ..., "INT64" */
    int ndim;
    int64_t shape[YL_MAX_DIMS];
    const void *data;
    size_t bytes;
    int how;            /* WT_BINARY, WT_JSON, WT_SHM */
    const char *region; /* WT_SHM */
    uint64_t offset;
    int64_t shm_size;   /* -1: bytes */
} wt_in;

typedef struct {
    char name[32];
    bool binary;
    const char *region; /* NULL: in the body */
    uint64_t offset, size;
} wt_out;

typedef struct {
    wt_in in[16];
    int nin;
    wt_out out[24];
    int nout; /* 0: "outputs" omitted */
    const char *grad_datatype;
    bool binary_data_output;
} wt_req;

static double load_as_double(const void *p, const char *dt, size_t i)
{
    if (!strcmp(dt, "FP32"))
        return ((const float *)p)[i];
    if (!strcmp(dt, "FP64"))
        return ((const double *)p)[i];
    if (!strcmp(dt, "FP16"))
        return yl_half_to_double(((const uint16_t *)p)[i]);
    return yl_bf16_to_double(((const uint16_t *)p)[i]);
}

static size_t dt_size(const char *dt)
{
    return !strcmp(dt, "FP64") || !strcmp(dt, "INT64") ? 8 : !strcmp(dt, "FP32") ? 4 : 2;
}

static void add_in(wt_req *r, const char *name, const yl_tensor *t)
{
    wt_in *x = &r->in[r->nin++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->datatype = yl_dtype_name(t->dtype);
    x->ndim = t->ndim;
    memcpy(x->shape, t->shape, sizeof x->shape);
    x->data = t->data;
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (size_t)t->shape[d];
    x->bytes = n * yl_dtype_size(t->dtype);
    x->shm_size = -1;
}

static void add_out(wt_req *r, const char *name, bool binary)
{
    wt_out *o = &r->out[r->nout++];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->binary = binary;
}

static uint8_t *build_body(const wt_req *r, size_t *len, size_t *hl)
{
    json_t *root = json_object(), *inputs = json_array();
    json_t *params = json_object();
    if (r->grad_datatype)
        json_object_set_new(params, "grad_datatype", json_string(r->grad_datatype));
    if (r->binary_data_output)
        json_object_set_new(params, "binary_data_output", json_true());
    json_object_set_new(root, "parameters", params);
    size_t blobs = 0;
    for (int i = 0; i < r->nin; i++) {
        const wt_in *x = &r->in[i];
        json_t *shape = json_array();
        for (int d = 0; d < x->ndim; d++)
            json_array_append_new(shape, json_integer(x->shape[d]));
        json_t *in = json_pack("{s:s,s:s,s:o}", "name", x->name, "datatype", x->datatype,
                               "shape", shape);
        if (x->how == WT_BINARY) {
            json_object_set_new(in, "parameters",
                                json_pack("{s:I}", "binary_data_size", (json_int_t)x->bytes));
            blobs += x->bytes;
        } else if (x->how == WT_SHM) {
            json_object_set_new(in, "parameters",
                                json_pack("{s:s,s:I,s:I}", "shared_memory_region", x->region,
                                          "shared_memory_offset", (json_int_t)x->offset,
                                          "shared_memory_byte_size",
                                          (json_int_t)(x->shm_size >= 0 ? (size_t)x->shm_size
                                                                        : x->bytes)));
        } else {
            json_t *data = json_array();
            size_t n = x->bytes / dt_size(x->datatype);
            for (size_t k = 0; k < n; k++)
                json_array_append_new(data, !strcmp(x->datatype, "INT64")
                                                ? json_integer(((const int64_t *)x->data)[k])
                                                : json_real(load_as_double(x->data, x->datatype, k)));
            json_object_set_new(in, "data", data);
        }
        json_array_append_new(inputs, in);
    }
    json_object_set_new(root, "inputs", inputs);
    if (r->nout) {
        json_t *outs = json_array();
        for (int i = 0; i < r->nout; i++) {
            const wt_out *o = &r->out[i];
            json_t *p = o->region ? json_pack("{s:s,s:I,s:I}", "shared_memory_region", o->region,
                                              "shared_memory_offset", (json_int_t)o->offset,
                                              "shared_memory_byte_size", (json_int_t)o->size)
                                  : json_pack("{s:b}", "binary_data", o->binary);
            json_array_append_new(outs, json_pack("{s:s,s:o}", "name", o->name, "parameters", p));
        }
        json_object_set_new(root, "outputs", outs);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t jl = strlen(text);
    uint8_t *body = malloc(jl + blobs + 1);
    ck_assert_ptr_nonnull(body);
    memcpy(body, text, jl);
    free(text);
    size_t off = jl;
    for (int i = 0; i < r->nin; i++)
        if (r->in[i].how == WT_BINARY) {
            memcpy(body + off, r->in[i].data, r->in[i].bytes);
            off += r->in[i].bytes;
        }
    *len = off;
    *hl = jl;
    return body;
}

static long send_req(const yt_daemon *d, const char *model, const wt_req *r, yt_resp *resp)
{
    size_t len, hl;
    uint8_t *body = build_body(r, &len, &hl);
    char path[96], ih[64];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", hl);
    yt_req q = {.path = path, .body = body, .len = len, .headers = {"Expect:", ih}};
    long st = yt_http(d, &q, resp);
    free(body);
    return st;
}

/* One output of a response, its values as bytes of its datatype. */
typedef struct {
    char name[32], datatype[8];
    bool in_shm; /* answered with name, datatype and shape only */
    int ndim;
    int64_t shape[YL_MAX_DIMS];
    size_t n, esize;
    uint8_t *v; /* NULL for an output in shared memory */
} wt_got;

typedef struct {
    wt_got g[24];
    int n;
} wt_gots;

static void parse_resp(const yt_resp *r, wt_gots *o)
{
    memset(o, 0, sizeof *o);
    char hb[32];
    const char *ih = yt_header(r, "Inference-Header-Content-Length", hb, sizeof hb);
    size_t jl = ih ? (size_t)strtoull(ih, NULL, 10) : r->len;
    json_error_t je;
    json_t *root = json_loadb(r->body, jl, 0, &je);
    ck_assert_msg(root != NULL, "bad JSON: %s", je.text);
    size_t off = jl, i;
    json_t *x;
    json_array_foreach(json_object_get(root, "outputs"), i, x) {
        wt_got *y = &o->g[o->n++];
        snprintf(y->name, sizeof y->name, "%s", json_string_value(json_object_get(x, "name")));
        snprintf(y->datatype, sizeof y->datatype, "%s",
                 json_string_value(json_object_get(x, "datatype")));
        y->esize = dt_size(y->datatype);
        json_t *shape = json_object_get(x, "shape");
        y->ndim = (int)json_array_size(shape);
        y->n = 1;
        for (int d = 0; d < y->ndim; d++) {
            y->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
            y->n *= (size_t)y->shape[d];
        }
        json_t *params = json_object_get(x, "parameters");
        /* Triton's C++ client (http_client.cc) reads binary_data_size from every output that
         * has parameters, and fails without it */
        ck_assert_msg(!params || json_object_get(params, "binary_data_size"),
                      "output '%s' has parameters without binary_data_size", y->name);
        if (!params && !json_object_get(x, "data")) {
            /* in a shared-memory region: answered as Triton answers it, with name, datatype
             * and shape only */
            ck_assert_int_eq(json_object_size(x), 3);
            y->in_shm = true;
            continue;
        }
        y->v = malloc(y->n * y->esize + 1);
        json_t *bs = json_object_get(params, "binary_data_size");
        if (bs) {
            size_t bytes = (size_t)json_integer_value(bs);
            ck_assert_uint_eq(bytes, y->n * y->esize);
            ck_assert_uint_le(off + bytes, r->len);
            memcpy(y->v, r->body + off, bytes);
            off += bytes;
        } else {
            json_t *data = json_object_get(x, "data");
            ck_assert_uint_eq(json_array_size(data), y->n);
            for (size_t k = 0; k < y->n; k++) {
                double v = json_number_value(json_array_get(data, k));
                if (y->esize == 8)
                    ((double *)y->v)[k] = v;
                else
                    ((float *)y->v)[k] = (float)v;
            }
        }
    }
    ck_assert_uint_eq(off, r->len);
    json_decref(root);
}

static void gots_free(wt_gots *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->g[i].v);
}

static const wt_got *got(const wt_gots *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->g[i].name, name))
            return &o->g[i];
    ck_abort_msg("output %s missing", name);
    return NULL;
}

static bool has(const wt_gots *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->g[i].name, name))
            return true;
    return false;
}

/* ------------------------------------------------------------------------------------ */
/* The compact form of a case, and the expected values                                   */

typedef struct {
    int64_t n[YL_MAX_LAYERS];
    int64_t *index[YL_MAX_LAYERS];
    void *box[YL_MAX_LAYERS], *rows[YL_MAX_LAYERS];
    yl_tensor tbox[YL_MAX_LAYERS], trows[YL_MAX_LAYERS];
    /* expected gradients (dense, FP32 or FP64 as asked), per layer */
    void *grad[YL_MAX_LAYERS];
    size_t gsize; /* 4 or 8 */
} wt_compact;

static int64_t grid(const yt_case *c, int l, int hw) { return (hw ? c->spec.W0 : c->spec.H0) << l; }

/* The objectness of the truth (keras's y_true channel 4) of every anchor, as floats. */
static float *truth_obj(const yt_case *c, int l)
{
    int L = c->L;
    int64_t B = c->spec.B, C5 = 5 + c->spec.C;
    int64_t A = B * grid(c, l, 0) * grid(c, l, 1) * 3;
    float *obj = malloc((size_t)A * sizeof(float));
    ck_assert_ptr_nonnull(obj);
    if (c->spec.truth == YT_BOXES) {
        yl_problem p;
        yl_error err;
        ck_assert(yl_problem_init(&p, &c->cfg, c->out, L, &c->boxes, NULL, 0, &err) == YL_OK);
        float *yt[YL_MAX_LAYERS];
        for (int k = 0; k < L; k++) {
            yt[k] = malloc((size_t)(B * grid(c, k, 0) * grid(c, k, 1) * 3 * C5) * sizeof(float));
            ck_assert_ptr_nonnull(yt[k]);
        }
        ck_assert(yl_boxes_to_y_true(&p, yt, &err) == YL_OK);
        for (int64_t a = 0; a < A; a++)
            obj[a] = yt[l][a * C5 + 4];
        for (int k = 0; k < L; k++)
            free(yt[k]);
    } else {
        const yl_tensor *t = &c->y_true[l];
        for (int64_t a = 0; a < A; a++)
            obj[a] = (float)load_as_double(t->data, yl_dtype_name(t->dtype), (size_t)(a * C5 + 4));
    }
    return obj;
}

/* Rows: every truth anchor (drop: leave out the truth anchor number `drop`, -1: none) plus
 * every `extra`-th other anchor; rows_dtype -1: the outputs' dtype. */
static void make_compact(const yt_case *c, wt_compact *k, int extra, int drop, int rows_dtype,
                         int grad_dtype)
{
    memset(k, 0, sizeof *k);
    int L = c->L;
    int64_t B = c->spec.B, C5 = 5 + c->spec.C;
    int truth_seen = 0;
    for (int l = 0; l < L; l++) {
        const yl_tensor *o = &c->out[l];
        int64_t H = grid(c, l, 0), W = grid(c, l, 1), A = B * H * W * 3;
        size_t es = yl_dtype_size(o->dtype);
        int rdt = rows_dtype >= 0 ? rows_dtype : o->dtype;
        size_t res = yl_dtype_size(rdt);
        float *obj = truth_obj(c, l);
        k->box[l] = malloc((size_t)A * 5 * es);
        k->index[l] = malloc((size_t)A * sizeof(int64_t) + 8);
        k->rows[l] = malloc((size_t)A * (size_t)C5 * res + 8);
        ck_assert(k->box[l] && k->index[l] && k->rows[l]);
        const uint8_t *src = o->data;
        for (int64_t a = 0; a < A; a++) {
            memcpy((uint8_t *)k->box[l] + a * 5 * es, src + a * C5 * es, 5 * es);
            bool truth = obj[a] != 0;
            bool take = truth ? truth_seen++ != drop : extra > 0 && a % extra == 0;
            if (!take)
                continue;
            int64_t r = k->n[l]++;
            k->index[l][r] = a;
            for (int64_t ch = 0; ch < C5; ch++) {
                double v = load_as_double(src, yl_dtype_name(o->dtype), (size_t)(a * C5 + ch));
                uint8_t *dst = (uint8_t *)k->rows[l] + (r * C5 + ch) * (int64_t)res;
                switch (rdt) { /* exact: the row dtype holds the value when rdt >= o's */
                case YL_F32: *(float *)(void *)dst = (float)v; break;
                case YL_F64: *(double *)(void *)dst = v; break;
                case YL_F16: *(uint16_t *)(void *)dst = yl_double_to_half(v); break;
                default: *(uint16_t *)(void *)dst = yl_double_to_bf16(v); break;
                }
            }
        }
        free(obj);
        k->tbox[l] = (yl_tensor){k->box[l], o->dtype, 5, {B, H, W, 3, 5}};
        k->trows[l] = (yl_tensor){k->rows[l], rdt, 2, {k->n[l], C5}};
    }
    /* the expected dense gradient, from the dense problem in-process */
    k->gsize = grad_dtype == YL_F64 ? 8 : 4;
    yl_problem p;
    yl_error err;
    ck_assert(yl_problem_init(&p, &c->cfg, c->out, L, c->spec.truth == YT_BOXES ? &c->boxes : NULL,
                              c->spec.truth == YT_BOXES ? NULL : c->y_true,
                              c->spec.truth == YT_BOXES ? 0 : L, &err) == YL_OK);
    yl_grads g = {.dtype = grad_dtype};
    for (int l = 0; l < L; l++) {
        k->grad[l] = malloc((size_t)(B * p.layer_elems[l]) * k->gsize);
        g.layer[l] = k->grad[l];
    }
    yl_result res;
    ck_assert(yl_compute(&p, 1, &g, &res, NULL, &err) == YL_OK);
}

static void compact_free(wt_compact *k)
{
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(k->box[l]);
        free(k->rows[l]);
        free(k->index[l]);
        free(k->grad[l]);
    }
}

static void add_truth(wt_req *r, const yt_case *c)
{
    if (c->spec.truth == YT_BOXES) {
        add_in(r, "boxes", &c->boxes);
        return;
    }
    for (int l = 0; l < c->L; l++) {
        char n[32];
        snprintf(n, sizeof n, "y_true_%d", l);
        add_in(r, n, &c->y_true[l]);
    }
}

/* The case's dense inputs: output_0.. and its truth. */
static void add_case_inputs(wt_req *r, const yt_case *c)
{
    for (int l = 0; l < c->L; l++) {
        char n[32];
        snprintf(n, sizeof n, "output_%d", l);
        add_in(r, n, &c->out[l]);
    }
    add_truth(r, c);
}

static void add_compact_inputs(wt_req *r, const yt_case *c, const wt_compact *k)
{
    for (int l = 0; l < c->L; l++) {
        char n[32];
        snprintf(n, sizeof n, "output_%d_box", l);
        add_in(r, n, &k->tbox[l]);
        snprintf(n, sizeof n, "output_%d_rows", l);
        add_in(r, n, &k->trows[l]);
        wt_in *x = &r->in[r->nin++];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "output_%d_index", l);
        x->datatype = "INT64";
        x->ndim = 1;
        x->shape[0] = k->n[l];
        x->data = k->index[l];
        x->bytes = (size_t)k->n[l] * 8;
        x->shm_size = -1;
    }
    add_truth(r, c);
}

static const char *model_of(const yt_case *c) { return c->L == 3 ? "yolov3" : "yolov3-tiny"; }

/* Every value of the response equals the in-process dense answer, bit for bit. */
static void check_small(const yt_case *c, const wt_gots *o)
{
    static const char *const names[] = {"loss", "loss_terms", "layer_terms", "image_terms",
                                        "stats"};
    for (int i = 0; i < 5; i++) {
        if (!has(o, names[i]))
            continue;
        const wt_got *y = got(o, names[i]);
        size_t n;
        int ndim;
        int64_t shape[YL_MAX_DIMS];
        float *want = yt_expected(c, names[i], &n, &ndim, shape);
        ck_assert_str_eq(y->datatype, "FP32");
        ck_assert_uint_eq(y->n, n);
        ck_assert_msg(memcmp(y->v, want, n * 4) == 0, "%s differs from the dense answer",
                      names[i]);
        free(want);
    }
}

/* grad_l_obj, grad_l_rows and grad_l of a compact answer against the dense gradient. vals:
 * where each output's values are (the response, or a shared-memory region). */
static void check_compact_grads(const yt_case *c, const wt_compact *k, const wt_gots *o,
                                const void *const *obj_at, const void *const *rows_at,
                                const void *const *dense_at)
{
    int64_t C5 = 5 + c->spec.C;
    size_t es = k->gsize;
    for (int l = 0; l < c->L; l++) {
        char n[32];
        int64_t B = c->spec.B, A = B * grid(c, l, 0) * grid(c, l, 1) * 3;
        const uint8_t *want = k->grad[l];
        snprintf(n, sizeof n, "grad_%d_obj", l);
        if (has(o, n)) {
            const wt_got *y = got(o, n);
            ck_assert_str_eq(y->datatype, es == 8 ? "FP64" : "FP32");
            ck_assert_int_eq(y->ndim, 4);
            ck_assert_uint_eq(y->n, (size_t)A);
            const uint8_t *v = obj_at && obj_at[l] ? obj_at[l] : y->v;
            for (int64_t a = 0; a < A; a++)
                ck_assert_msg(!memcmp(v + a * es, want + (a * C5 + 4) * (int64_t)es, es),
                              "%s[%" PRId64 "] is not the dense gradient's channel 4", n, a);
        }
        snprintf(n, sizeof n, "grad_%d_rows", l);
        if (has(o, n)) {
            const wt_got *y = got(o, n);
            ck_assert_uint_eq(y->n, (size_t)(k->n[l] * C5));
            const uint8_t *v = rows_at && rows_at[l] ? rows_at[l] : y->v;
            for (int64_t r = 0; r < k->n[l]; r++)
                ck_assert_msg(!memcmp(v + r * C5 * (int64_t)es,
                                      want + k->index[l][r] * C5 * (int64_t)es, (size_t)C5 * es),
                              "%s[%" PRId64 "] (anchor %" PRId64 ") is not the dense row", n, r,
                              k->index[l][r]);
        }
        snprintf(n, sizeof n, "grad_%d", l);
        if (has(o, n)) {
            const wt_got *y = got(o, n);
            ck_assert_uint_eq(y->n, (size_t)(A * C5));
            const uint8_t *v = dense_at && dense_at[l] ? dense_at[l] : y->v;
            for (int64_t i = 0; i < A * C5; i++)
                ck_assert_msg(!memcmp(v + i * (int64_t)es, want + i * (int64_t)es, es),
                              "%s[%" PRId64 "] (anchor %" PRId64 ", channel %" PRId64
                              ") differs from the dense gradient: %a, want %a",
                              n, i, i / C5, i % C5,
                              es == 8 ? *(const double *)(const void *)(v + i * 8)
                                      : (double)*(const float *)(const void *)(v + i * 4),
                              es == 8 ? *(const double *)(const void *)(want + i * 8)
                                      : (double)*(const float *)(const void *)(want + i * 4));
        }
    }
}

/* ------------------------------------------------------------------------------------ */
/* Compact                                                                               */

static const yt_spec compact_specs[] = {
    /* 3-layer, boxes, FP32 4-D */
    {9, 2, 2, 3, 6, YL_F32, false, YT_BOXES, YL_F32, 6, 0, NULL, 301},
    /* tiny, dense y_true 5-D FP16, outputs FP16 5-D */
    {6, 2, 2, 2, 4, YL_F16, true, YT_DENSE5, YL_F16, 5, 0, NULL, 302},
    /* outputs FP32/FP16/BF16 by layer, y_true 4-D FP64, boxes FP64 */
    {9, 3, 1, 2, 3, -1, false, YT_DENSE4, YL_F64, 4, 0.6, NULL, 303},
    {9, 1, 2, 2, 5, YL_F64, false, YT_BOXES, YL_F64, 7, 0, NULL, 304},
    {6, 2, 3, 1, 2, YL_BF16, true, YT_BOXES, YL_F32, 3, 0, NULL, 305},
};

static void run_compact(const yt_spec *s, int how, int grad_dtype, int rows_dtype, int extra,
                        bool ask_dense)
{
    yt_case c;
    yt_case_make(&c, s);
    wt_compact k;
    make_compact(&c, &k, extra, -1, rows_dtype, grad_dtype);
    wt_req r = {0};
    add_compact_inputs(&r, &c, &k);
    for (int i = 0; i < r.nin; i++)
        if (r.in[i].how == WT_BINARY && how == WT_JSON && strcmp(r.in[i].datatype, "BF16"))
            r.in[i].how = WT_JSON;
    r.grad_datatype = grad_dtype == YL_F64 ? "FP64" : NULL;
    if (ask_dense) {
        static const char *const small[] = {"loss", "loss_terms", "layer_terms", "image_terms",
                                            "stats"};
        for (int i = 0; i < 5; i++)
            add_out(&r, small[i], how != WT_JSON);
        for (int l = 0; l < c.L; l++) {
            char n[32];
            snprintf(n, sizeof n, "grad_%d", l);
            add_out(&r, n, how != WT_JSON);
            snprintf(n, sizeof n, "grad_%d_obj", l);
            add_out(&r, n, how != WT_JSON);
            snprintf(n, sizeof n, "grad_%d_rows", l);
            add_out(&r, n, how != WT_JSON);
        }
    } else {
        r.binary_data_output = how != WT_JSON;
    }
    yt_resp resp;
    long st = send_req(&yt_main, model_of(&c), &r, &resp);
    char e[512];
    ck_assert_msg(st == 200, "HTTP %ld: %s", st, yt_error_message(&resp, e, sizeof e));
    wt_gots o;
    parse_resp(&resp, &o);
    /* without "outputs": the small ones, grad_l_obj and grad_l_rows, not grad_l */
    if (!ask_dense) {
        ck_assert_int_eq(o.n, 5 + 2 * c.L);
        ck_assert(!has(&o, "grad_0"));
        ck_assert(has(&o, "grad_0_obj") && has(&o, "grad_0_rows"));
    }
    check_small(&c, &o);
    check_compact_grads(&c, &k, &o, NULL, NULL, NULL);
    gots_free(&o);
    yt_resp_free(&resp);
    compact_free(&k);
    yt_case_free(&c);
}

START_TEST(compact_equals_dense)
{
    const yt_spec *s = &compact_specs[_i];
    run_compact(s, WT_BINARY, YL_F32, -1, 0, false);  /* truth rows only, default outputs */
    run_compact(s, WT_BINARY, YL_F32, -1, 7, true);   /* extra rows, grad_l asked for too */
    run_compact(s, WT_BINARY, YL_F64, YL_F64, 5, true); /* FP64 gradients, FP64 rows */
}
END_TEST

START_TEST(compact_json)
{
    run_compact(&compact_specs[0], WT_JSON, YL_F32, -1, 3, true);
    run_compact(&compact_specs[1], WT_JSON, YL_F64, -1, 0, false);
}
END_TEST

/* The standard grids (13/26/52), C = 80, random values. */
START_TEST(compact_full_size)
{
    yt_spec s = {9, 2, 13, 13, 80, YL_F32, false, YT_BOXES, YL_F32, 12, 0, NULL, 306};
    run_compact(&s, WT_BINARY, YL_F32, -1, 0, true);
    s.truth = YT_DENSE5;
    s.out_dtype = YL_F16;
    s.seed = 307;
    run_compact(&s, WT_BINARY, YL_F32, -1, 0, false);
}
END_TEST

/* FP64 gradients of a dense request: the in-process FP64 gradient, not rounded. */
START_TEST(dense_fp64_gradients)
{
    yt_case c;
    yt_case_make(&c, &compact_specs[0]);
    wt_compact k;
    make_compact(&c, &k, 0, -1, -1, YL_F64);
    wt_req r = {.grad_datatype = "FP64", .binary_data_output = true};
    add_case_inputs(&r, &c);
    yt_resp resp;
    ck_assert_int_eq(send_req(&yt_main, "yolov3", &r, &resp), 200);
    wt_gots o;
    parse_resp(&resp, &o);
    check_small(&c, &o);
    bool some_not_float = false;
    for (int l = 0; l < c.L; l++) {
        char n[32];
        snprintf(n, sizeof n, "grad_%d", l);
        const wt_got *y = got(&o, n);
        ck_assert_str_eq(y->datatype, "FP64");
        ck_assert_msg(!memcmp(y->v, k.grad[l], y->n * 8), "%s differs", n);
        for (size_t i = 0; i < y->n; i++)
            some_not_float |= (double)(float)((double *)(void *)y->v)[i] != ((double *)(void *)y->v)[i];
    }
    ck_assert_msg(some_not_float, "FP64 gradients that are all floats: rounded?");
    gots_free(&o);
    yt_resp_free(&resp);
    compact_free(&k);
    yt_case_free(&c);
}
END_TEST

static void expect_400(const wt_req *r, const char *model, const char *const *words)
{
    yt_resp resp;
    long st = send_req(&yt_main, model, r, &resp);
    char e[512];
    yt_error_message(&resp, e, sizeof e);
    ck_assert_msg(st == 400, "HTTP %ld (want 400): %s", st, e);
    for (int i = 0; words[i]; i++)
        ck_assert_msg(strstr(e, words[i]), "'%s' not in the message: %s", words[i], e);
    yt_resp_free(&resp);
}

START_TEST(compact_missing_row)
{
    yt_case c;
    yt_case_make(&c, &compact_specs[0]);
    wt_compact k;
    make_compact(&c, &k, 4, 1, -1, YL_F32); /* the second truth anchor has no row */
    wt_req r = {0};
    add_compact_inputs(&r, &c, &k);
    const char *words[] = {"no row for the truth anchor", "image", "layer", "cell", "anchor",
                           NULL};
    expect_400(&r, "yolov3", words);
    compact_free(&k);
    yt_case_free(&c);
}
END_TEST

START_TEST(compact_bad_inputs)
{
    yt_case c;
    yt_case_make(&c, &compact_specs[0]);
    wt_compact k;
    make_compact(&c, &k, 3, -1, -1, YL_F32);
    {   /* layer 0 dense, the others compact */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        add_in(&r, "output_0", &c.out[0]);
        memmove(&r.in[0], &r.in[3], sizeof r.in[0] * (size_t)(r.nin - 3));
        r.nin -= 3;
        const char *w[] = {"mixes dense", NULL};
        expect_400(&r, "yolov3", w);
    }
    {   /* a compact layer without its index */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        memmove(&r.in[2], &r.in[3], sizeof r.in[0] * (size_t)(r.nin - 3));
        r.nin--;
        const char *w[] = {"missing input 'output_0_index'", NULL};
        expect_400(&r, "yolov3", w);
    }
    {   /* rows and index of different lengths */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        r.in[2].shape[0]--;
        r.in[2].bytes -= 8;
        const char *w[] = {"output_0_rows", "output_0_index", NULL};
        expect_400(&r, "yolov3", w);
    }
    {   /* the index as FP32 */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        r.in[2].datatype = "FP64";
        const char *w[] = {"output_0_index", "INT64", NULL};
        expect_400(&r, "yolov3", w);
    }
    {   /* not increasing */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        ck_assert_int_ge(k.n[1], 2);
        int64_t *idx = malloc((size_t)k.n[1] * 8);
        memcpy(idx, k.index[1], (size_t)k.n[1] * 8);
        int64_t t = idx[0];
        idx[0] = idx[1];
        idx[1] = t;
        r.in[5].data = idx;
        const char *w[] = {"output_1_index", NULL};
        expect_400(&r, "yolov3", w);
        free(idx);
    }
    {   /* a compact output of a dense request */
        wt_req r = {0};
        add_case_inputs(&r, &c);
        add_out(&r, "grad_1_obj", true);
        const char *w[] = {"grad_1_obj", "compact", NULL};
        expect_400(&r, "yolov3", w);
    }
    {   /* grad_datatype */
        wt_req r = {0};
        add_compact_inputs(&r, &c, &k);
        r.grad_datatype = "FP16";
        const char *w[] = {"grad_datatype", NULL};
        expect_400(&r, "yolov3", w);
    }
    compact_free(&k);
    yt_case_free(&c);
}
END_TEST

/* A layer may send no rows at all (an image set without truth in it). */
START_TEST(compact_no_rows)
{
    yt_spec s = compact_specs[0];
    s.T = 1; /* one box per image: some layers hold no truth */
    yt_case c;
    yt_case_make(&c, &s);
    wt_compact k;
    make_compact(&c, &k, 0, -1, -1, YL_F32);
    int empty = 0;
    for (int l = 0; l < c.L; l++)
        empty += k.n[l] == 0;
    ck_assert_msg(empty > 0, "no layer without rows: the case does not test it");
    wt_req r = {.binary_data_output = true};
    add_compact_inputs(&r, &c, &k);
    yt_resp resp;
    ck_assert_int_eq(send_req(&yt_main, "yolov3", &r, &resp), 200);
    wt_gots o;
    parse_resp(&resp, &o);
    check_small(&c, &o);
    check_compact_grads(&c, &k, &o, NULL, NULL, NULL);
    gots_free(&o);
    yt_resp_free(&resp);
    compact_free(&k);
    yt_case_free(&c);
}
END_TEST

START_TEST(extensions_advertised)
{
    json_t *m = yt_get_json(&yt_main, "/v2");
    ck_assert_ptr_nonnull(m);
    char *ext = json_dumps(json_object_get(m, "extensions"), 0);
    ck_assert_msg(strstr(ext, "\"yololoss_compact\"") && strstr(ext, "\"system_shared_memory\""),
                  "%s", ext);
    free(ext);
    json_decref(m);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Shared memory                                                                          */

typedef struct {
    char key[64], name[64];
    size_t size;
    uint8_t *p;
} wt_shm;

/* Every input copied into region in, one after the other on 8-byte boundaries. */
static void inputs_in_region(wt_req *r, const wt_shm *in)
{
    size_t off = 0;
    for (int i = 0; i < r->nin; i++) {
        memcpy(in->p + off, r->in[i].data, r->in[i].bytes);
        r->in[i].how = WT_SHM;
        r->in[i].region = in->name;
        r->in[i].offset = off;
        off += (r->in[i].bytes + 7) / 8 * 8;
    }
}

static void shm_make(wt_shm *s, const char *tag, size_t size)
{
    static int counter;
    snprintf(s->key, sizeof s->key, "/yltest-%d-%s-%d", (int)getpid(), tag, counter);
    snprintf(s->name, sizeof s->name, "r-%d-%s-%d", (int)getpid(), tag, counter++);
    int fd = shm_open(s->key, O_RDWR | O_CREAT | O_EXCL, 0600);
    ck_assert_msg(fd >= 0, "shm_open %s: %s", s->key, strerror(errno));
    ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
    s->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert(s->p != MAP_FAILED);
    close(fd);
    s->size = size;
}

static void shm_drop(wt_shm *s)
{
    munmap(s->p, s->size);
    shm_unlink(s->key);
}

static long shm_register(const yt_daemon *d, const char *name, const char *key, uint64_t offset,
                         uint64_t size, const char *auth, yt_resp *resp)
{
    char path[160], body[256];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/register", name);
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"offset\":%" PRIu64 ",\"byte_size\":%" PRIu64 "}",
             key, offset, size);
    yt_req q = {.method = "POST", .path = path, .body = body, .len = strlen(body),
                .headers = {"Content-Type: application/json", auth}};
    return yt_http(d, &q, resp);
}

static void shm_register_ok(const wt_shm *s)
{
    yt_resp resp;
    long st = shm_register(&yt_main, s->name, s->key, 0, s->size, NULL, &resp);
    char e[512];
    ck_assert_msg(st == 200, "register: HTTP %ld %s", st, yt_error_message(&resp, e, sizeof e));
    yt_resp_free(&resp);
}

static long shm_post(const yt_daemon *d, const char *path)
{
    yt_req q = {.method = "POST", .path = path, .body = "", .len = 0};
    yt_resp resp;
    long st = yt_http(d, &q, &resp);
    yt_resp_free(&resp);
    return st;
}

static void shm_unregister(const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/unregister", name);
    ck_assert_int_eq(shm_post(&yt_main, path), 200);
}

/* Does the daemon map the object `key`? (its /proc/PID/maps) */
static bool daemon_maps(pid_t pid, const char *key)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    bool found = false;
    while (fgets(line, sizeof line, f))
        found |= strstr(line, key) != NULL;
    fclose(f);
    return found;
}

/* Inputs (a dense request) and gradients in two regions; the answer equals the in-process
 * core's; status and unregister. */
START_TEST(shm_dense_roundtrip)
{
    yt_case c;
    yt_case_make(&c, &compact_specs[0]);
    wt_req r = {0};
    add_case_inputs(&r, &c);
    size_t in_total = 0, out_total = 0;
    for (int i = 0; i < r.nin; i++)
        in_total += (r.in[i].bytes + 63) / 64 * 64 + 64;
    for (int l = 0; l < c.L; l++)
        out_total += r.in[l].bytes + 64;
    wt_shm in, out;
    shm_make(&in, "in", in_total);
    shm_make(&out, "out", out_total);
    shm_register_ok(&in);
    shm_register_ok(&out);
    size_t off = 32; /* not at the region's start */
    for (int i = 0; i < r.nin; i++) {
        memcpy(in.p + off, r.in[i].data, r.in[i].bytes);
        r.in[i].how = WT_SHM;
        r.in[i].region = in.name;
        r.in[i].offset = off;
        off += (r.in[i].bytes + 63) / 64 * 64 + 64;
    }
    add_out(&r, "loss", false);
    add_out(&r, "stats", true);
    size_t goff[YL_MAX_LAYERS], o2 = 0;
    memset(out.p, 0xAB, out.size);
    for (int l = 0; l < c.L; l++) {
        char n[32];
        snprintf(n, sizeof n, "grad_%d", l);
        add_out(&r, n, true);
        wt_out *o = &r.out[r.nout - 1];
        o->region = out.name;
        o->offset = goff[l] = o2;
        o->size = r.in[l].bytes + 64; /* larger than needed is fine */
        o2 += r.in[l].bytes + 64;
    }
    yt_resp resp;
    long st = send_req(&yt_main, "yolov3", &r, &resp);
    char e[512];
    ck_assert_msg(st == 200, "HTTP %ld %s", st, yt_error_message(&resp, e, sizeof e));
    wt_gots o;
    parse_resp(&resp, &o);
    check_small(&c, &o);
    for (int l = 0; l < c.L; l++) {
        char n[32];
        snprintf(n, sizeof n, "grad_%d", l);
        ck_assert(got(&o, n)->in_shm);
        ck_assert_msg(!memcmp(out.p + goff[l], c.grads[l], r.in[l].bytes), "%s in shm differs",
                      n);
    }
    /* nothing but the JSON came back */
    char hb[32];
    ck_assert_ptr_nonnull(yt_header(&resp, "Inference-Header-Content-Length", hb, sizeof hb));
    ck_assert_msg((size_t)strtoull(hb, NULL, 10) + 32 * c.L == resp.len, "%s: %zu bytes", resp.body, resp.len); /* stats: binary */
    gots_free(&o);
    yt_resp_free(&resp);

    char path[160];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/status", in.name);
    json_t *s = yt_get_json(&yt_main, path);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(json_array_size(s), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(s, 0), "key")), in.key);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(s, 0), "byte_size")),
                     (json_int_t)in.size);
    json_decref(s);
    ck_assert(daemon_maps(yt_main.pid, in.key));
    shm_unregister(in.name);
    shm_unregister(out.name);
    ck_assert(!daemon_maps(yt_main.pid, in.key));
    ck_assert(!daemon_maps(yt_main.pid, out.key));
    yt_resp st2;
    ck_assert_int_eq(yt_get(&yt_main, path, &st2), 400);
    yt_resp_free(&st2);
    shm_drop(&in);
    shm_drop(&out);
    yt_case_free(&c);
}
END_TEST

/* A compact request through shared memory: inputs in one region, grad_l_obj, grad_l_rows and
 * the dense grad_l in another. */
START_TEST(shm_compact_roundtrip)
{
    yt_case c;
    yt_case_make(&c, &compact_specs[2]);
    wt_compact k;
    make_compact(&c, &k, 5, -1, -1, YL_F64);
    wt_req r = {.grad_datatype = "FP64"};
    add_compact_inputs(&r, &c, &k);
    size_t in_total = 64;
    for (int i = 0; i < r.nin; i++)
        in_total += r.in[i].bytes + 8;
    wt_shm in, out;
    shm_make(&in, "cin", in_total);
    shm_register_ok(&in);
    inputs_in_region(&r, &in);
    int64_t C5 = 5 + c.spec.C;
    size_t need = 0;
    for (int l = 0; l < c.L; l++) {
        int64_t A = c.spec.B * grid(&c, l, 0) * grid(&c, l, 1) * 3;
        need += (size_t)(A + k.n[l] * C5 + A * C5) * 8;
    }
    shm_make(&out, "cout", need);
    shm_register_ok(&out);
    const void *obj_at[YL_MAX_LAYERS], *rows_at[YL_MAX_LAYERS], *dense_at[YL_MAX_LAYERS];
    size_t o2 = 0;
    add_out(&r, "loss_terms", true);
    add_out(&r, "image_terms", false);
    for (int l = 0; l < c.L; l++) {
        int64_t A = c.spec.B * grid(&c, l, 0) * grid(&c, l, 1) * 3;
        size_t sizes[3] = {(size_t)A * 8, (size_t)(k.n[l] * C5) * 8, (size_t)(A * C5) * 8};
        const char *fmt[3] = {"grad_%d_obj", "grad_%d_rows", "grad_%d"};
        const void **at[3] = {obj_at, rows_at, dense_at};
        for (int j = 0; j < 3; j++) {
            char n[32];
            snprintf(n, sizeof n, fmt[j], l);
            add_out(&r, n, true);
            wt_out *o = &r.out[r.nout - 1];
            o->region = out.name;
            o->offset = o2;
            o->size = sizes[j];
            at[j][l] = out.p + o2;
            o2 += sizes[j];
        }
    }
    yt_resp resp;
    long st = send_req(&yt_main, "yolov3", &r, &resp);
    char e[512];
    ck_assert_msg(st == 200, "HTTP %ld %s", st, yt_error_message(&resp, e, sizeof e));
    wt_gots o;
    parse_resp(&resp, &o);
    check_small(&c, &o);
    check_compact_grads(&c, &k, &o, obj_at, rows_at, dense_at);
    gots_free(&o);
    yt_resp_free(&resp);
    shm_unregister(in.name);
    shm_unregister(out.name);
    shm_drop(&in);
    shm_drop(&out);
    compact_free(&k);
    yt_case_free(&c);
}
END_TEST

/* A small tiny problem with its inputs in region `in` at offset 0. */
/* An output written into region at offset, size bytes at most. */
static void add_shm_out(wt_req *r, const char *name, bool binary, const char *region,
                        uint64_t offset, uint64_t size)
{
    add_out(r, name, binary);
    wt_out *o = &r->out[r->nout - 1];
    o->region = region;
    o->offset = offset;
    o->size = size;
}

static void shm_small_req(wt_req *r, const yt_case *c, const wt_shm *in)
{
    memset(r, 0, sizeof *r);
    add_case_inputs(r, c);
    inputs_in_region(r, in);
}

START_TEST(shm_errors)
{
    yt_spec s = {6, 1, 1, 1, 2, YL_F32, false, YT_BOXES, YL_F32, 2, 0, NULL, 311};
    yt_case c;
    yt_case_make(&c, &s);
    wt_shm in, small;
    shm_make(&in, "ein", 4096);
    shm_make(&small, "esmall", 16);
    shm_register_ok(&in);
    shm_register_ok(&small);
    wt_req r;
    yt_resp resp;
    char e[512];

    /* registration: a key that does not exist, beyond the object, twice, bad JSON */
    ck_assert_int_eq(shm_register(&yt_main, "nokey", "/yltest-no-such-object", 0, 16, NULL, &resp),
                     400);
    ck_assert_msg(strstr(yt_error_message(&resp, e, sizeof e), "nokey") &&
                      strstr(e, "does not exist"), "%s", e);
    yt_resp_free(&resp);
    ck_assert_int_eq(shm_register(&yt_main, "toobig", in.key, 4000, 200, NULL, &resp), 400);
    ck_assert_msg(strstr(yt_error_message(&resp, e, sizeof e), "toobig") &&
                      strstr(e, "beyond the end"), "%s", e);
    yt_resp_free(&resp);
    ck_assert_int_eq(shm_register(&yt_main, in.name, in.key, 0, 16, NULL, &resp), 400);
    ck_assert_msg(strstr(yt_error_message(&resp, e, sizeof e), "already registered"), "%s", e);
    yt_resp_free(&resp);
    ck_assert_int_eq(shm_register(&yt_main, "badkey", "/../etc/passwd", 0, 16, NULL, &resp), 400);
    yt_resp_free(&resp);

    /* an unknown region */
    shm_small_req(&r, &c, &in);
    r.in[1].region = "no-such-region";
    const char *w1[] = {"output_1", "no-such-region", NULL};
    expect_400(&r, "yolov3-tiny", w1);
    /* beyond the region */
    shm_small_req(&r, &c, &in);
    r.in[0].offset = 4096 - 8;
    const char *w2[] = {"output_0", in.name, "beyond the end", NULL};
    expect_400(&r, "yolov3-tiny", w2);
    /* a size that is not the tensor's */
    shm_small_req(&r, &c, &in);
    r.in[2].shm_size = (int64_t)r.in[2].bytes - 4;
    const char *w3[] = {"boxes", in.name, "shared_memory_byte_size", NULL};
    expect_400(&r, "yolov3-tiny", w3);
    /* a region too small for an output */
    shm_small_req(&r, &c, &in);
    add_shm_out(&r, "grad_0", true, small.name, 0, 16);
    const char *w4[] = {"grad_0", small.name, "too small", NULL};
    expect_400(&r, "yolov3-tiny", w4);
    /* an output overlapping an input (same region) */
    shm_small_req(&r, &c, &in);
    add_shm_out(&r, "grad_1", true, in.name, r.in[1].offset + 8, r.in[1].bytes);
    const char *w5[] = {"grad_1", "overlaps input 'output_1'", in.name, NULL};
    expect_400(&r, "yolov3-tiny", w5);
    /* ... and through another region on the same object */
    yt_resp rr;
    ck_assert_int_eq(shm_register(&yt_main, "alias", in.key, 0, 4096, NULL, &rr), 200);
    yt_resp_free(&rr);
    shm_small_req(&r, &c, &in);
    add_shm_out(&r, "grad_0", true, "alias", 0, r.in[0].bytes);
    const char *w6[] = {"grad_0", "alias", "overlaps input 'output_0'", NULL};
    expect_400(&r, "yolov3-tiny", w6);
    shm_unregister("alias");
    /* only one of region and byte size */
    shm_small_req(&r, &c, &in);
    r.in[0].how = WT_BINARY;
    add_shm_out(&r, "loss", false, in.name, 0, 0);
    /* shared_memory_byte_size 0 is given: too small */
    const char *w7[] = {"loss", "too small", NULL};
    expect_400(&r, "yolov3-tiny", w7);
    /* a misaligned output */
    shm_small_req(&r, &c, &in);
    add_shm_out(&r, "loss", false, small.name, 2, 4);
    const char *w8[] = {"loss", "multiple of 4", NULL};
    expect_400(&r, "yolov3-tiny", w8);
    /* the daemon still computes a good request with an output in the small region */
    shm_small_req(&r, &c, &in);
    add_shm_out(&r, "loss", false, small.name, 4, 4);
    ck_assert_int_eq(send_req(&yt_main, "yolov3-tiny", &r, &resp), 200);
    yt_resp_free(&resp);
    float want = (float)c.res.loss;
    ck_assert(!memcmp(small.p + 4, &want, 4));
    /* an object shrunk after registration: refused, never read past its end (SIGBUS) */
    {
        wt_shm sh;
        shm_make(&sh, "shrink", 16384);
        shm_register_ok(&sh);
        shm_small_req(&r, &c, &sh);
        for (int i = 0; i < r.nin; i++) /* on pages wholly past the new end */
            r.in[i].offset += 8192;
        int fd = shm_open(sh.key, O_RDWR, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, 16), 0);
        close(fd);
        const char *w9[] = {"output_0", sh.name, "no longer holds", NULL};
        expect_400(&r, "yolov3-tiny", w9);
        ck_assert_int_eq(kill(yt_main.pid, 0), 0);
        shm_unregister(sh.name);
        munmap(sh.p, sh.size); /* the test's own mapping is past the end now too */
        shm_unlink(sh.key);
    }
    /* status of an unknown region; unregistering it is not an error (Triton's behaviour) */
    ck_assert_int_eq(yt_get(&yt_main, "/v2/systemsharedmemory/region/nope/status", &resp), 400);
    yt_resp_free(&resp);
    ck_assert_int_eq(shm_post(&yt_main, "/v2/systemsharedmemory/region/nope/unregister"), 200);
    shm_unregister(in.name);
    shm_unregister(small.name);
    shm_drop(&in);
    shm_drop(&small);
    yt_case_free(&c);
}
END_TEST

/* A client that dies with regions registered: the daemon keeps serving, the mapping is its
 * own (the object is unlinked), and unregister frees it. */
START_TEST(shm_client_exits)
{
    char key[64], name[64];
    snprintf(key, sizeof key, "/yltest-%d-orphan", (int)getpid());
    snprintf(name, sizeof name, "orphan-%d", (int)getpid());
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = shm_open(key, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || ftruncate(fd, 1 << 20))
            _exit(2);
        yt_resp resp;
        long st = shm_register(&yt_main, name, key, 0, 1 << 20, NULL, &resp);
        shm_unlink(key); /* and die without unregistering */
        _exit(st == 200 ? 0 : 3);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    ck_assert_int_eq(kill(yt_main.pid, 0), 0);
    ck_assert(daemon_maps(yt_main.pid, key));
    json_t *m = yt_get_json(&yt_main, "/v2/systemsharedmemory/status");
    ck_assert_ptr_nonnull(m);
    char *text = json_dumps(m, 0);
    ck_assert_msg(strstr(text, name), "%s", text);
    free(text);
    json_decref(m);
    yt_resp resp;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/ready", &resp), 200);
    yt_resp_free(&resp);
    shm_unregister(name);
    ck_assert(!daemon_maps(yt_main.pid, key));
}
END_TEST

typedef struct {
    const wt_req *r;
    long status;
    wt_gots o;
} infer_thread_arg;

static void *infer_thread(void *p)
{
    infer_thread_arg *a = p;
    yt_resp resp;
    a->status = send_req(&yt_main, "yolov3", a->r, &resp);
    yt_resp_free(&resp);
    return NULL;
}

/* Unregistering every region while requests use them: the requests finish with the right
 * answer (a request holds its regions until it ends), the mappings go after them. */
START_TEST(shm_unregister_in_flight)
{
    yt_spec s = {9, 8, 13, 13, 80, YL_F32, false, YT_BOXES, YL_F32, 8, 0, NULL, 312};
    yt_case c;
    yt_case_make(&c, &s);
    wt_req r = {0};
    add_case_inputs(&r, &c);
    size_t total = 0;
    for (int i = 0; i < r.nin; i++)
        total += (r.in[i].bytes + 7) / 8 * 8;
    wt_shm in, out;
    shm_make(&in, "fin", total);
    shm_make(&out, "fout", r.in[0].bytes);
    shm_register_ok(&in);
    shm_register_ok(&out);
    inputs_in_region(&r, &in);
    /* all three read the input region; one writes its gradient into the output region (two
     * requests writing the same window would race each other: a client's error) */
    wt_req r_loss = r;
    add_out(&r_loss, "loss", false);
    add_shm_out(&r, "grad_0", true, out.name, 0, r.in[0].bytes);
    pthread_t th[3];
    infer_thread_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (infer_thread_arg){.r = i == 0 ? &r : &r_loss};
        pthread_create(&th[i], NULL, infer_thread, &args[i]);
    }
    usleep(20000);
    ck_assert_int_eq(shm_post(&yt_main, "/v2/systemsharedmemory/unregister"), 200);
    int ok = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        /* a request that came after the unregistration gets a 400 (unknown region) */
        ck_assert_msg(args[i].status == 200 || args[i].status == 400, "HTTP %ld", args[i].status);
        ok += args[i].status == 200;
    }
    printf("shm_unregister_in_flight: %d of 3 requests finished after the unregistration\n", ok);
    if (args[0].status == 200)
        ck_assert_msg(!memcmp(out.p, c.grads[0], r.in[0].bytes), "grad_0 in shm differs");
    ck_assert(!daemon_maps(yt_main.pid, in.key));
    ck_assert(!daemon_maps(yt_main.pid, out.key));
    shm_drop(&in);
    shm_drop(&out);
    yt_case_free(&c);
}
END_TEST

START_TEST(shm_token_and_off)
{
    char tok[] = "/tmp/yololossd-test-wire-token-XXXXXX";
    yt_token_file(tok, "s3cret\n");
    const char *args[] = {"--token-file", tok, "--threads", "1", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    wt_shm in;
    shm_make(&in, "tok", 4096);
    yt_resp resp;
    ck_assert_int_eq(shm_register(&d, in.name, in.key, 0, 4096, NULL, &resp), 401);
    yt_resp_free(&resp);
    ck_assert_int_eq(shm_register(&d, in.name, in.key, 0, 4096, "Authorization: Bearer s3cret",
                                  &resp), 200);
    yt_resp_free(&resp);
    ck_assert(daemon_maps(d.pid, in.key));
    ck_assert_int_eq(yt_daemon_stop(&d), 0); /* exits 0 with a region mapped (unmapped at exit) */
    unlink(tok);

    const char *off_args[] = {"--shared-memory", "off", "--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, off_args, false), 0);
    json_t *m = yt_get_json(&d, "/v2");
    char *ext = json_dumps(json_object_get(m, "extensions"), 0);
    ck_assert_msg(!strstr(ext, "system_shared_memory") && strstr(ext, "yololoss_compact"), "%s",
                  ext);
    free(ext);
    json_decref(m);
    ck_assert_int_eq(shm_register(&d, in.name, in.key, 0, 4096, NULL, &resp), 400);
    char e[512];
    ck_assert_msg(strstr(yt_error_message(&resp, e, sizeof e), "--shared-memory"), "%s", e);
    yt_resp_free(&resp);
    ck_assert(!daemon_maps(d.pid, in.key));
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    shm_drop(&in);
}
END_TEST

/* --shared-memory auto on a daemon listening on every interface: off (the harness's starter
 * insists on 127.0.0.1, so this one starts the daemon itself). */
START_TEST(shm_auto_off_beyond_loopback)
{
    const char *path = getenv("YL_DAEMON");
    if (!path || !*path)
        path = "build/yololossd";
    yt_daemon d;
    memset(&d, 0, sizeof d);
    snprintf(d.errlog, sizeof d.errlog, "/tmp/yololossd-test-wire-%d-any.err", (int)getpid());
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int e = open(d.errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int o = open("/dev/null", O_WRONLY);
        dup2(e, 2);
        dup2(o, 1);
        execl(path, path, "--host", "0.0.0.0", "--port", "0", "--threads", "1", "--history",
              "none", (char *)NULL);
        _exit(127);
    }
    d.pid = pid;
    for (int i = 0; i < 6000 && !d.port; i++) { /* up to 30 s */
        char text[2048] = "";
        FILE *f = fopen(d.errlog, "r");
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = '\0';
        const char *p = strstr(text, "listening on http://0.0.0.0:");
        if (p)
            d.port = (unsigned)atoi(p + strlen("listening on http://0.0.0.0:"));
        else
            usleep(5000);
    }
    ck_assert_uint_gt(d.port, 0);
    json_t *m = yt_get_json(&d, "/v2"); /* 0.0.0.0 takes loopback connections too */
    char *ext = json_dumps(json_object_get(m, "extensions"), 0);
    ck_assert_msg(!strstr(ext, "system_shared_memory"), "%s", ext);
    free(ext);
    json_decref(m);
    yt_resp resp;
    ck_assert_int_eq(yt_get(&d, "/v2/systemsharedmemory/status", &resp), 400);
    yt_resp_free(&resp);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

Suite *yt_suite_wire(void)
{
    Suite *s = suite_create("wire");
    TCase *t = tcase_create("compact");
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, compact_equals_dense, 0,
                        (int)(sizeof compact_specs / sizeof compact_specs[0]));
    tcase_add_test(t, compact_json);
    tcase_add_test(t, compact_full_size);
    tcase_add_test(t, dense_fp64_gradients);
    tcase_add_test(t, compact_missing_row);
    tcase_add_test(t, compact_bad_inputs);
    tcase_add_test(t, compact_no_rows);
    tcase_add_test(t, extensions_advertised);
    suite_add_tcase(s, t);
    t = tcase_create("shm");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, shm_dense_roundtrip);
    tcase_add_test(t, shm_compact_roundtrip);
    tcase_add_test(t, shm_errors);
    tcase_add_test(t, shm_client_exits);
    tcase_add_test(t, shm_unregister_in_flight);
    tcase_add_test(t, shm_token_and_off);
    tcase_add_test(t, shm_auto_off_beyond_loopback);
    suite_add_tcase(s, t);
    return s;
}
