/*
 * http.c: one HTTP exchange through libcurl with the retry policy of yololoss_client.h
 * (RETRIES), and the helpers the request builder shares.
 *
 * The request body is streamed from the caller's segments by a read callback (never copied
 * together); a retry rewinds it. The answer is collected whole.
 */
#include "ylc_http.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

int ylc_fail(ylc_error *err, int status, const char *fmt, ...)
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

bool ylc_sb_reserve(ylc_sbuf *b, size_t more)
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

void ylc_sb_put(ylc_sbuf *b, const void *s, size_t n)
{
    if (!ylc_sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ylc_sb_str(ylc_sbuf *b, const char *s) { ylc_sb_put(b, s, strlen(s)); }

void ylc_sb_printf(ylc_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !ylc_sb_reserve(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A JSON string literal (jansson escapes it). */
void ylc_sb_json_string(ylc_sbuf *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    if (t)
        ylc_sb_str(b, t);
    else
        b->oom = true;
    free(t);
    json_decref(j);
}

/* ------------------------------------------------------------------------------------ */
/* The connection                                                                       */

/* curl_global_init, once per process whichever thread makes the first client. */
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok;

static void global_init_once(void) { global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }

static int global_init(ylc_error *err)
{
    pthread_once(&global_once, global_init_once);
    return global_ok ? 0 : ylc_fail(err, 0, "curl_global_init failed");
}

/* 127.0.0.0/8, ::1 or localhost: where the daemon most likely shares this machine's
 * /dev/shm (registration tells for sure), and where compressing answers costs more CPU
 * than it saves time. */
static bool host_is_loopback(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool yes = false;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        yes = !strcmp(host, "localhost") || !strcmp(host, "[::1]") || !strcmp(host, "::1") ||
              !strncmp(host, "127.", 4);
    }
    curl_free(host);
    curl_url_cleanup(u);
    return yes;
}

int ylc_http_init(ylc_http *h, const ylc_options *opt, ylc_error *err)
{
    memset(h, 0, sizeof *h);
    if (global_init(err))
        return -1;
    const char *url = opt && opt->url ? opt->url : "http://127.0.0.1:8000";
    h->timeout = opt && opt->timeout > 0 ? opt->timeout : 60.0;
    h->max_attempts = opt && opt->max_attempts > 0 ? opt->max_attempts : 0;
    h->backoff_base = opt && opt->backoff_base > 0 ? opt->backoff_base : 0.1;
    h->backoff_max = opt && opt->backoff_max > 0 ? opt->backoff_max : 5.0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->rng = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
             ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)h;
    if (!h->rng)
        h->rng = 1;
    h->curl = curl_easy_init();
    if (!h->curl)
        goto oom;
    if (!strstr(url, "://")) {
        h->base = malloc(strlen(url) + 8);
        if (h->base)
            sprintf(h->base, "http://%s", url);
    } else {
        h->base = strdup(url);
    }
    if (!h->base)
        goto oom;
    size_t n = strlen(h->base);
    while (n > 0 && h->base[n - 1] == '/')
        h->base[--n] = '\0';
    h->loopback = host_is_loopback(h->base);
    if (opt && opt->token && *opt->token) {
        char *line = malloc(strlen(opt->token) + 32);
        if (!line)
            goto oom;
        sprintf(line, "Authorization: Bearer %s", opt->token);
        h->auth = curl_slist_append(NULL, line);
        free(line);
        if (!h->auth)
            goto oom;
    }
    return 0;
oom:
    ylc_http_free(h);
    return ylc_fail(err, 0, "out of memory");
}

void ylc_http_free(ylc_http *h)
{
    if (h->curl)
        curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->auth);
    free(h->base);
    memset(h, 0, sizeof *h);
}

/* ------------------------------------------------------------------------------------ */
/* One exchange, with retries.                                                           */

typedef struct {
    const ylc_segment *seg;
    int nseg;
    int i;
    size_t off;
} body_reader;

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    body_reader *r = userdata;
    size_t room = size * nitems, n = 0;
    while (n < room && r->i < r->nseg) {
        const ylc_segment *s = &r->seg[r->i];
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

static size_t on_write(char *p, size_t size, size_t nmemb, void *userdata)
{
    ylc_answer *a = userdata;
    size_t n = size * nmemb;
    ylc_sb_put(&a->body, p, n);
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
    ylc_answer *a = userdata;
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

ylc_clock ylc_clock_start(const ylc_http *h, double timeout)
{
    ylc_clock ck;
    ck.timeout = timeout > 0 ? timeout : h->timeout;
    ck.deadline = now_s() + ck.timeout;
    return ck;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int ylc_http_error(ylc_error *err, long status, const ylc_answer *a)
{
    const char *text = a->body.p ? a->body.p : "";
    json_t *j = json_loadb(text, a->body.len, 0, NULL);
    const char *msg = j ? json_string_value(json_object_get(j, "error")) : NULL;
    ylc_fail(err, (int)status, "%s", msg ? msg : *text ? text : "(no message)");
    json_decref(j);
    return -1;
}

/* A uniform draw in [0, 1). */
static double jitter(ylc_http *h)
{
    h->rng ^= h->rng << 13;
    h->rng ^= h->rng >> 7;
    h->rng ^= h->rng << 17;
    return (double)(h->rng >> 11) / 9007199254740992.0;
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

long ylc_http_exchange(ylc_http *h, const char *method, const char *path,
                       const ylc_segment *seg, int nseg, const char *const *extra,
                       const ylc_clock *ck, ylc_answer *a, ylc_error *err)
{
    char *url = malloc(strlen(h->base) + strlen(path) + 1);
    if (!url) {
        ylc_fail(err, 0, "out of memory");
        return 0;
    }
    sprintf(url, "%s%s", h->base, path);
    struct curl_slist *hdrs = NULL;
    for (struct curl_slist *x = h->auth; x; x = x->next)
        hdrs = curl_slist_append(hdrs, x->data);
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    for (int i = 0; extra && extra[i]; i++)
        hdrs = curl_slist_append(hdrs, extra[i]);
    if (!hdrs) {
        free(url);
        ylc_fail(err, 0, "out of memory");
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < nseg; i++)
        total += seg[i].len;

    long status = 0;
    CURL *k = h->curl;
    for (int attempt = 1;; attempt++) {
        body_reader rd = {seg, nseg, 0, 0};
        a->body.len = 0;
        a->header_len = -1;
        a->retry_after = -1;
        double left = ck->deadline - now_s();
        if (left <= 0) {
            ylc_fail(err, 0, "%s %s: no answer within the timeout (%gs)", method, url,
                     ck->timeout);
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
        /* gzip/deflate answers (decoded by libcurl) where they cross a real link; on
         * loopback compressing a dense gradient costs the daemon more than it saves */
        if (!h->loopback)
            curl_easy_setopt(k, CURLOPT_ACCEPT_ENCODING, "");
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
                ylc_fail(err, 0, "%s %s: out of memory for the answer", method, url);
            else if (rc == CURLE_OPERATION_TIMEDOUT)
                ylc_fail(err, 0, "%s %s: no answer within the timeout (%gs)", method, url,
                         ck->timeout);
            else
                ylc_fail(err, 0, "%s %s: %s (%d attempt%s)", method, url,
                         curl_easy_strerror(rc), attempt, attempt == 1 ? "" : "s");
            if (a->body.oom || !retryable_transport(rc))
                break;
        } else {
            curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &status);
            if (!retryable_status(status))
                break;
            asked = a->retry_after;
        }
        if (h->max_attempts > 0 && attempt >= h->max_attempts)
            break;
        double cap = h->backoff_base * ldexp(1.0, attempt - 1 < 60 ? attempt - 1 : 60);
        double wait = asked >= 0 ? asked : jitter(h) * (cap < h->backoff_max ? cap : h->backoff_max);
        if (now_s() + wait >= ck->deadline)
            break;
        h->retries++;
        sleep_s(wait);
    }
    curl_slist_free_all(hdrs);
    free(url);
    return status;
}
