/*
 * yololoss_client.c: the v2 infer request of a batch, and its answer.
 *
 * A call chooses how its tensors travel (yololoss_client.h, TENSORS and TRANSPORT): dense
 * output_l or the compact exact tensors (compact.c), in the HTTP body (binary after the
 * JSON header, or JSON numbers: "%.9g" for FP32 and FP16, "%.17g" for FP64, exact) or in
 * the client's shared-memory region (shm.c), registered with the daemon on first use. The
 * answer is parsed whole; Inference-Header-Content-Length splits it into the JSON header
 * and the binary outputs, which are copied into the result. Compact gradients are
 * scattered back to the caller's dense layout unless the caller asks for them compact.
 */
#include "yololoss_client.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ylc_compact.h"
#include "ylc_http.h"
#include "ylc_shm.h"

#define DT_I64 100 /* the INT64 index tensors, internal to the wire */

struct ylc_client {
    ylc_http http;
    char *model;      /* URL-escaped */
    int tensors, transport;
    bool ext_known;   /* GET /v2 read */
    bool has_compact, has_shm;
    bool shm_off;     /* auto: the daemon could not use our region: the wire for good */
    ylc_shm shm;      /* registered with the daemon while shm.base is set */
};

static const char *const term_names[4] = {"xy", "wh", "confidence", "class"};
static const char *const stat_names[YLC_NUM_STATS] = {
    "count", "avg_iou", "avg_class", "avg_obj", "avg_noobj", "recall50", "recall75", "ignored"};

const char *ylc_term_name(int k) { return k >= 0 && k < 4 ? term_names[k] : NULL; }
const char *ylc_stat_name(int k) { return k >= 0 && k < YLC_NUM_STATS ? stat_names[k] : NULL; }

const char *ylc_dtype_name(int dtype)
{
    switch (dtype) {
    case YLC_F32: return "FP32";
    case YLC_F16: return "FP16";
    case YLC_BF16: return "BF16";
    case YLC_F64: return "FP64";
    default: return NULL;
    }
}

static size_t dtype_size(int dtype)
{
    switch (dtype) {
    case YLC_F64: case DT_I64: return 8;
    case YLC_F32: return 4;
    case YLC_F16: case YLC_BF16: return 2;
    default: return 0;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Client                                                                               */

int ylc_client_new(ylc_client **out, const ylc_options *opt, ylc_error *err)
{
    *out = NULL;
    const char *model = opt && opt->model ? opt->model : "yolov3";
    int tensors = opt ? opt->tensors : YLC_TENSORS_AUTO;
    int transport = opt ? opt->transport : YLC_TRANSPORT_AUTO;
    if (tensors < YLC_TENSORS_AUTO || tensors > YLC_TENSORS_DENSE)
        return ylc_fail(err, 0, "options: tensors %d is not a ylc_tensors value", tensors);
    if (transport < YLC_TRANSPORT_AUTO || transport > YLC_TRANSPORT_WIRE)
        return ylc_fail(err, 0, "options: transport %d is not a ylc_transport value", transport);
    ylc_client *c = calloc(1, sizeof *c);
    if (!c)
        return ylc_fail(err, 0, "out of memory");
    if (ylc_http_init(&c->http, opt, err)) {
        free(c);
        return -1;
    }
    c->tensors = tensors;
    c->transport = transport;
    c->model = curl_easy_escape(c->http.curl, model, 0);
    if (!c->model || strlen(c->model) > 120) {
        const char *why = c->model ? "model name too long" : "out of memory";
        ylc_client_free(c);
        return ylc_fail(err, 0, "%s", why);
    }
    *out = c;
    return 0;
}

unsigned long ylc_client_retries(const ylc_client *c) { return c->http.retries; }

static void shm_unregister(ylc_client *c, ylc_shm *s)
{
    if (!s->base)
        return;
    char path[128];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/unregister", s->name);
    /* one attempt, briefly: a daemon that is gone has unmapped it anyway */
    ylc_clock ck = ylc_clock_start(&c->http, c->http.timeout < 2 ? c->http.timeout : 2);
    ylc_answer a = {{0}, -1, -1};
    ylc_error e;
    ylc_segment body = {"{}", 2};
    const char *hdr[] = {"Content-Type: application/json", NULL};
    int keep = c->http.max_attempts;
    c->http.max_attempts = 1;
    ylc_http_exchange(&c->http, "POST", path, &body, 1, hdr, &ck, &a, &e);
    c->http.max_attempts = keep;
    free(a.body.p);
    ylc_shm_destroy(s);
}

void ylc_client_free(ylc_client *c)
{
    if (!c)
        return;
    shm_unregister(c, &c->shm);
    curl_free(c->model);
    ylc_http_free(&c->http);
    free(c);
}

long ylc_get(ylc_client *c, const char *path, char **body, ylc_error *err)
{
    if (body)
        *body = NULL;
    ylc_answer a = {{0}, -1, -1};
    ylc_clock ck = ylc_clock_start(&c->http, 0);
    long status = ylc_http_exchange(&c->http, "GET", path, NULL, 0, NULL, &ck, &a, err);
    if (status != 0 && body && a.body.p) {
        *body = a.body.p;
        a.body.p = NULL;
    } else if (status != 0 && body) {
        *body = calloc(1, 1);
    }
    free(a.body.p);
    return status;
}

/* The daemon's extensions (GET /v2), read once. -1: no answer (err filled). */
static int read_extensions(ylc_client *c, const ylc_clock *ck, ylc_error *err)
{
    if (c->ext_known)
        return 0;
    ylc_answer a = {{0}, -1, -1};
    long status = ylc_http_exchange(&c->http, "GET", "/v2", NULL, 0, NULL, ck, &a, err);
    if (status == 0) {
        free(a.body.p);
        return -1;
    }
    json_t *j = status == 200 ? json_loadb(a.body.p ? a.body.p : "", a.body.len, 0, NULL) : NULL;
    json_t *ext = json_object_get(j, "extensions");
    for (size_t i = 0; i < json_array_size(ext); i++) {
        const char *e = json_string_value(json_array_get(ext, i));
        if (e && !strcmp(e, "yololoss_compact"))
            c->has_compact = true;
        if (e && !strcmp(e, "system_shared_memory"))
            c->has_shm = true;
    }
    json_decref(j);
    free(a.body.p);
    /* a daemon that does not answer 200 offers nothing; a 5xx may be passing: ask again */
    c->ext_known = status < 500;
    return 0;
}

/* A registered region of at least size bytes. 0; -1 no answer (err); -2 the daemon refused
 * the region (err: its status and message); -3 it answered 5xx (err): passing trouble. */
static int shm_ensure(ylc_client *c, size_t size, const ylc_clock *ck, ylc_error *err)
{
    if (c->shm.base && c->shm.size >= size)
        return 0;
    size_t want = (size + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
    if (want < 2 * c->shm.size)
        want = 2 * c->shm.size;
    ylc_shm s;
    if (ylc_shm_create(&s, want) != 0)
        return ylc_fail(err, 0, "shared memory: cannot create a %zu-byte object: %s", want,
                        strerror(errno)), -2;
    char path[128], body[256];
    snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/register", s.name);
    int n = snprintf(body, sizeof body, "{\"key\":\"%s\",\"offset\":0,\"byte_size\":%zu}", s.key,
                     s.size);
    ylc_segment seg = {body, (size_t)n};
    const char *hdr[] = {"Content-Type: application/json", NULL};
    ylc_answer a = {{0}, -1, -1};
    long status = ylc_http_exchange(&c->http, "POST", path, &seg, 1, hdr, ck, &a, err);
    int rc = 0;
    if (status == 0) {
        rc = -1;
    } else if (status != 200) {
        ylc_http_error(err, status, &a);
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        ylc_fail(err, (int)status, "shared memory: the daemon did not register region '%s' "
                 "(key %s): %s", s.name, s.key, why);
        rc = status >= 500 ? -3 : -2;
    }
    free(a.body.p);
    if (rc) {
        ylc_shm_destroy(&s);
        return rc;
    }
    /* the daemon holds it mapped: the name can go, so nothing is left behind in /dev/shm */
    ylc_shm_unlink(&s);
    shm_unregister(c, &c->shm);
    c->shm = s;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The request                                                                            */

/* One input tensor of the request. */
typedef struct {
    char name[24];
    int dtype; /* YLC_* or DT_I64 */
    int ndim;
    int64_t shape[YLC_MAX_DIMS];
    size_t bytes;
    const void *src; /* its bytes, or NULL: a compact box (fill 1) or rows (fill 2) */
    int fill, layer;
    size_t off;      /* in the shared-memory region */
    void *owned;     /* a buffer filled for the wire */
} in_desc;

/* One gradient output. */
typedef struct {
    char name[24];
    size_t bytes;
    size_t off; /* in the shared-memory region */
} out_desc;

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return sign ? -v : v;
}

/* A tensor's values as JSON numbers. -1 (err filled) for a non-finite value. */
static int json_values(ylc_sbuf *b, const in_desc *t, ylc_error *err)
{
    size_t n = t->bytes / dtype_size(t->dtype);
    if (!ylc_sb_reserve(b, n * 12 + 2))
        return ylc_fail(err, 0, "out of memory");
    ylc_sb_put(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            ylc_sb_put(b, ",", 1);
        if (t->dtype == DT_I64) {
            ylc_sb_printf(b, "%" PRId64, ((const int64_t *)t->src)[i]);
            continue;
        }
        double v;
        const char *fmt = "%.9g";
        if (t->dtype == YLC_F32) {
            v = ((const float *)t->src)[i];
        } else if (t->dtype == YLC_F16) {
            v = half_to_float(((const uint16_t *)t->src)[i]);
        } else {
            v = ((const double *)t->src)[i];
            fmt = "%.17g";
        }
        if (!isfinite(v))
            return ylc_fail(err, 0, "%s: element %zu is %g, which JSON cannot carry "
                            "(and the server refuses anyway)", t->name, i, v);
        ylc_sb_printf(b, fmt, v);
    }
    ylc_sb_put(b, "]", 1);
    return 0;
}

static void add_tensor(in_desc *d, int *n, const char *name, const ylc_tensor *t)
{
    in_desc *x = &d[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->dtype = t->dtype;
    x->ndim = t->ndim;
    memcpy(x->shape, t->shape, sizeof x->shape);
    int64_t count = 1;
    for (int k = 0; k < t->ndim; k++)
        count *= t->shape[k];
    x->bytes = (size_t)count * dtype_size(t->dtype);
    x->src = t->data;
}

/* The inputs of the request: dense or compact outputs, then the ground truth. */
static int describe_inputs(const ylc_request *req, const ylc_compact_plan *plan, in_desc *d,
                           ylc_error *err)
{
    int n = 0;
    char name[24];
    for (int l = 0; l < req->n_outputs; l++) {
        const ylc_tensor *t = &req->outputs[l];
        if (!ylc_dtype_name(t->dtype))
            return ylc_fail(err, 0, "output_%d: unknown dtype %d", l, t->dtype);
        if (t->ndim < 1 || t->ndim > YLC_MAX_DIMS)
            return ylc_fail(err, 0, "output_%d: %d dimensions", l, t->ndim);
        if (!plan) {
            snprintf(name, sizeof name, "output_%d", l);
            add_tensor(d, &n, name, t);
            continue;
        }
        in_desc *x = &d[n++];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "output_%d_box", l);
        x->dtype = plan->dtype[l];
        x->ndim = 5;
        int64_t box[5] = {plan->B, plan->H[l], plan->W[l], 3, 5};
        memcpy(x->shape, box, sizeof box);
        x->bytes = ylc_compact_box_bytes(plan, l);
        x->fill = 1;
        x->layer = l;
        x = &d[n++];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "output_%d_rows", l);
        x->dtype = plan->dtype[l];
        x->ndim = 2;
        x->shape[0] = plan->n_rows[l];
        x->shape[1] = plan->row_len[l];
        x->bytes = ylc_compact_rows_bytes(plan, l);
        x->fill = 2;
        x->layer = l;
        x = &d[n++];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "output_%d_index", l);
        x->dtype = DT_I64;
        x->ndim = 1;
        x->shape[0] = plan->n_rows[l];
        x->bytes = ylc_compact_index_bytes(plan, l);
        x->src = plan->index[l];
    }
    const ylc_tensor *truth = req->boxes ? req->boxes : req->y_true;
    int n_truth = req->boxes ? 1 : req->n_y_true;
    for (int l = 0; l < n_truth; l++) {
        if (req->boxes)
            snprintf(name, sizeof name, "boxes");
        else
            snprintf(name, sizeof name, "y_true_%d", l);
        if (!ylc_dtype_name(truth[l].dtype))
            return ylc_fail(err, 0, "%s: unknown dtype %d", name, truth[l].dtype);
        if (truth[l].ndim < 1 || truth[l].ndim > YLC_MAX_DIMS)
            return ylc_fail(err, 0, "%s: %d dimensions", name, truth[l].ndim);
        add_tensor(d, &n, name, &truth[l]);
    }
    return n;
}

/* Where the compact box and rows of an input are written. */
static void fill_input(const ylc_compact_plan *plan, const in_desc *x, void *dst, in_desc *all,
                       int n)
{
    /* box and rows of a layer are filled together, by the box's descriptor */
    if (x->fill != 1)
        return;
    void *rows = NULL;
    for (int i = 0; i < n; i++)
        if (all[i].fill == 2 && all[i].layer == x->layer)
            rows = all[i].owned ? all[i].owned : (void *)all[i].src;
    ylc_compact_fill(plan, x->layer, dst, rows);
}

#define SHM_ALIGN 64
static size_t align_up(size_t x) { return (x + SHM_ALIGN - 1) & ~(size_t)(SHM_ALIGN - 1); }

/* ------------------------------------------------------------------------------------ */
/* The answer                                                                             */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[YLC_MAX_DIMS];
    size_t n;
    size_t es;        /* 4: FP32, 8: FP64 */
    const void *bin;  /* binary or shared-memory data (may be unaligned), or */
    json_t *data;     /* JSON numbers */
} out_view;

/* Copy an output's n values into dst, elements of es bytes (float or double). */
static int view_copy(const out_view *o, void *dst, size_t es, ylc_error *err)
{
    if (o->bin) {
        if (es != o->es)
            return ylc_fail(err, 200, "answer: output '%s' is %s, want %s", o->name,
                            o->es == 8 ? "FP64" : "FP32", es == 8 ? "FP64" : "FP32");
        memcpy(dst, o->bin, o->n * es);
        return 0;
    }
    for (size_t i = 0; i < o->n; i++) {
        json_t *v = json_array_get(o->data, i);
        if (!json_is_number(v))
            return ylc_fail(err, 200, "answer: output '%s' element %zu is not a number",
                            o->name, i);
        if (es == 8)
            ((double *)dst)[i] = json_number_value(v);
        else
            ((float *)dst)[i] = (float)json_number_value(v);
    }
    return 0;
}

static int view_doubles(const out_view *o, double *dst, size_t n, ylc_error *err)
{
    float tmp[YLC_MAX_LAYERS * YLC_NUM_STATS];
    if (o->n != n || n > sizeof tmp / sizeof tmp[0])
        return ylc_fail(err, 200, "answer: output '%s' has %zu values, want %zu", o->name, o->n,
                        n);
    if (o->es == 8)
        return view_copy(o, dst, 8, err);
    if (view_copy(o, tmp, 4, err))
        return -1;
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[i];
    return 0;
}

static void *dup_values(const out_view *o, size_t es, ylc_error *err)
{
    void *p = malloc(o->n * es + 1);
    if (!p) {
        ylc_fail(err, 0, "out of memory");
        return NULL;
    }
    if (view_copy(o, p, es, err)) {
        free(p);
        return NULL;
    }
    return p;
}

typedef struct {
    const ylc_request *req;
    const ylc_compact_plan *plan; /* NULL: dense */
    size_t grad_es;
    const out_desc *shm_outs;     /* NULL: no shared memory */
    int n_shm_outs;
    const ylc_shm *shm;
} answer_ctx;

/* The views of the answer's outputs into v (at most nv). -1 on a malformed answer. */
static int answer_views(const ylc_answer *a, const answer_ctx *x, json_t *outs, out_view *v,
                        int nv, ylc_error *err)
{
    size_t hlen = a->header_len >= 0 ? (size_t)a->header_len : a->body.len;
    size_t off = hlen;
    int k = 0;
    for (size_t i = 0; i < json_array_size(outs); i++) {
        json_t *o = json_array_get(outs, i);
        if (k == nv)
            return ylc_fail(err, 200, "answer: more outputs than asked for");
        out_view *w = &v[k];
        memset(w, 0, sizeof *w);
        w->name = json_string_value(json_object_get(o, "name"));
        const char *dt = json_string_value(json_object_get(o, "datatype"));
        json_t *shape = json_object_get(o, "shape");
        if (!w->name || !dt || (strcmp(dt, "FP32") && strcmp(dt, "FP64")) ||
            !json_is_array(shape) || json_array_size(shape) > YLC_MAX_DIMS)
            return ylc_fail(err, 200, "answer: output %zu is not an FP32 or FP64 tensor", i);
        w->es = strcmp(dt, "FP64") ? 4 : 8;
        w->ndim = (int)json_array_size(shape);
        w->n = 1;
        for (int d = 0; d < w->ndim; d++) {
            w->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
            if (w->shape[d] < 0)
                return ylc_fail(err, 200, "answer: output '%s' has a negative dimension",
                                w->name);
            w->n *= (size_t)w->shape[d];
        }
        json_t *params = json_object_get(o, "parameters");
        json_t *size = json_object_get(params, "binary_data_size");
        const out_desc *d = NULL;
        for (int j = 0; j < x->n_shm_outs; j++)
            if (!strcmp(x->shm_outs[j].name, w->name))
                d = &x->shm_outs[j];
        if (d && !size && !json_object_get(o, "data")) {
            /* asked for in the region: answered as Triton answers it, with name, datatype
             * and shape only */
            if (d->bytes != w->n * w->es)
                return ylc_fail(err, 200, "answer: output '%s' has %zu values, %zu bytes in "
                                "region '%s' were asked for", w->name, w->n, d->bytes,
                                x->shm->name);
            w->bin = (const char *)x->shm->base + d->off;
        } else if (size) {
            size_t bytes = (size_t)json_integer_value(size);
            if (bytes != w->n * w->es || off + bytes > a->body.len)
                return ylc_fail(err, 200, "answer: output '%s': %zu bytes for %zu values",
                                w->name, bytes, w->n);
            w->bin = a->body.p + off;
            off += bytes;
        } else {
            w->data = json_object_get(o, "data");
            if (json_array_size(w->data) != w->n)
                return ylc_fail(err, 200, "answer: output '%s' has no data", w->name);
        }
        k++;
    }
    return k;
}

/* grad_<l>, grad_<l>_obj, grad_<l>_rows: the layer and kind (0, 1, 2), or -1. */
static int grad_name(const char *name, int L, int *kind)
{
    if (strncmp(name, "grad_", 5) || name[5] < '0' || name[5] >= '0' + L)
        return -1;
    const char *rest = name + 6;
    *kind = !*rest ? 0 : !strcmp(rest, "_obj") ? 1 : !strcmp(rest, "_rows") ? 2 : -1;
    return *kind < 0 ? -1 : name[5] - '0';
}

static int set_dense_grad(ylc_result *res, const ylc_request *req, int l, void *g, size_t es)
{
    res->grad_borrowed[l] = g == req->grad_into[l];
    const ylc_tensor *t = &req->outputs[l];
    if (es == 8)
        res->grads_f64[l] = g;
    else
        res->grads[l] = g;
    res->grad_ndim[l] = t->ndim;
    memcpy(res->grad_shape[l], t->shape, sizeof t->shape);
    res->grad_count[l] = 1;
    for (int d = 0; d < t->ndim; d++)
        res->grad_count[l] *= t->shape[d];
    return 0;
}

static int parse_answer(const ylc_answer *a, const answer_ctx *x, ylc_result *res,
                        ylc_error *err)
{
    size_t hlen = a->header_len >= 0 ? (size_t)a->header_len : a->body.len;
    if (a->header_len == -2 || hlen > a->body.len)
        return ylc_fail(err, 200, "answer: bad Inference-Header-Content-Length");
    json_error_t je;
    json_t *root = json_loadb(a->body.p ? a->body.p : "", hlen, 0, &je);
    if (!root)
        return ylc_fail(err, 200, "answer: invalid JSON: %s", je.text);
    int rc = -1, want_layers = x->req->n_outputs;
    out_view v[5 + 2 * YLC_MAX_LAYERS];
    const char *mn = json_string_value(json_object_get(root, "model_name"));
    snprintf(res->model_name, sizeof res->model_name, "%s", mn ? mn : "");
    json_t *outs = json_object_get(root, "outputs");
    if (!json_is_array(outs)) {
        ylc_fail(err, 200, "answer: no \"outputs\"");
        goto out;
    }
    int nv = answer_views(a, x, outs, v, (int)(sizeof v / sizeof v[0]), err);
    if (nv < 0)
        goto out;
    for (int i = 0; i < nv; i++) /* one value per name (a second would leak the first) */
        for (int j = 0; j < i; j++)
            if (!strcmp(v[i].name, v[j].name)) {
                ylc_fail(err, 200, "answer: output '%s' twice", v[i].name);
                goto out;
            }
    int L = -1;
    for (int i = 0; i < nv; i++)
        if (!strcmp(v[i].name, "layer_terms") && v[i].ndim == 2 &&
            v[i].shape[0] <= YLC_MAX_LAYERS)
            L = (int)v[i].shape[0];
    if (L < 1 || L != want_layers) {
        ylc_fail(err, 200, "answer: no usable layer_terms");
        goto out;
    }
    res->num_layers = L;
    bool got[5] = {false};
    const out_view *obj[YLC_MAX_LAYERS] = {0}, *rows[YLC_MAX_LAYERS] = {0};
    for (int i = 0; i < nv; i++) {
        const out_view *w = &v[i];
        int r = 0, kind, l;
        if (!strcmp(w->name, "loss")) {
            r = view_doubles(w, &res->loss, 1, err);
            got[0] = true;
        } else if (!strcmp(w->name, "loss_terms")) {
            r = view_doubles(w, res->terms, 4, err);
            got[1] = true;
        } else if (!strcmp(w->name, "layer_terms")) {
            r = view_doubles(w, &res->layer_terms[0][0], (size_t)L * 4, err);
            got[2] = true;
        } else if (!strcmp(w->name, "stats")) {
            r = view_doubles(w, &res->stats[0][0], (size_t)L * YLC_NUM_STATS, err);
            got[3] = true;
        } else if (!strcmp(w->name, "image_terms")) {
            if (w->ndim != 2 || w->shape[1] != 4 || w->es != 4) {
                ylc_fail(err, 200, "answer: image_terms is not FP32 [B, 4]");
                goto out;
            }
            res->batch = w->shape[0];
            r = (res->image_terms = dup_values(w, 4, err)) ? 0 : -1;
            got[4] = true;
        } else if ((l = grad_name(w->name, L, &kind)) >= 0) {
            if (w->es != x->grad_es) {
                ylc_fail(err, 200, "answer: %s is not %s", w->name,
                         x->grad_es == 8 ? "FP64" : "FP32");
                goto out;
            }
            if (kind == 0 && !x->plan) {
                int64_t want = 1;
                for (int d = 0; d < x->req->outputs[l].ndim; d++)
                    want *= x->req->outputs[l].shape[d];
                void *into = x->req->grad_into[l];
                void *g = (int64_t)w->n != want ? NULL
                          : into ? (view_copy(w, into, x->grad_es, err) ? NULL : into)
                                 : dup_values(w, x->grad_es, err);
                if (!g) {
                    if ((int64_t)w->n != want)
                        ylc_fail(err, 200, "answer: %s has %zu values, want %" PRId64,
                                 w->name, w->n, want);
                    goto out;
                }
                set_dense_grad(res, x->req, l, g, x->grad_es);
            } else if (kind == 1 && x->plan) {
                obj[l] = w;
            } else if (kind == 2 && x->plan) {
                rows[l] = w;
            }
        }
        if (r)
            goto out;
    }
    for (int i = 0; i < 5; i++)
        if (!got[i]) {
            ylc_fail(err, 200, "answer: an output is missing");
            goto out;
        }
    for (int l = 0; x->plan && x->req->grads && l < L; l++) {
        const ylc_compact_plan *p = x->plan;
        if (!obj[l] || !rows[l] || (int64_t)obj[l]->n != p->anchors[l] ||
            (int64_t)rows[l]->n != p->n_rows[l] * p->row_len[l]) {
            ylc_fail(err, 200, "answer: grad_%d_obj and grad_%d_rows missing or misshapen", l, l);
            goto out;
        }
        if (x->req->grad_layout != YLC_GRAD_COMPACT && obj[l]->bin && rows[l]->bin) {
            /* straight from the answer (or the region) into the dense layout */
            void *into = x->req->grad_into[l];
            void *dense = into ? into
                               : malloc((size_t)(p->anchors[l] * p->row_len[l]) * x->grad_es + 1);
            if (!dense) {
                ylc_fail(err, 0, "out of memory");
                goto out;
            }
            ylc_compact_scatter(p, l, x->grad_es, obj[l]->bin, rows[l]->bin, dense);
            set_dense_grad(res, x->req, l, dense, x->grad_es);
            continue;
        }
        void *o = dup_values(obj[l], x->grad_es, err);
        void *r = o ? dup_values(rows[l], x->grad_es, err) : NULL;
        if (!r) {
            free(o);
            goto out;
        }
        if (x->req->grad_layout == YLC_GRAD_COMPACT) {
            ylc_compact_grad *cg = &res->cgrads[l];
            cg->obj = o;
            cg->rows = r;
            cg->n_rows = p->n_rows[l];
            cg->row_len = p->row_len[l];
            cg->anchors = p->anchors[l];
            cg->index = malloc((size_t)(p->n_rows[l] + 1) * sizeof(int64_t));
            if (!cg->index) {
                ylc_fail(err, 0, "out of memory");
                goto out;
            }
            memcpy(cg->index, p->index[l], (size_t)p->n_rows[l] * sizeof(int64_t));
            continue;
        }
        void *dense = x->req->grad_into[l] ? x->req->grad_into[l]
                      : malloc((size_t)(p->anchors[l] * p->row_len[l]) * x->grad_es + 1);
        if (dense)
            ylc_compact_scatter(p, l, x->grad_es, o, r, dense);
        free(o);
        free(r);
        if (!dense) {
            ylc_fail(err, 0, "out of memory");
            goto out;
        }
        set_dense_grad(res, x->req, l, dense, x->grad_es);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* One infer exchange                                                                    */

/* 0 done; -1 failed (err); -2 the daemon refused the shared-memory region, -3 could not
 * register it just now (5xx) (err). */
static int infer_once(ylc_client *c, const ylc_request *req, const ylc_clock *ck,
                      const ylc_compact_plan *plan, bool use_shm, ylc_result *res,
                      ylc_error *err)
{
    int L = req->n_outputs;
    bool json = req->json != 0;
    size_t grad_es = req->grad_datatype == YLC_F64 ? 8 : 4;
    in_desc in[3 * YLC_MAX_LAYERS + YLC_MAX_LAYERS];
    out_desc gout[2 * YLC_MAX_LAYERS];
    int n_in = 0, n_gout = 0, rc = -1;
    ylc_sbuf h = {0};
    ylc_answer a = {{0}, -1, -1};
    ylc_segment seg[3 * YLC_MAX_LAYERS + YLC_MAX_LAYERS + 1];
    int nseg = 1;

    n_in = describe_inputs(req, plan, in, err);
    if (n_in < 0)
        return -1;
    if (req->grads)
        for (int l = 0; l < L; l++) {
            if (!plan) {
                out_desc *o = &gout[n_gout++];
                snprintf(o->name, sizeof o->name, "grad_%d", l);
                o->bytes = in[l].bytes / dtype_size(in[l].dtype) * grad_es;
                continue;
            }
            out_desc *o = &gout[n_gout++];
            snprintf(o->name, sizeof o->name, "grad_%d_obj", l);
            o->bytes = (size_t)plan->anchors[l] * grad_es;
            o = &gout[n_gout++];
            snprintf(o->name, sizeof o->name, "grad_%d_rows", l);
            o->bytes = (size_t)(plan->n_rows[l] * plan->row_len[l]) * grad_es;
        }

    if (use_shm) {
        size_t off = 0;
        for (int i = 0; i < n_in; i++) {
            in[i].off = off;
            off = align_up(off + in[i].bytes);
        }
        for (int i = 0; i < n_gout; i++) {
            gout[i].off = off;
            off = align_up(off + gout[i].bytes);
        }
        int r = shm_ensure(c, off ? off : 1, ck, err);
        if (r)
            return r;
        char *base = c->shm.base;
        for (int i = 0; i < n_in; i++) { /* rows first: a box's fill writes its layer's rows */
            if (in[i].fill == 2)
                in[i].src = base + in[i].off;
        }
        for (int i = 0; i < n_in; i++) {
            if (in[i].fill == 1)
                fill_input(plan, &in[i], base + in[i].off, in, n_in);
            else if (!in[i].fill && in[i].bytes)
                memcpy(base + in[i].off, in[i].src, in[i].bytes);
        }
    } else if (plan) {
        for (int i = 0; i < n_in; i++)
            if (in[i].fill && !(in[i].owned = malloc(in[i].bytes + 1))) {
                ylc_fail(err, 0, "out of memory");
                goto out;
            }
        for (int i = 0; i < n_in; i++)
            if (in[i].fill == 1)
                fill_input(plan, &in[i], in[i].owned, in, n_in);
        for (int i = 0; i < n_in; i++)
            if (in[i].fill)
                in[i].src = in[i].owned;
    }

    /* the JSON header */
    ylc_sb_str(&h, "{");
    bool any_param = req->has_ignore_thresh || req->anchors || req->run || req->has_step ||
                     (req->grads && grad_es == 8);
    if (any_param) {
        const char *sep = "";
        ylc_sb_str(&h, "\"parameters\":{");
        if (req->has_ignore_thresh) {
            if (!isfinite(req->ignore_thresh)) {
                ylc_fail(err, 0, "ignore_thresh must be finite");
                goto out;
            }
            ylc_sb_printf(&h, "\"ignore_thresh\":%.17g", req->ignore_thresh);
            sep = ",";
        }
        if (req->anchors) {
            ylc_sb_printf(&h, "%s\"anchors\":", sep);
            ylc_sb_json_string(&h, req->anchors);
            sep = ",";
        }
        if (req->run) {
            ylc_sb_printf(&h, "%s\"run\":", sep);
            ylc_sb_json_string(&h, req->run);
            sep = ",";
        }
        if (req->has_step) {
            ylc_sb_printf(&h, "%s\"step\":%" PRId64, sep, req->step);
            sep = ",";
        }
        if (req->grads && grad_es == 8)
            ylc_sb_printf(&h, "%s\"grad_datatype\":\"FP64\"", sep);
        ylc_sb_str(&h, "},");
    }
    ylc_sb_str(&h, "\"inputs\":[");
    for (int i = 0; i < n_in; i++) {
        const in_desc *t = &in[i];
        ylc_sb_printf(&h, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", i ? "," : "",
                      t->name, t->dtype == DT_I64 ? "INT64" : ylc_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            ylc_sb_printf(&h, "%s%" PRId64, d ? "," : "", t->shape[d]);
        ylc_sb_str(&h, "]");
        if (use_shm) {
            ylc_sb_str(&h, ",\"parameters\":{\"shared_memory_region\":");
            ylc_sb_json_string(&h, c->shm.name);
            ylc_sb_printf(&h, ",\"shared_memory_offset\":%zu,\"shared_memory_byte_size\":%zu}",
                          t->off, t->bytes);
        } else if (json && t->dtype != YLC_BF16) {
            ylc_sb_str(&h, ",\"data\":");
            if (json_values(&h, t, err))
                goto out;
        } else {
            ylc_sb_printf(&h, ",\"parameters\":{\"binary_data_size\":%zu}", t->bytes);
            if (t->bytes) {
                seg[nseg].p = t->src;
                seg[nseg].len = t->bytes;
                nseg++;
            }
        }
        ylc_sb_str(&h, "}");
    }
    ylc_sb_str(&h, "],\"outputs\":[");
    static const char *const small[] = {"loss", "loss_terms", "layer_terms", "image_terms", "stats"};
    const char *bin = json ? "false" : "true";
    for (int i = 0; i < 5; i++)
        ylc_sb_printf(&h, "%s{\"name\":\"%s\",\"parameters\":{\"binary_data\":%s}}",
                      i ? "," : "", small[i], bin);
    for (int i = 0; i < n_gout; i++) {
        ylc_sb_printf(&h, ",{\"name\":\"%s\",\"parameters\":{", gout[i].name);
        if (use_shm) {
            ylc_sb_str(&h, "\"shared_memory_region\":");
            ylc_sb_json_string(&h, c->shm.name);
            ylc_sb_printf(&h, ",\"shared_memory_offset\":%zu,\"shared_memory_byte_size\":%zu}}",
                          gout[i].off, gout[i].bytes);
        } else {
            ylc_sb_printf(&h, "\"binary_data\":%s}}", bin);
        }
    }
    ylc_sb_str(&h, "]}");
    if (h.oom) {
        ylc_fail(err, 0, "out of memory");
        goto out;
    }
    seg[0].p = h.p;
    seg[0].len = h.len;

    char path[160];
    snprintf(path, sizeof path, "/v2/models/%s/infer", c->model);
    char hl[80];
    snprintf(hl, sizeof hl, "Inference-Header-Content-Length: %zu", h.len);
    const char *binary_hdrs[] = {"Content-Type: application/octet-stream", hl, NULL};
    const char *json_hdrs[] = {"Content-Type: application/json", NULL};
    long status = ylc_http_exchange(&c->http, "POST", path, seg, nseg,
                                    nseg > 1 ? binary_hdrs : json_hdrs, ck, &a, err);
    if (status == 0)
        goto out;
    if (status != 200) {
        ylc_http_error(err, status, &a);
        goto out;
    }
    answer_ctx x = {req, plan, grad_es, use_shm ? gout : NULL, use_shm ? n_gout : 0, &c->shm};
    if (parse_answer(&a, &x, res, err))
        goto out;
    res->compact = plan != NULL;
    res->shm = use_shm;
    res->grad_datatype = grad_es == 8 ? YLC_F64 : YLC_F32;
    for (int i = 0; i < nseg; i++)
        res->bytes_sent += (int64_t)seg[i].len;
    res->bytes_received = (int64_t)a.body.len;
    rc = 0;
out:
    for (int i = 0; i < n_in; i++)
        free(in[i].owned);
    free(h.p);
    free(a.body.p);
    return rc;
}

/* ------------------------------------------------------------------------------------ */

int ylc_compute(ylc_client *c, const ylc_request *req, ylc_result *res, ylc_error *err)
{
    memset(res, 0, sizeof *res);
    if (err)
        memset(err, 0, sizeof *err);
    int L = req->n_outputs;
    if (L < 1 || L > YLC_MAX_LAYERS)
        return ylc_fail(err, 0, "need 1 to %d outputs, got %d", YLC_MAX_LAYERS, L);
    if ((req->boxes != NULL) == (req->y_true != NULL && req->n_y_true > 0))
        return ylc_fail(err, 0, "give exactly one of boxes and y_true");
    if (req->y_true && req->n_y_true > YLC_MAX_LAYERS)
        return ylc_fail(err, 0, "at most %d y_true tensors", YLC_MAX_LAYERS);
    if (req->grad_datatype != YLC_F32 && req->grad_datatype != YLC_F64)
        return ylc_fail(err, 0, "grad_datatype must be YLC_F32 or YLC_F64");
    if (req->grad_layout != YLC_GRAD_DENSE && req->grad_layout != YLC_GRAD_COMPACT)
        return ylc_fail(err, 0, "grad_layout must be YLC_GRAD_DENSE or YLC_GRAD_COMPACT");

    ylc_clock ck = ylc_clock_start(&c->http, req->timeout);
    bool want_shm = c->transport == YLC_TRANSPORT_SHM ||
                    (c->transport == YLC_TRANSPORT_AUTO && c->http.loopback && !c->shm_off &&
                     !req->json);
    if (c->transport == YLC_TRANSPORT_SHM && req->json)
        return ylc_fail(err, 0, "JSON requests do not use shared memory (transport is shm)");
    bool need_ext = c->tensors == YLC_TENSORS_AUTO || (want_shm && c->transport == YLC_TRANSPORT_AUTO);
    if (need_ext && read_extensions(c, &ck, err))
        return -1;
    bool use_shm = want_shm && (c->transport == YLC_TRANSPORT_SHM || c->has_shm);
    bool compact = c->tensors == YLC_TENSORS_COMPACT ||
                   (c->tensors == YLC_TENSORS_AUTO && c->has_compact);
    ylc_compact_plan plan;
    memset(&plan, 0, sizeof plan);
    if (compact) {
        int r = ylc_compact_plan_make(&plan, req->outputs, L, req->boxes, req->y_true,
                                      req->n_y_true);
        if (r < 0)
            return ylc_fail(err, 0, "out of memory");
        compact = r == 0; /* 1: shapes the daemon will name; sent dense */
    }
    bool region_retried = false;
    int rc;
    for (;;) {
        rc = infer_once(c, req, &ck, compact ? &plan : NULL, use_shm, res, err);
        if (rc == 0)
            break;
        ylc_result_free(res);
        if (rc == -2 && c->transport == YLC_TRANSPORT_AUTO) {
            c->shm_off = true; /* the daemon cannot open our objects: the wire from now on */
            use_shm = false;
            continue;
        }
        if (rc == -3 && c->transport == YLC_TRANSPORT_AUTO) {
            use_shm = false; /* overloaded or draining: this call on the wire, ask again later */
            continue;
        }
        if (rc == -2 || rc == -3) {
            rc = -1;
            break;
        }
        /* a 400 about our region (a daemon restarted and lost it): register anew, once */
        if (use_shm && err && err->status == 400 && c->shm.base && strstr(err->msg, c->shm.name) &&
            !region_retried) {
            region_retried = true;
            ylc_shm_destroy(&c->shm); /* the daemon no longer knows it */
            continue;
        }
        /* a compact request the daemon finds short of a truth row (the contract says it
         * cannot happen): the dense request is the authority */
        if (compact && c->tensors == YLC_TENSORS_AUTO && err && err->status == 400 &&
            strstr(err->msg, "no row for the truth anchor")) {
            compact = false;
            continue;
        }
        break;
    }
    ylc_compact_plan_free(&plan);
    return rc;
}

void ylc_result_free(ylc_result *r)
{
    if (!r)
        return;
    free(r->image_terms);
    for (int l = 0; l < YLC_MAX_LAYERS; l++) {
        if (!r->grad_borrowed[l]) {
            free(r->grads[l]);
            free(r->grads_f64[l]);
        }
        free(r->cgrads[l].obj);
        free(r->cgrads[l].rows);
        free(r->cgrads[l].index);
    }
    memset(r, 0, sizeof *r);
}
