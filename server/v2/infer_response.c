/*
 * infer_response.c: the core's batch result to an Open Inference Protocol v2 response.
 *
 * The JSON part is written with a small string builder (numbers as "%.9g", which gives
 * every FP32 value back exactly; strings escaped by jansson), because a JSON gradient can
 * hold millions of numbers and a jansson tree of them would take ~10 times the memory. Binary
 * outputs are not copied: the payload's iovecs point at the gradient buffers the workers
 * wrote and at one small array holding the other outputs.
 */
#include "infer.h"
#include "shm.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* --------------------------------------------------------------------------------------- */
/* A growable string.                                                                        */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static bool sb_reserve(strbuf *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[128];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    b->oom = true; /* never: our formats are short */
}

/* A JSON string literal. */
static void sb_json_string(strbuf *b, const char *s)
{
    json_t *j = json_string(s);
    char *text = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (text)
        sb_str(b, text);
    else
        sb_str(b, "\"\"");
    free(text);
    json_decref(j);
}

static void sb_shape(strbuf *b, const int64_t *shape, int ndim)
{
    sb_str(b, "[");
    for (int d = 0; d < ndim; d++)
        sb_printf(b, "%s%" PRId64, d ? "," : "", shape[d]);
    sb_str(b, "]");
}

/* Values as a JSON array: -1, or the index of a value that is not finite. */
static int64_t sb_floats(strbuf *b, const float *v, size_t n)
{
    if (!sb_reserve(b, n * 16 + 2))
        return -1; /* b->oom tells */
    b->p[b->len++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return (int64_t)i;
        if (!sb_reserve(b, 18))
            return -1;
        if (i)
            b->p[b->len++] = ',';
        b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, "%.9g", (double)v[i]);
    }
    sb_put(b, "]", 1);
    return -1;
}

/* FP64 values: "%.17g" gives every double back exactly. */
static int64_t sb_doubles(strbuf *b, const double *v, size_t n)
{
    if (!sb_reserve(b, n * 25 + 2))
        return -1;
    b->p[b->len++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            return (int64_t)i;
        if (!sb_reserve(b, 27))
            return -1;
        if (i)
            b->p[b->len++] = ',';
        b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, "%.17g", v[i]);
    }
    sb_put(b, "]", 1);
    return -1;
}

/* --------------------------------------------------------------------------------------- */

/* The dense gradient of a compact layer: zero but the objectness channel of every anchor
 * (obj) and the full rows of the sent anchors (rows, which cover every truth anchor). The
 * dense problem's gradient is exactly that, so this is bit-identical to it. */
static void scatter_dense(void *dense, const void *obj, const void *rows, const int64_t *index,
                          int64_t n_rows, size_t anchors, size_t c5, size_t es)
{
    memset(dense, 0, anchors * c5 * es);
    uint8_t *d = dense;
    const uint8_t *o = obj;
    for (size_t a = 0; a < anchors; a++)
        memcpy(d + (a * c5 + 4) * es, o + a * es, es);
    const uint8_t *r = rows;
    for (int64_t k = 0; k < n_rows; k++)
        memcpy(d + (size_t)index[k] * c5 * es, r + (size_t)k * c5 * es, c5 * es);
}

int yls_infer_respond(yls_payload *out, const yls_infer_input *in, const char *model_name,
                      const yl_problem *p, const yl_result *res, const yl_image_result *images,
                      yls_grad_buf grads[YLS_GRAD_KINDS][YL_MAX_LAYERS], yls_encoding enc,
                      yls_fail *f)
{
    memset(out, 0, sizeof *out);
    int L = p->num_layers;

    /* The small outputs (those the table fills), FP32, in one array, in request order. */
    size_t n_small = 0, at[YLS_MAX_OUTPUTS];
    for (int i = 0; i < in->n_out; i++)
        if (yls_outputs[in->out[i].kind].fill) {
            int ndim;
            int64_t shape[YL_MAX_DIMS];
            size_t n;
            yls_output_shape(in, p, i, &ndim, shape, &n);
            at[i] = n_small;
            n_small += n;
        }
    float *small = malloc((n_small ? n_small : 1) * sizeof(float));
    if (!small)
        return yls_fail_set(f, 500, "out of memory for the response");
    out->small = small;
    yls_fill_ctx fc = {p, res, images};
    for (int i = 0; i < in->n_out; i++)
        if (yls_outputs[in->out[i].kind].fill)
            yls_outputs[in->out[i].kind].fill(small + at[i], &fc);

    /* the payload owns the gradient buffers it was given (binary outputs point into them) */
    for (int k = 0; k < YLS_GRAD_KINDS; k++)
        for (int l = 0; l < L; l++)
            if (grads[k][l].p && !grads[k][l].borrowed) {
                out->grads[k][l] = grads[k][l].p;
                grads[k][l].p = NULL;
            }
    size_t ges = in->grad_dtype == YL_F64 ? 8 : 4;

    strbuf js = {0};
    sb_str(&js, "{\"model_name\":");
    sb_json_string(&js, model_name);
    sb_str(&js, ",\"model_version\":\"1\"");
    if (in->id) {
        sb_str(&js, ",\"id\":");
        sb_json_string(&js, in->id);
    }
    sb_str(&js, ",\"outputs\":[");
    out->niov = 1;
    for (int i = 0; i < in->n_out; i++) {
        const yls_output_req *o = &in->out[i];
        int ndim;
        int64_t shape[YL_MAX_DIMS];
        size_t n;
        yls_output_shape(in, p, i, &ndim, shape, &n);
        size_t es = yls_output_esize(in, i);
        const void *v = NULL;
        yls_grad_kind g = yls_outputs[o->kind].grad;
        if (g == YLS_GRAD_NONE) {
            v = small + at[i];
        } else if (g == YLS_GRAD_DENSE && in->compact) {
            /* scattered from the compact gradient, into shared memory or a new buffer */
            int l = o->layer;
            void *dense = o->shm.region ? yls_output_shm_ptr(o) : yls_big_alloc(n * ges + 1);
            if (!dense) {
                free(js.p);
                return yls_fail_set(f, 503, "out of memory for the gradients; retry later");
            }
            if (!o->shm.region)
                out->grads[YLS_GRAD_DENSE][l] = dense;
            const void *obj = grads[YLS_GRAD_OBJ][l].p ? grads[YLS_GRAD_OBJ][l].p
                                                       : out->grads[YLS_GRAD_OBJ][l],
                       *rows = grads[YLS_GRAD_ROWS][l].p ? grads[YLS_GRAD_ROWS][l].p
                                                         : out->grads[YLS_GRAD_ROWS][l];
            scatter_dense(dense, obj, rows, in->cl[l].index, in->cl[l].n,
                          n / (size_t)(5 + p->num_classes), (size_t)(5 + p->num_classes), ges);
            v = dense;
        } else {
            v = grads[g][o->layer].p ? grads[g][o->layer].p : out->grads[g][o->layer];
        }
        char name[YLS_OUTPUT_NAME_MAX];
        yls_output_name(o->kind, o->layer, name, sizeof name);
        sb_printf(&js, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":", i ? "," : "", name,
                  es == 8 ? "FP64" : "FP32");
        sb_shape(&js, shape, ndim);
        size_t bytes = n * es;
        if (o->shm.region) {
            /* written in place by the core, or copied there now; answered as Triton answers
             * it, with name, datatype and shape only: Triton's C++ client reads
             * binary_data_size from any output that has parameters */
            void *dst = yls_output_shm_ptr(o);
            if (dst != v && bytes)
                memcpy(dst, v, bytes);
            sb_str(&js, "}");
        } else if (o->binary) {
            sb_printf(&js, ",\"parameters\":{\"binary_data_size\":%zu}}", bytes);
            out->iov[out->niov].iov_base = v;
            out->iov[out->niov].iov_len = bytes;
            out->niov++;
            out->total += bytes;
            out->binary = true;
        } else {
            sb_str(&js, ",\"data\":");
            int64_t bad = es == 8 ? sb_doubles(&js, v, n) : sb_floats(&js, v, n);
            if (bad >= 0) {
                double x = es == 8 ? ((const double *)v)[bad] : (double)((const float *)v)[bad];
                free(js.p);
                return yls_fail_set(f, 400,
                                    "output '%s': element %" PRId64 " is %g in %s, which JSON "
                                    "cannot carry; ask for it as binary data",
                                    name, bad, x, es == 8 ? "FP64" : "FP32");
            }
            sb_str(&js, "}");
        }
    }
    sb_str(&js, "]}");
    if (js.oom) {
        free(js.p);
        return yls_fail_set(f, 500, "out of memory for the response");
    }
    out->json = js.p;
    out->json_len = js.len;
    out->iov[0].iov_base = js.p;
    out->iov[0].iov_len = js.len;
    out->total += js.len;
    out->enc = YLS_ENC_IDENTITY;
    if (enc != YLS_ENC_IDENTITY) {
        size_t packed_len;
        if (yls_deflate(enc, out->iov, out->niov, &out->packed, &packed_len, f))
            return -1;
        out->iov[0].iov_base = out->packed;
        out->iov[0].iov_len = packed_len;
        out->niov = 1;
        out->total = packed_len;
        out->enc = enc;
    }
    return 0;
}

void yls_payload_free(yls_payload *p)
{
    if (!p)
        return;
    free(p->json);
    free(p->small);
    for (int k = 0; k < YLS_GRAD_KINDS; k++)
        for (int l = 0; l < YL_MAX_LAYERS; l++)
            yls_big_free(p->grads[k][l]);
    free(p->packed);
    memset(p, 0, sizeof *p);
}
