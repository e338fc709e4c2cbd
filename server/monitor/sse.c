/*
 * sse.c: GET /v1/runs/{run}/events, the run's new points as Server-Sent Events:
 *
 *   retry: 2000
 *
 *   id: 12
 *   event: point
 *   data: {"run":"exp1","step":12,...}      (the JSON of GET .../steps)
 *
 * A stream is a chunked response whose content reader hands out what has been queued for
 * it; when nothing is queued it suspends the connection, and a new point (or the end of
 * the daemon) resumes it. Everything here runs on the loop thread; the stream is freed
 * with its response. Draining ends every stream, and the daemon stops when they are gone.
 */
#include "server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SSE_BUF_MAX (4u << 20) /* a client this far behind loses points */

struct yls_sse {
    yls_sse *next, **prevp;
    yls_server *srv;
    struct MHD_Connection *conn;
    char run[YLS_RUN_MAX];
    char *buf;
    size_t len, off, cap;
    bool suspended, ended;
};

static void append(yls_sse *e, const char *text, size_t n)
{
    if (e->len + n > SSE_BUF_MAX)
        return;
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 4096;
        while (cap < e->len + n)
            cap *= 2;
        char *nb = realloc(e->buf, cap);
        if (!nb)
            return;
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, text, n);
    e->len += n;
}

static void wake(yls_sse *e)
{
    if (!e->suspended)
        return;
    e->suspended = false;
    MHD_resume_connection(e->conn);
    yls_http_wake(e->srv);
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    yls_sse *e = cls;
    if (e->off < e->len) {
        size_t n = e->len - e->off < max ? e->len - e->off : max;
        memcpy(out, e->buf + e->off, n);
        e->off += n;
        if (e->off == e->len)
            e->off = e->len = 0;
        return (ssize_t)n;
    }
    if (e->ended)
        return MHD_CONTENT_READER_END_OF_STREAM;
    e->suspended = true;
    MHD_suspend_connection(e->conn);
    return 0;
}

static void stream_free(void *cls)
{
    yls_sse *e = cls;
    if (e->prevp) {
        *e->prevp = e->next;
        if (e->next)
            e->next->prevp = e->prevp;
    }
    free(e->buf);
    free(e);
}

enum MHD_Result yls_sse_serve(yls_request *r)
{
    yls_server *s = r->srv;
    if (s->draining)
        return yls_reply_error(r, 503, "the server is shutting down");
    yls_sse *e = calloc(1, sizeof *e);
    if (!e)
        return yls_reply_error(r, 503, "out of memory; retry later");
    e->srv = s;
    e->conn = r->conn;
    snprintf(e->run, sizeof e->run, "%s", r->route.run);
    static const char hello[] = "retry: 2000\n\n";
    append(e, hello, sizeof hello - 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, e, stream_free);
    if (!resp) {
        free(e->buf);
        free(e);
        return yls_reply_error(r, 503, "out of memory; retry later");
    }
    e->next = s->sse;
    if (s->sse)
        s->sse->prevp = &e->next;
    e->prevp = &s->sse;
    s->sse = e;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    yls_safe_headers(resp);
    return yls_reply(r, 200, resp, 0);
}

void yls_sse_publish(yls_server *s, const char *run, int64_t step, const char *json)
{
    for (yls_sse *e = s->sse; e; e = e->next) {
        if (strcmp(e->run, run) != 0 || e->ended)
            continue;
        char head[64];
        int n = snprintf(head, sizeof head, "id: %" PRId64 "\nevent: point\ndata: ", step);
        append(e, head, (size_t)n);
        append(e, json, strlen(json));
        append(e, "\n\n", 2);
        wake(e);
    }
}

void yls_sse_close_all(yls_server *s)
{
    for (yls_sse *e = s->sse; e; e = e->next) {
        e->ended = true;
        wake(e);
    }
}

unsigned yls_sse_count(const yls_server *s)
{
    unsigned n = 0;
    for (const yls_sse *e = s->sse; e; e = e->next)
        n++;
    return n;
}
