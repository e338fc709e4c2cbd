/*
 * cases.c: random problems, the core's answer for them computed in-process, requests that
 * carry them (binary, JSON flat or nested, mixed), and the parsing and bitwise checking of
 * the daemon's answers.
 */
#include "harness.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------ */
/* Random tensors                                                                       */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s, double a, double b)
{
    return a + (b - a) * ((double)(rng_next(s) >> 11) / 9007199254740992.0);
}

static void store(void *buf, int dtype, int64_t i, double x)
{
    switch (dtype) {
    case YL_F32: ((float *)buf)[i] = (float)x; break;
    case YL_F64: ((double *)buf)[i] = x; break;
    case YL_F16: ((uint16_t *)buf)[i] = yl_double_to_half(x); break;
    case YL_BF16: ((uint16_t *)buf)[i] = yl_double_to_bf16(x); break;
    }
}

static double load(const void *buf, int dtype, int64_t i)
{
    switch (dtype) {
    case YL_F32: return ((const float *)buf)[i];
    case YL_F64: return ((const double *)buf)[i];
    case YL_F16: return yl_half_to_double(((const uint16_t *)buf)[i]);
    case YL_BF16: return yl_bf16_to_double(((const uint16_t *)buf)[i]);
    }
    return 0;
}

static int64_t elems(const yl_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

static void *new_buf(yt_case *c, size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    c->bufs[c->nbufs++] = p;
    return p;
}

void yt_case_make(yt_case *c, const yt_spec *s)
{
    memset(c, 0, sizeof *c);
    c->spec = *s;
    uint64_t rng = s->seed * 7919 + 17;
    yl_config_default(&c->cfg, s->num_anchors);
    if (s->ignore_thresh > 0)
        c->cfg.ignore_thresh = s->ignore_thresh;
    if (s->anchors) {
        const char *p = s->anchors;
        int n = 0;
        while (*p && n < 18) {
            char *end;
            c->cfg.anchors[n++] = strtod(p, &end);
            p = *end == ',' ? end + 1 : end;
        }
        ck_assert_int_eq(n, 2 * s->num_anchors);
        c->cfg.num_anchors = s->num_anchors;
    }
    int L = c->L = s->num_anchors / 3;
    int64_t B = s->B, C = s->C, ch = 3 * (5 + C);
    static const int by_layer[3] = {YL_F32, YL_F16, YL_BF16};
    for (int l = 0; l < L; l++) {
        int64_t H = s->H0 << l, W = s->W0 << l;
        yl_tensor *t = &c->out[l];
        t->dtype = s->out_dtype >= 0 ? s->out_dtype : by_layer[l];
        if (s->out5d) {
            t->ndim = 5;
            int64_t sh[5] = {B, H, W, 3, 5 + C};
            memcpy(t->shape, sh, sizeof sh);
        } else {
            t->ndim = 4;
            int64_t sh[4] = {B, H, W, ch};
            memcpy(t->shape, sh, sizeof sh);
        }
        int64_t n = elems(t);
        void *buf = new_buf(c, (size_t)n * yl_dtype_size(t->dtype));
        for (int64_t i = 0; i < n; i++)
            store(buf, t->dtype, i, rng_uniform(&rng, -4, 4));
        t->data = buf;
    }
    /* boxes: absolute pixels inside the input, padding rows (zero width) at the end */
    double iw = 32.0 * (double)s->W0, ih = 32.0 * (double)s->H0;
    int64_t T = s->T;
    yl_tensor boxes = {.dtype = s->truth == YT_BOXES ? s->truth_dtype : YL_F32, .ndim = 3,
                       .shape = {B, T, 5}};
    void *bb = new_buf(c, (size_t)(B * T * 5) * yl_dtype_size(boxes.dtype));
    for (int64_t b = 0; b < B; b++) {
        int64_t valid = T > 1 ? 1 + (int64_t)(rng_next(&rng) % (uint64_t)(T - 1)) : T;
        for (int64_t t = 0; t < T; t++) {
            double v[5] = {0, 0, 0, 0, 0};
            if (t < valid) {
                double bw = floor(rng_uniform(&rng, 4, iw * 0.8));
                double bh = floor(rng_uniform(&rng, 4, ih * 0.8));
                v[0] = floor(rng_uniform(&rng, 0, iw - bw));
                v[1] = floor(rng_uniform(&rng, 0, ih - bh));
                v[2] = v[0] + bw;
                v[3] = v[1] + bh;
                v[4] = (double)(rng_next(&rng) % (uint64_t)C);
            }
            for (int k = 0; k < 5; k++)
                store(bb, boxes.dtype, (b * T + t) * 5 + k, v[k]);
        }
    }
    boxes.data = bb;
    yl_error err;
    yl_problem p;
    if (s->truth == YT_BOXES) {
        c->boxes = boxes;
    } else {
        /* dense truth: what preprocess_true_boxes makes of the boxes, in the wanted dtype */
        ck_assert_msg(yl_problem_init(&p, &c->cfg, c->out, L, &boxes, NULL, 0, &err) == YL_OK,
                      "%s", err.msg);
        float *dense[YL_MAX_LAYERS];
        for (int l = 0; l < L; l++) {
            int64_t n = B * (s->H0 << l) * (s->W0 << l) * ch;
            dense[l] = malloc((size_t)n * sizeof(float));
            ck_assert_ptr_nonnull(dense[l]);
        }
        ck_assert_msg(yl_boxes_to_y_true(&p, dense, &err) == YL_OK, "%s", err.msg);
        for (int l = 0; l < L; l++) {
            int64_t H = s->H0 << l, W = s->W0 << l, n = B * H * W * ch;
            yl_tensor *t = &c->y_true[l];
            t->dtype = s->truth_dtype;
            if (s->truth == YT_DENSE5) {
                t->ndim = 5;
                int64_t sh[5] = {B, H, W, 3, 5 + C};
                memcpy(t->shape, sh, sizeof sh);
            } else {
                t->ndim = 4;
                int64_t sh[4] = {B, H, W, ch};
                memcpy(t->shape, sh, sizeof sh);
            }
            void *buf = new_buf(c, (size_t)n * yl_dtype_size(t->dtype));
            for (int64_t i = 0; i < n; i++)
                store(buf, t->dtype, i, dense[l][i]);
            t->data = buf;
            free(dense[l]);
        }
    }
    /* the expected answer */
    ck_assert_msg(yl_problem_init(&p, &c->cfg, c->out, L, s->truth == YT_BOXES ? &c->boxes : NULL,
                                  s->truth == YT_BOXES ? NULL : c->y_true,
                                  s->truth == YT_BOXES ? 0 : L, &err) == YL_OK,
                  "%s", err.msg);
    for (int l = 0; l < L; l++) {
        c->grads[l] = calloc((size_t)elems(&c->out[l]), sizeof(float));
        ck_assert_ptr_nonnull(c->grads[l]);
    }
    c->image_terms = calloc((size_t)B * 4, sizeof(double));
    yl_grads g = {.dtype = YL_F32};
    for (int l = 0; l < L; l++)
        g.layer[l] = c->grads[l];
    ck_assert_msg(yl_compute(&p, 1, &g, &c->res, c->image_terms, &err) == YL_OK, "%s", err.msg);
}

void yt_case_free(yt_case *c)
{
    for (int i = 0; i < c->nbufs; i++)
        free(c->bufs[i]);
    for (int l = 0; l < YL_MAX_LAYERS; l++)
        free(c->grads[l]);
    free(c->image_terms);
    memset(c, 0, sizeof *c);
}

float *yt_expected(const yt_case *c, const char *name, size_t *n, int *ndim, int64_t *shape)
{
    int L = c->L;
    int64_t B = c->spec.B;
    float *v = NULL;
    if (!strcmp(name, "loss")) {
        *n = 1, *ndim = 1, shape[0] = 1;
        v = malloc(sizeof(float));
        v[0] = (float)c->res.loss;
    } else if (!strcmp(name, "loss_terms")) {
        *n = 4, *ndim = 1, shape[0] = 4;
        v = malloc(4 * sizeof(float));
        for (int k = 0; k < 4; k++)
            v[k] = (float)c->res.terms[k];
    } else if (!strcmp(name, "layer_terms")) {
        *n = (size_t)L * 4, *ndim = 2, shape[0] = L, shape[1] = 4;
        v = malloc(*n * sizeof(float));
        for (int l = 0; l < L; l++)
            for (int k = 0; k < 4; k++)
                v[l * 4 + k] = (float)c->res.layer_terms[l][k];
    } else if (!strcmp(name, "image_terms")) {
        *n = (size_t)B * 4, *ndim = 2, shape[0] = B, shape[1] = 4;
        v = malloc(*n * sizeof(float));
        for (size_t i = 0; i < *n; i++)
            v[i] = (float)c->image_terms[i];
    } else if (!strcmp(name, "stats")) {
        *n = (size_t)L * YL_NUM_STATS, *ndim = 2, shape[0] = L, shape[1] = YL_NUM_STATS;
        v = malloc(*n * sizeof(float));
        for (int l = 0; l < L; l++)
            for (int k = 0; k < YL_NUM_STATS; k++)
                v[l * YL_NUM_STATS + k] = (float)c->res.stats[l][k];
    } else if (!strncmp(name, "grad_", 5)) {
        int l = atoi(name + 5);
        ck_assert_int_lt(l, L);
        const yl_tensor *t = &c->out[l];
        *n = (size_t)elems(t), *ndim = t->ndim;
        memcpy(shape, t->shape, sizeof t->shape);
        v = malloc(*n * sizeof(float));
        memcpy(v, c->grads[l], *n * sizeof(float));
    } else {
        ck_abort_msg("no expected value for output %s", name);
    }
    return v;
}

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                             */

static json_t *nested(const yl_tensor *t, int d, int64_t *pos)
{
    json_t *a = json_array();
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (d + 1 < t->ndim)
            json_array_append_new(a, nested(t, d + 1, pos));
        else
            json_array_append_new(a, json_real(load(t->data, t->dtype, (*pos)++)));
    }
    return a;
}

typedef struct {
    const char *name;
    const yl_tensor *t;
} named;

uint8_t *yt_request_body(const yt_case *c, const yt_send *s, size_t *len, size_t *header_len)
{
    named ins[2 * YL_MAX_LAYERS + 1];
    static const char *const out_names[] = {"output_0", "output_1", "output_2"};
    static const char *const yt_names[] = {"y_true_0", "y_true_1", "y_true_2"};
    int n = 0;
    for (int l = 0; l < c->L; l++)
        ins[n++] = (named){out_names[l], &c->out[l]};
    if (c->spec.truth == YT_BOXES)
        ins[n++] = (named){"boxes", &c->boxes};
    else
        for (int l = 0; l < c->L; l++)
            ins[n++] = (named){yt_names[l], &c->y_true[l]};

    json_t *root = json_object();
    if (s->id)
        json_object_set_new(root, "id", json_string(s->id));
    json_t *params = json_object();
    if (s->binary_data_output)
        json_object_set_new(params, "binary_data_output", json_true());
    if (s->params)
        json_object_update(params, s->params);
    if (json_object_size(params))
        json_object_set_new(root, "parameters", params);
    else
        json_decref(params);
    json_t *inputs = json_array();
    const void *blob[2 * YL_MAX_LAYERS + 2];
    size_t blob_len[2 * YL_MAX_LAYERS + 2];
    int nblob = 0;
    for (int i = 0; i < n; i++) {
        const yl_tensor *t = ins[i].t;
        bool binary = s->input_mode == 0 || t->dtype == YL_BF16 || (s->input_mode == 3 && i % 2 == 0);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *in = json_pack("{s:s,s:o,s:s}", "name", ins[i].name, "shape", shape, "datatype",
                               yl_dtype_name(t->dtype));
        int64_t count = elems(t);
        if (binary) {
            size_t bytes = (size_t)count * yl_dtype_size(t->dtype);
            json_object_set_new(in, "parameters",
                                json_pack("{s:I}", "binary_data_size", (json_int_t)bytes));
            blob[nblob] = t->data;
            blob_len[nblob++] = bytes;
        } else if (s->input_mode == 2) {
            int64_t pos = 0;
            json_object_set_new(in, "data", nested(t, 0, &pos));
        } else {
            json_t *data = json_array();
            for (int64_t k = 0; k < count; k++)
                json_array_append_new(data, json_real(load(t->data, t->dtype, k)));
            json_object_set_new(in, "data", data);
        }
        json_array_append_new(inputs, in);
    }
    if (s->extra_input)
        json_array_append(inputs, s->extra_input);
    if (s->extra_blob) {
        blob[nblob] = s->extra_blob;
        blob_len[nblob++] = s->extra_blob_len;
    }
    json_object_set_new(root, "inputs", inputs);
    if (s->outputs[0]) {
        json_t *outs = json_array();
        for (int i = 0; i < 12 && s->outputs[i]; i++) {
            json_t *o = json_pack("{s:s}", "name", s->outputs[i]);
            if (s->output_binary >= 0)
                json_object_set_new(o, "parameters",
                                    json_pack("{s:b}", "binary_data", s->output_binary));
            json_array_append_new(outs, o);
        }
        json_object_set_new(root, "outputs", outs);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    ck_assert_ptr_nonnull(text);
    size_t jl = strlen(text), total = jl;
    for (int i = 0; i < nblob; i++)
        total += blob_len[i];
    uint8_t *body = malloc(total ? total : 1);
    ck_assert_ptr_nonnull(body);
    memcpy(body, text, jl);
    free(text);
    size_t off = jl;
    for (int i = 0; i < nblob; i++) {
        memcpy(body + off, blob[i], blob_len[i]);
        off += blob_len[i];
    }
    *len = total;
    *header_len = nblob ? jl : 0;
    return body;
}

long yt_infer(const yt_daemon *d, const yt_case *c, const yt_send *s, yt_resp *resp)
{
    size_t len, hl;
    uint8_t *body = yt_request_body(c, s, &len, &hl);
    char path[128], ih[64];
    snprintf(path, sizeof path, "/v2/models/%s/infer",
             s->model ? s->model : c->L == 3 ? "yolov3" : "yolov3-tiny");
    yt_req req = {.path = path, .body = body, .len = len};
    int nh = 0;
    req.headers[nh++] = "Expect:";
    if (hl) {
        snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", hl);
        req.headers[nh++] = ih;
    }
    long st = yt_http(d, &req, resp);
    free(body);
    return st;
}

/* ------------------------------------------------------------------------------------ */
/* Responses                                                                            */

int yt_parse_outputs(const yt_resp *r, yt_outputs *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    char hb[32];
    const char *ih = yt_header(r, "Inference-Header-Content-Length", hb, sizeof hb);
    size_t jl = ih ? (size_t)strtoull(ih, NULL, 10) : r->len;
    if (jl > r->len) {
        snprintf(err, errlen, "header length %zu > body %zu", jl, r->len);
        return -1;
    }
    json_error_t je;
    o->root = json_loadb(r->body, jl, 0, &je);
    if (!o->root) {
        snprintf(err, errlen, "bad JSON: %s", je.text);
        return -1;
    }
    json_t *outs = json_object_get(o->root, "outputs");
    size_t off = jl, i;
    json_t *x;
    json_array_foreach(outs, i, x) {
        if (o->n == 16)
            break;
        yt_output *y = &o->out[o->n++];
        snprintf(y->name, sizeof y->name, "%s", json_string_value(json_object_get(x, "name")));
        snprintf(y->datatype, sizeof y->datatype, "%s",
                 json_string_value(json_object_get(x, "datatype")));
        json_t *shape = json_object_get(x, "shape");
        y->ndim = (int)json_array_size(shape);
        size_t n = 1;
        for (int d = 0; d < y->ndim && d < YL_MAX_DIMS; d++) {
            y->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
            n *= (size_t)y->shape[d];
        }
        y->n = n;
        y->v = malloc(n ? n * sizeof(float) : 1);
        json_t *bs = json_object_get(json_object_get(x, "parameters"), "binary_data_size");
        if (bs) {
            size_t bytes = (size_t)json_integer_value(bs);
            if (bytes != n * sizeof(float) || off + bytes > r->len) {
                snprintf(err, errlen, "%s: binary_data_size %zu for %zu values, %zu left", y->name,
                         bytes, n, r->len - off);
                return -1;
            }
            memcpy(y->v, r->body + off, bytes);
            off += bytes;
            y->binary = true;
        } else {
            json_t *data = json_object_get(x, "data");
            if (json_array_size(data) != n) {
                snprintf(err, errlen, "%s: %zu values for shape of %zu", y->name,
                         json_array_size(data), n);
                return -1;
            }
            for (size_t k = 0; k < n; k++)
                y->v[k] = (float)json_number_value(json_array_get(data, k));
        }
    }
    if (off != r->len) {
        snprintf(err, errlen, "%zu bytes left after the outputs", r->len - off);
        return -1;
    }
    return 0;
}

void yt_outputs_free(yt_outputs *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->out[i].v);
    json_decref(o->root);
    memset(o, 0, sizeof *o);
}

const yt_output *yt_find(const yt_outputs *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->out[i].name, name))
            return &o->out[i];
    return NULL;
}

int yt_compare_output(const yt_case *c, const yt_outputs *o, const char *name, char *err,
                      size_t errlen)
{
    const yt_output *y = yt_find(o, name);
    if (!y) {
        snprintf(err, errlen, "output %s missing", name);
        return -1;
    }
    if (strcmp(y->datatype, "FP32") != 0) {
        snprintf(err, errlen, "output %s: datatype %s", name, y->datatype);
        return -1;
    }
    size_t n;
    int ndim;
    int64_t shape[YL_MAX_DIMS];
    float *want = yt_expected(c, name, &n, &ndim, shape);
    int rc = 0;
    if (y->ndim != ndim || y->n != n) {
        snprintf(err, errlen, "output %s: %d dims, %zu values; want %d, %zu", name, y->ndim, y->n,
                 ndim, n);
        rc = -1;
    }
    for (int d = 0; d < ndim && rc == 0; d++)
        if (y->shape[d] != shape[d]) {
            snprintf(err, errlen, "output %s: dim %d is %" PRId64 ", want %" PRId64, name, d,
                     y->shape[d], shape[d]);
            rc = -1;
        }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (memcmp(&y->v[i], &want[i], sizeof(float)) != 0) {
            snprintf(err, errlen, "%s[%zu]: got %.9g (%a), want %.9g (%a)", name, i,
                     (double)y->v[i], (double)y->v[i], (double)want[i], (double)want[i]);
            rc = -1;
        }
    free(want);
    return rc;
}

void yt_check_output(const yt_case *c, const yt_outputs *o, const char *name)
{
    char err[512];
    ck_assert_msg(yt_compare_output(c, o, name, err, sizeof err) == 0, "%s", err);
}

void yt_check_all(const yt_case *c, const yt_outputs *o)
{
    static const char *const names[] = {"loss", "loss_terms", "layer_terms", "image_terms",
                                        "stats"};
    for (int i = 0; i < 5; i++)
        yt_check_output(c, o, names[i]);
    for (int l = 0; l < c->L; l++) {
        char g[16];
        snprintf(g, sizeof g, "grad_%d", l);
        yt_check_output(c, o, g);
    }
    ck_assert_int_eq(o->n, 5 + c->L);
}

void yt_check_answer(const yt_case *c, yt_resp *r)
{
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(r, &o, err, sizeof err) == 0, "%s", err);
    yt_check_all(c, &o);
    yt_outputs_free(&o);
    yt_resp_free(r);
}

long yt_send_point(const yt_daemon *d, const char *run, int step, uint64_t seed, double *loss,
                   yt_resp *resp)
{
    yt_spec spec = {.num_anchors = 6, .B = 2, .H0 = 1, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = seed};
    yt_case c;
    yt_case_make(&c, &spec);
    json_t *params = step >= 0 ? json_pack("{s:s,s:i}", "run", run, "step", step)
                               : json_pack("{s:s}", "run", run);
    yt_send s = {.input_mode = 0, .output_binary = -1, .outputs = {"loss"}, .params = params};
    yt_resp r;
    long status = yt_infer(d, &c, &s, &r);
    if (loss)
        *loss = c.res.loss;
    if (resp)
        *resp = r;
    else
        yt_resp_free(&r);
    json_decref(params);
    yt_case_free(&c);
    return status;
}

long yt_record_point(const yt_daemon *d, const char *run, int step, uint64_t seed)
{
    return yt_send_point(d, run, step, seed, NULL, NULL);
}
