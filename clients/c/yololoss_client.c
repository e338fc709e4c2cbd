/*
 * yololoss_client.c: the v2 infer request as one libcurl POST, and its answer parsed.
 *
 * The request body is the JSON header followed by the input tensors' bytes, streamed from
 * the caller's buffers by a read callback (never copied together). JSON mode writes the
 * numbers into the header instead ("%.9g" for FP32 and FP16, "%.17g" for FP64: exact).
 * The answer is collected whole; Inference-Header-Content-Length splits it into the JSON
 * header and the binary outputs, which are copied into the result.
 */
#include "yololoss_client.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

struct ylc_client {
    CURL *curl;
    char *base;  /* URL without a trailing slash */
    char *model; /* URL-escaped */
    struct curl_slist *auth; /* the Authorization header, NULL: none */
    double timeout;
    int max_attempts; /* 0: as many as the deadline allows */
    double backoff_base, backoff_max;
    uint64_t rng;     /* the backoff's jitter (xorshift64) */
    unsigned long retries;
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
    return dtype == YLC_F64 ? 8 : dtype == YLC_F32 ? 4 : (dtype == YLC_F16 || dtype == YLC_BF16) ? 2 : 0;
}

static int fail(ylc_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ylc_error *err, int status, const char *fmt, ...)
{
    if (err) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------ */
/* A growable string.                                                                   */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static bool sb_reserve(sbuf *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->len + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
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

static void sb_put(sbuf *b, const void *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !sb_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string literal (jansson escapes it). */
static void sb_json_string(sbuf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (t)
        sb_str(b, t);
    else
        b->oom = true;
    free(t);
    json_decref(j);
}

/* ------------------------------------------------------------------------------------ */
/* Client                                                                               */

static int global_init(ylc_error *err)
{
    static bool done;
    if (!done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return fail(err, 0, "curl_global_init failed");
        done = true;
    }
    return 0;
}

int ylc_client_new(ylc_client **out, const ylc_options *opt, ylc_error *err)
{
    *out = NULL;
    if (global_init(err))
        return -1;
    const char *url = opt && opt->url ? opt->url : "http://127.0.0.1:8000";
    const char *model = opt && opt->model ? opt->model : "yolov3";
    ylc_client *c = calloc(1, sizeof *c);
    if (!c)
        return fail(err, 0, "out of memory");
    c->timeout = opt && opt->timeout > 0 ? opt->timeout : 60.0;
    c->max_attempts = opt && opt->max_attempts > 0 ? opt->max_attempts : 0;
    c->backoff_base = opt && opt->backoff_base > 0 ? opt->backoff_base : 0.1;
    c->backoff_max = opt && opt->backoff_max > 0 ? opt->backoff_max : 5.0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->rng = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
             ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    if (!c->rng)
        c->rng = 1;
    c->curl = curl_easy_init();
    if (!c->curl)
        goto oom;
    if (!strstr(url, "://")) {
        c->base = malloc(strlen(url) + 8);
        if (c->base)
            sprintf(c->base, "http://%s", url);
    } else {
        c->base = strdup(url);
    }
    if (!c->base)
        goto oom;
    size_t n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    c->model = curl_easy_escape(c->curl, model, 0);
    if (!c->model)
        goto oom;
    if (opt && opt->token && *opt->token) {
        char *h = malloc(strlen(opt->token) + 32);
        if (!h)
            goto oom;
        sprintf(h, "Authorization: Bearer %s", opt->token);
        c->auth = curl_slist_append(NULL, h);
        free(h);
        if (!c->auth)
            goto oom;
    }
    *out = c;
    return 0;
oom:
    ylc_client_free(c);
    return fail(err, 0, "out of memory");
}

unsigned long ylc_client_retries(const ylc_client *c) { return c->retries; }

void ylc_client_free(ylc_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_free(c->model);
    curl_slist_free_all(c->auth);
    free(c->base);
    free(c);
}

/* ------------------------------------------------------------------------------------ */
/* One HTTP exchange, with 503 retries.                                                  */

typedef struct {
    const void *p;
    size_t len;
} segment;

typedef struct {
    const segment *seg;
    int nseg;
    int i;
    size_t off;
} body_reader;

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    body_reader *r = userdata;
    size_t room = size * nitems, n = 0;
    while (n < room && r->i < r->nseg) {
        const segment *s = &r->seg[r->i];
        size_t k = s->len - r->off;
        if (k > room - n)
            k = room - n;
        memcpy(buf + n, (const char *)s->p + r->off, k);
        n += k;
        r->off += k;
        if (r->off == s->len) {
            r->i++;
            r->off = 0;
        }
    }
    return n;
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
    body_reader *r = userdata;
    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK;
    r->i = 0;
    r->off = 0;
    return CURL_SEEKFUNC_OK;
}

typedef struct {
    sbuf body;
    long long header_len; /* Inference-Header-Content-Length, -1: absent */
    double retry_after;   /* -1: absent */
} answer;

static size_t on_write(char *p, size_t size, size_t nmemb, void *userdata)
{
    answer *a = userdata;
    size_t n = size * nmemb;
    sb_put(&a->body, p, n);
    return a->body.oom ? 0 : n;
}

/* "Name: value" -> value when the name matches (case-insensitive), else NULL. */
static const char *header_value(const char *line, size_t len, const char *name, char *buf,
                                size_t buflen)
{
    size_t k = strlen(name);
    if (len <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
        return NULL;
    const char *v = line + k + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t m = (size_t)(end - v) < buflen - 1 ? (size_t)(end - v) : buflen - 1;
    memcpy(buf, v, m);
    buf[m] = '\0';
    return buf;
}

static size_t on_header(char *p, size_t size, size_t nitems, void *userdata)
{
    answer *a = userdata;
    size_t n = size * nitems;
    char v[64];
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after a 100 Continue) */
        a->header_len = -1;
        a->retry_after = -1;
    } else if (header_value(p, n, "Inference-Header-Content-Length", v, sizeof v)) {
        char *e;
        errno = 0;
        long long x = strtoll(v, &e, 10);
        a->header_len = (errno || *e || x < 0) ? -2 : x;
    } else if (header_value(p, n, "Retry-After", v, sizeof v)) {
        /* delay-seconds or an HTTP-date (RFC 9110 10.2.3); unreadable: as if absent */
        char *e;
        double x = strtod(v, &e);
        if (e != v && *e == '\0' && x >= 0) {
            a->retry_after = x;
        } else {
            time_t when = curl_getdate(v, NULL);
            if (when != (time_t)-1) {
                double d = difftime(when, time(NULL));
                a->retry_after = d > 0 ? d : 0;
            }
        }
    }
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The "error" of a JSON error body, or the body itself, into err. */
static int http_error(ylc_error *err, long status, const answer *a)
{
    const char *text = a->body.p ? a->body.p : "";
    json_t *j = json_loadb(text, a->body.len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    fail(err, (int)status, "%s", msg ? msg : *text ? text : "(no message)");
    json_decref(j);
    return -1;
}

/* A uniform draw in [0, 1). */
static double jitter(ylc_client *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (double)(c->rng >> 11) / 9007199254740992.0;
}

/* Transport failures worth another attempt: the connection was refused, reset or closed
 * without an answer (a daemon restarting, a proxy's backend going away). A timeout is
 * not: the deadline is spent. */
static bool retryable_transport(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR ||
           rc == CURLE_RECV_ERROR || rc == CURLE_PARTIAL_FILE;
}

static bool retryable_status(long status) { return status == 502 || status == 503 || status == 504; }

/* method "GET" or "POST" (with the segments as body). Returns the status, 0 on a
 * transport failure (err filled). Retries as the header's RETRIES says, all within
 * timeout seconds. */
static long exchange(ylc_client *c, const char *method, const char *path, const segment *seg,
                     int nseg, const char *const *extra, double timeout, answer *a,
                     ylc_error *err)
{
    char *url = malloc(strlen(c->base) + strlen(path) + 1);
    if (!url) {
        fail(err, 0, "out of memory");
        return 0;
    }
    sprintf(url, "%s%s", c->base, path);
    struct curl_slist *hdrs = NULL, *h;
    for (h = c->auth; h; h = h->next)
        hdrs = curl_slist_append(hdrs, h->data);
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    for (int i = 0; extra && extra[i]; i++)
        hdrs = curl_slist_append(hdrs, extra[i]);
    if (!hdrs) {
        free(url);
        fail(err, 0, "out of memory");
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < nseg; i++)
        total += seg[i].len;

    if (timeout <= 0)
        timeout = c->timeout;
    double deadline = now_s() + timeout;
    long status = 0;
    CURL *k = c->curl;
    for (int attempt = 1;; attempt++) {
        body_reader rd = {seg, nseg, 0, 0};
        a->body.len = 0;
        a->header_len = -1;
        a->retry_after = -1;
        double left = deadline - now_s();
        if (left <= 0) {
            fail(err, 0, "%s %s: no answer within the timeout (%gs)", method, url, timeout);
            status = 0;
            break;
        }
        curl_easy_reset(k);
        curl_easy_setopt(k, CURLOPT_URL, url);
        curl_easy_setopt(k, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(k, CURLOPT_WRITEDATA, a);
        curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(k, CURLOPT_HEADERDATA, a);
        curl_easy_setopt(k, CURLOPT_ACCEPT_ENCODING, ""); /* gzip/deflate answers, decoded */
        curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(k, CURLOPT_USERAGENT, "yololoss-c/" YLC_VERSION);
        curl_easy_setopt(k, CURLOPT_TIMEOUT_MS, (long)(left > 0.001 ? left * 1000 : 1));
        if (strcmp(method, "POST") == 0) {
            curl_easy_setopt(k, CURLOPT_POST, 1L);
            curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)total);
            curl_easy_setopt(k, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(k, CURLOPT_READDATA, &rd);
            curl_easy_setopt(k, CURLOPT_SEEKFUNCTION, on_seek);
            curl_easy_setopt(k, CURLOPT_SEEKDATA, &rd);
        }
        CURLcode rc = curl_easy_perform(k);
        double asked = -1; /* Retry-After, -1: none */
        if (rc != CURLE_OK) {
            status = 0;
            if (a->body.oom)
                fail(err, 0, "%s %s: out of memory for the answer", method, url);
            else if (rc == CURLE_OPERATION_TIMEDOUT)
                fail(err, 0, "%s %s: no answer within the timeout (%gs)", method, url, timeout);
            else
                fail(err, 0, "%s %s: %s (%d attempt%s)", method, url, curl_easy_strerror(rc),
                     attempt, attempt == 1 ? "" : "s");
            if (a->body.oom || !retryable_transport(rc))
                break;
        } else {
            curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &status);
            if (!retryable_status(status))
                break;
            asked = a->retry_after;
        }
        if (c->max_attempts > 0 && attempt >= c->max_attempts)
            break;
        double cap = c->backoff_base * ldexp(1.0, attempt - 1 < 60 ? attempt - 1 : 60);
        double wait = asked >= 0 ? asked : jitter(c) * (cap < c->backoff_max ? cap : c->backoff_max);
        if (now_s() + wait >= deadline)
            break;
        c->retries++;
        sleep_s(wait);
    }
    curl_slist_free_all(hdrs);
    free(url);
    return status;
}

long ylc_get(ylc_client *c, const char *path, char **body, ylc_error *err)
{
    if (body)
        *body = NULL;
    answer a = {{0}, -1, -1};
    long status = exchange(c, "GET", path, NULL, 0, NULL, 0, &a, err);
    if (status != 0 && body && a.body.p) {
        *body = a.body.p;
        a.body.p = NULL;
    } else if (status != 0 && body) {
        *body = calloc(1, 1);
    }
    free(a.body.p);
    return status;
}

/* ------------------------------------------------------------------------------------ */
/* The request                                                                            */

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

static int64_t tensor_count(const ylc_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

/* A tensor's values as JSON numbers. -1 (err filled) for a non-finite value. */
static int json_values(sbuf *b, const char *name, const ylc_tensor *t, ylc_error *err)
{
    int64_t n = tensor_count(t);
    if (!sb_reserve(b, (size_t)n * 12 + 2))
        return fail(err, 0, "out of memory");
    sb_put(b, "[", 1);
    for (int64_t i = 0; i < n; i++) {
        double v;
        const char *fmt = "%.9g";
        if (t->dtype == YLC_F32) {
            v = ((const float *)t->data)[i];
        } else if (t->dtype == YLC_F16) {
            v = half_to_float(((const uint16_t *)t->data)[i]);
        } else {
            v = ((const double *)t->data)[i];
            fmt = "%.17g";
        }
        if (!isfinite(v))
            return fail(err, 0, "%s: element %" PRId64 " is %g, which JSON cannot carry "
                        "(and the server refuses anyway)", name, i, v);
        if (i)
            sb_put(b, ",", 1);
        sb_printf(b, fmt, v);
    }
    sb_put(b, "]", 1);
    return 0;
}

/* One entry of "inputs"; binary tensors are appended to seg. */
static int add_input(sbuf *h, bool first, const char *name, const ylc_tensor *t, bool json,
                     segment *seg, int *nseg, ylc_error *err)
{
    const char *dt = ylc_dtype_name(t->dtype);
    if (!dt)
        return fail(err, 0, "%s: unknown dtype %d", name, t->dtype);
    if (t->ndim < 1 || t->ndim > YLC_MAX_DIMS)
        return fail(err, 0, "%s: %d dimensions", name, t->ndim);
    sb_printf(h, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", first ? "" : ",", name, dt);
    for (int d = 0; d < t->ndim; d++)
        sb_printf(h, "%s%" PRId64, d ? "," : "", t->shape[d]);
    sb_str(h, "]");
    int64_t n = tensor_count(t);
    if (json && t->dtype != YLC_BF16) {
        sb_str(h, ",\"data\":");
        if (json_values(h, name, t, err))
            return -1;
    } else {
        size_t bytes = (size_t)n * dtype_size(t->dtype);
        sb_printf(h, ",\"parameters\":{\"binary_data_size\":%zu}", bytes);
        if (bytes) {
            seg[*nseg].p = t->data;
            seg[*nseg].len = bytes;
            (*nseg)++;
        }
    }
    sb_str(h, "}");
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* The answer                                                                             */

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[YLC_MAX_DIMS];
    size_t n;
    const float *bin; /* binary data (may be unaligned: read with memcpy), or */
    json_t *data;     /* JSON numbers */
} out_view;

/* Copy an output's values into dst (n floats). */
static int out_copy(const out_view *o, float *dst, ylc_error *err)
{
    if (o->bin) {
        memcpy(dst, o->bin, o->n * sizeof(float));
        return 0;
    }
    for (size_t i = 0; i < o->n; i++) {
        json_t *v = json_array_get(o->data, i);
        if (!json_is_number(v))
            return fail(err, 200, "answer: output '%s' element %zu is not a number", o->name, i);
        dst[i] = (float)json_number_value(v);
    }
    return 0;
}

static int out_to_doubles(const out_view *o, double *dst, size_t n, ylc_error *err)
{
    float tmp[YLC_MAX_LAYERS * YLC_NUM_STATS];
    if (o->n != n || n > sizeof tmp / sizeof tmp[0])
        return fail(err, 200, "answer: output '%s' has %zu values, want %zu", o->name, o->n, n);
    if (out_copy(o, tmp, err))
        return -1;
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[i];
    return 0;
}

static int parse_answer(const answer *a, int want_layers, ylc_result *res, ylc_error *err)
{
    size_t hlen = a->header_len >= 0 ? (size_t)a->header_len : a->body.len;
    if (a->header_len == -2 || hlen > a->body.len)
        return fail(err, 200, "answer: bad Inference-Header-Content-Length");
    json_error_t je;
    json_t *root = json_loadb(a->body.p ? a->body.p : "", hlen, 0, &je);
    if (!root)
        return fail(err, 200, "answer: invalid JSON: %s", je.text);
    int rc = -1;
    out_view v[5 + YLC_MAX_LAYERS];
    int nv = 0;
    size_t off = hlen;
    json_t *outs = json_object_get(root, "outputs");
    const char *mn = json_string_value(json_object_get(root, "model_name"));
    snprintf(res->model_name, sizeof res->model_name, "%s", mn ? mn : "");
    if (!json_is_array(outs)) {
        fail(err, 200, "answer: no \"outputs\"");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(outs); i++) {
        json_t *o = json_array_get(outs, i);
        if (nv == (int)(sizeof v / sizeof v[0])) {
            fail(err, 200, "answer: more outputs than asked for");
            goto out;
        }
        out_view *w = &v[nv];
        memset(w, 0, sizeof *w);
        w->name = json_string_value(json_object_get(o, "name"));
        const char *dt = json_string_value(json_object_get(o, "datatype"));
        json_t *shape = json_object_get(o, "shape");
        if (!w->name || !dt || strcmp(dt, "FP32") || !json_is_array(shape) ||
            json_array_size(shape) > YLC_MAX_DIMS) {
            fail(err, 200, "answer: output %zu is not an FP32 tensor", i);
            goto out;
        }
        w->ndim = (int)json_array_size(shape);
        w->n = 1;
        for (int d = 0; d < w->ndim; d++) {
            w->shape[d] = json_integer_value(json_array_get(shape, (size_t)d));
            if (w->shape[d] < 0) {
                fail(err, 200, "answer: output '%s' has a negative dimension", w->name);
                goto out;
            }
            w->n *= (size_t)w->shape[d];
        }
        json_t *size = json_object_get(json_object_get(o, "parameters"), "binary_data_size");
        if (size) {
            size_t bytes = (size_t)json_integer_value(size);
            if (bytes != w->n * sizeof(float) || off + bytes > a->body.len) {
                fail(err, 200, "answer: output '%s': %zu bytes for %zu values", w->name, bytes,
                     w->n);
                goto out;
            }
            w->bin = (const float *)(const void *)(a->body.p + off);
            off += bytes;
        } else {
            w->data = json_object_get(o, "data");
            if (json_array_size(w->data) != w->n) {
                fail(err, 200, "answer: output '%s' has no data", w->name);
                goto out;
            }
        }
        nv++;
    }
    int L = -1;
    bool got[5] = {false};
    for (int i = 0; i < nv; i++) {
        const out_view *w = &v[i];
        if (!strcmp(w->name, "layer_terms") && w->ndim == 2 && w->shape[0] <= YLC_MAX_LAYERS)
            L = (int)w->shape[0];
    }
    if (L < 1 || (want_layers > 0 && L != want_layers)) {
        fail(err, 200, "answer: no usable layer_terms");
        goto out;
    }
    res->num_layers = L;
    for (int i = 0; i < nv; i++) {
        const out_view *w = &v[i];
        int r = 0;
        if (!strcmp(w->name, "loss")) {
            r = out_to_doubles(w, &res->loss, 1, err);
            got[0] = true;
        } else if (!strcmp(w->name, "loss_terms")) {
            r = out_to_doubles(w, res->terms, 4, err);
            got[1] = true;
        } else if (!strcmp(w->name, "layer_terms")) {
            r = out_to_doubles(w, &res->layer_terms[0][0], (size_t)L * 4, err);
            got[2] = true;
        } else if (!strcmp(w->name, "stats")) {
            r = out_to_doubles(w, &res->stats[0][0], (size_t)L * YLC_NUM_STATS, err);
            got[3] = true;
        } else if (!strcmp(w->name, "image_terms")) {
            if (w->ndim != 2 || w->shape[1] != 4) {
                fail(err, 200, "answer: image_terms is not [B, 4]");
                goto out;
            }
            res->batch = w->shape[0];
            res->image_terms = malloc(w->n * sizeof(float) + 1);
            r = res->image_terms ? out_copy(w, res->image_terms, err) : fail(err, 0, "out of memory");
            got[4] = true;
        } else if (!strncmp(w->name, "grad_", 5) && w->name[5] >= '0' && w->name[5] < '0' + L &&
                   w->name[6] == '\0') {
            int l = w->name[5] - '0';
            free(res->grads[l]);
            res->grads[l] = malloc(w->n * sizeof(float) + 1);
            res->grad_ndim[l] = w->ndim;
            memcpy(res->grad_shape[l], w->shape, sizeof w->shape);
            res->grad_count[l] = (int64_t)w->n;
            r = res->grads[l] ? out_copy(w, res->grads[l], err) : fail(err, 0, "out of memory");
        }
        if (r)
            goto out;
    }
    for (int i = 0; i < 5; i++)
        if (!got[i]) {
            fail(err, 200, "answer: an output is missing");
            goto out;
        }
    rc = 0;
out:
    json_decref(root);
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
        return fail(err, 0, "need 1 to %d outputs, got %d", YLC_MAX_LAYERS, L);
    if ((req->boxes != NULL) == (req->y_true != NULL && req->n_y_true > 0))
        return fail(err, 0, "give exactly one of boxes and y_true");
    if (req->y_true && req->n_y_true > YLC_MAX_LAYERS)
        return fail(err, 0, "at most %d y_true tensors", YLC_MAX_LAYERS);

    sbuf h = {0};
    segment seg[2 * YLC_MAX_LAYERS + 2];
    int nseg = 1;
    bool json = req->json != 0;
    int rc = -1;
    answer a = {{0}, -1, -1};
    char name[24];

    sb_str(&h, "{");
    bool any_param = req->has_ignore_thresh || req->anchors || req->run || req->has_step;
    if (any_param) {
        const char *sep = "";
        sb_str(&h, "\"parameters\":{");
        if (req->has_ignore_thresh) {
            if (!isfinite(req->ignore_thresh)) {
                fail(err, 0, "ignore_thresh must be finite");
                goto out;
            }
            sb_printf(&h, "\"ignore_thresh\":%.17g", req->ignore_thresh);
            sep = ",";
        }
        if (req->anchors) {
            sb_printf(&h, "%s\"anchors\":", sep);
            sb_json_string(&h, req->anchors);
            sep = ",";
        }
        if (req->run) {
            sb_printf(&h, "%s\"run\":", sep);
            sb_json_string(&h, req->run);
            sep = ",";
        }
        if (req->has_step)
            sb_printf(&h, "%s\"step\":%" PRId64, sep, req->step);
        sb_str(&h, "},");
    }
    sb_str(&h, "\"inputs\":[");
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "output_%d", l);
        if (add_input(&h, l == 0, name, &req->outputs[l], json, seg, &nseg, err))
            goto out;
    }
    if (req->boxes) {
        if (add_input(&h, false, "boxes", req->boxes, json, seg, &nseg, err))
            goto out;
    } else {
        for (int l = 0; l < req->n_y_true; l++) {
            snprintf(name, sizeof name, "y_true_%d", l);
            if (add_input(&h, false, name, &req->y_true[l], json, seg, &nseg, err))
                goto out;
        }
    }
    sb_str(&h, "],\"outputs\":[");
    static const char *const small[] = {"loss", "loss_terms", "layer_terms", "image_terms", "stats"};
    const char *bin = json ? "false" : "true";
    for (int i = 0; i < 5; i++)
        sb_printf(&h, "%s{\"name\":\"%s\",\"parameters\":{\"binary_data\":%s}}", i ? "," : "",
                  small[i], bin);
    if (req->grads)
        for (int l = 0; l < L; l++)
            sb_printf(&h, ",{\"name\":\"grad_%d\",\"parameters\":{\"binary_data\":%s}}", l, bin);
    sb_str(&h, "]}");
    if (h.oom) {
        fail(err, 0, "out of memory");
        goto out;
    }
    seg[0].p = h.p;
    seg[0].len = h.len;

    char path[160];
    snprintf(path, sizeof path, "/v2/models/%s/infer", c->model);
    if (strlen(c->model) > 120) {
        fail(err, 0, "model name too long");
        goto out;
    }
    char hl[80];
    snprintf(hl, sizeof hl, "Inference-Header-Content-Length: %zu", h.len);
    const char *binary_hdrs[] = {"Content-Type: application/octet-stream", hl, NULL};
    const char *json_hdrs[] = {"Content-Type: application/json", NULL};
    long status = exchange(c, "POST", path, seg, nseg, nseg > 1 ? binary_hdrs : json_hdrs,
                           req->timeout, &a, err);
    if (status == 0)
        goto out;
    if (status != 200) {
        http_error(err, status, &a);
        goto out;
    }
    if (parse_answer(&a, L, res, err))
        goto out;
    rc = 0;
out:
    free(h.p);
    free(a.body.p);
    if (rc)
        ylc_result_free(res);
    return rc;
}

void ylc_result_free(ylc_result *r)
{
    if (!r)
        return;
    free(r->image_terms);
    for (int l = 0; l < YLC_MAX_LAYERS; l++)
        free(r->grads[l]);
    memset(r, 0, sizeof *r);
}
