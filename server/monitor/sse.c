/*
 * sse.c: event streams of new points (Server-Sent Events).
 *
 *   GET /v1/events?run=A&run=B     the points of runs A and B (run= repeated, at most
 *                                  SSE_RUNS_MAX); no run=: the points of every run
 *   GET /v1/runs/{run}/events      one run (the first API; its event id is the step)
 *
 *   retry: 2000
 *
 *   id: A:12,B:40                  the stream's CURSOR: per run, the last step delivered
 *   event: point
 *   data: {"run":"A","step":12,...}      (the JSON of GET .../steps)
 *
 *   : heartbeat                    every --heartbeat seconds
 *
 * RESUME. An event's id is the whole cursor (run names percent-encoded, then ':' and the
 * step), so the Last-Event-ID a reconnecting client sends says where every run stood; the
 * stream first replays, from the history, the points after those steps (at most
 * REPLAY_MAX per run; with more, the stream ends after them and the client resumes again),
 * then goes on live. Live points that arrive during the replay are held and sent after it
 * (those the replay already had are dropped). A stream of every run remembers the
 * SSE_RUNS_MAX runs it delivered most recently. A client too slow to take its events
 * (SSE_BUF_MAX bytes queued) gets its stream ended instead of losing points: it resumes.
 *
 * LIFE. A stream is a chunked response whose content reader hands out what is queued;
 * when nothing is, it suspends the connection, and a new point, a heartbeat or the end
 * resumes it. libmicrohttpd does not watch a suspended connection, so a closed tab would
 * hold its stream (and its descriptor) forever: each stream polls its socket in the libuv
 * loop, and a socket that reads end-of-file or an error ends the stream at once (the
 * heartbeat's write catches what the poll cannot, such as a peer that vanished). At most
 * --max-streams streams are open (503 beyond). Everything here runs on the loop thread; a
 * stream lives until its response is freed and no history read for it is in flight.
 */
#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SSE_BUF_MAX (4u << 20) /* bytes queued for one client before its stream ends */
#define SSE_RUNS_MAX 64        /* runs of one stream, and runs a cursor remembers */
#define REPLAY_MAX 1000        /* points per run replayed on one resume */
#define CURSOR_MAX (SSE_RUNS_MAX * (3 * (YLS_RUN_MAX - 1) + 22))

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t step;  /* the last step delivered (valid when seen) */
    bool seen;
    uint64_t used; /* for a stream of every run: the least recently used entry goes */
} cursor_ent;

typedef struct held {
    struct held *next;
    char run[YLS_RUN_MAX];
    int64_t step;
    size_t len;
    char json[];
} held;

struct yls_sse {
    yls_sse *next, **prevp;
    yls_server *srv;
    struct MHD_Connection *conn;
    bool legacy;  /* /v1/runs/{run}/events: one run, the id is the step */
    bool all;     /* every run */
    size_t ncur;
    cursor_ent cur[SSE_RUNS_MAX]; /* the named runs, or (all) the recently delivered */
    uint64_t clock;
    char *buf;
    size_t len, off, cap;
    bool suspended, ended, gone, freed;
    unsigned refs; /* the response, and a replay in flight */
    bool replaying;
    held *held, **held_tail;
    size_t held_bytes;
    bool held_lost;
    uv_poll_t *poll; /* the socket, for a client that left */
};

/* ------------------------------------------------------------------------------------ */
/* The buffer and the connection                                                         */

/* Append all of text or nothing (a client only ever receives whole events); false when
 * the client is too far behind: the stream ends once what is queued is sent. */
static bool append(yls_sse *e, const char *text, size_t n)
{
    if (e->ended)
        return false;
    if (e->len + n > SSE_BUF_MAX) {
        e->ended = true;
        return false;
    }
    if (e->len + n > e->cap) {
        size_t cap = e->cap ? e->cap : 4096;
        while (cap < e->len + n)
            cap *= 2;
        char *nb = realloc(e->buf, cap);
        if (!nb) {
            e->ended = true;
            return false;
        }
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, text, n);
    e->len += n;
    return true;
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
    if (e->gone) /* the last chunk fails to go out, and the connection closes; (an "error"
                  * would do the same, with a line in the log for every closed tab) */
        return MHD_CONTENT_READER_END_OF_STREAM;
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

static void poll_stop(yls_sse *e) { yls_conn_unwatch(&e->poll); }

/* The socket of a stream is readable: a client sends nothing on an event stream, so this
 * is its end-of-file or an error (it left), or bytes it should not send (then the heartbeat
 * decides). */
static void on_socket(uv_poll_t *p, int status, int events)
{
    yls_sse *e = p->data;
    if (!e)
        return;
    bool gone = yls_conn_peer_gone(p, status, events);
    poll_stop(e);
    if (gone) {
        e->gone = e->ended = true;
        wake(e);
    }
}

static void poll_start(yls_sse *e)
{
    /* unwatched when it cannot be: the heartbeat still frees a stream whose client left */
    e->poll = yls_conn_watch(e->srv, e->conn, UV_READABLE | UV_DISCONNECT, on_socket, e);
}

static void unref(yls_sse *e)
{
    if (--e->refs)
        return;
    while (e->held) {
        held *h = e->held;
        e->held = h->next;
        free(h);
    }
    free(e->buf);
    free(e);
}

/* The response is freed (before libmicrohttpd closes the socket). */
static void stream_free(void *cls)
{
    yls_sse *e = cls;
    poll_stop(e);
    if (e->prevp) {
        *e->prevp = e->next;
        if (e->next)
            e->next->prevp = e->prevp;
        e->prevp = NULL;
        e->srv->nsse--;
    }
    e->freed = true; /* a draining daemon stops once the list is empty (yls_http_kick) */
    unref(e);
}

/* ------------------------------------------------------------------------------------ */
/* The cursor                                                                            */

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static size_t pct_encode(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p))
            out[n++] = (char)*p;
        else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    return n;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* "id: <cursor>\n" into out (CURSOR_MAX + 8 bytes). */
static size_t cursor_line(const yls_sse *e, char *out)
{
    size_t n = 0;
    memcpy(out, "id: ", 4);
    n = 4;
    if (e->legacy) {
        n += (size_t)sprintf(out + n, "%" PRId64, e->cur[0].step);
    } else {
        bool first = true;
        for (size_t i = 0; i < e->ncur; i++) {
            if (!e->cur[i].seen)
                continue;
            if (!first)
                out[n++] = ',';
            first = false;
            n += pct_encode(out + n, e->cur[i].run);
            n += (size_t)sprintf(out + n, ":%" PRId64, e->cur[i].step);
        }
    }
    out[n++] = '\n';
    return n;
}

static cursor_ent *cursor_find(yls_sse *e, const char *run)
{
    for (size_t i = 0; i < e->ncur; i++)
        if (!strcmp(e->cur[i].run, run))
            return &e->cur[i];
    return NULL;
}

/* The entry of run; for a stream of every run a new one (replacing the least recently used
 * when full). NULL: not a run of this stream. */
static cursor_ent *cursor_entry(yls_sse *e, const char *run)
{
    cursor_ent *c = cursor_find(e, run);
    if (c || !e->all)
        return c;
    if (e->ncur < SSE_RUNS_MAX)
        c = &e->cur[e->ncur++];
    else {
        c = &e->cur[0];
        for (size_t i = 1; i < e->ncur; i++)
            if (e->cur[i].used < c->used)
                c = &e->cur[i];
    }
    memset(c, 0, sizeof *c);
    snprintf(c->run, sizeof c->run, "%s", run);
    return c;
}

/* Parse a Last-Event-ID into the cursor. 0, or -1 with f set. */
static int cursor_parse(yls_sse *e, const char *id, yls_fail *f)
{
    if (e->legacy) {
        char *end;
        errno = 0;
        long long v = strtoll(id, &end, 10);
        if (errno || end == id || *end)
            return yls_fail_set(f, 400, "Last-Event-ID '%.64s' is not a step", id);
        e->cur[0].step = v;
        e->cur[0].seen = true;
        return 0;
    }
    const char *p = id;
    while (*p) {
        char run[YLS_RUN_MAX];
        size_t n = 0;
        while (*p && *p != ':') {
            int c = *p;
            if (c == '%') {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (lo < 0)
                    return yls_fail_set(f, 400, "Last-Event-ID: bad %%-escape at byte %zu",
                                        (size_t)(p - id));
                c = hi * 16 + lo;
                p += 2;
            }
            if (c == 0 || n + 1 >= sizeof run)
                return yls_fail_set(f, 400, "Last-Event-ID: bad run name at byte %zu",
                                    (size_t)(p - id));
            run[n++] = (char)c;
            p++;
        }
        run[n] = '\0';
        if (*p != ':' || n == 0)
            return yls_fail_set(f, 400, "Last-Event-ID: expected run:step at byte %zu",
                                (size_t)(p - id));
        p++;
        char *end;
        errno = 0;
        long long step = strtoll(p, &end, 10);
        if (errno || end == p || (*end && *end != ','))
            return yls_fail_set(f, 400, "Last-Event-ID: bad step for run '%.64s'", run);
        p = *end ? end + 1 : end;
        cursor_ent *c = cursor_entry(e, run);
        if (c) { /* a run not named by this stream is ignored */
            c->step = step;
            c->seen = true;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Events                                                                                */

/* Queue one point for e (its run must be one of e's); false when the stream ended. */
static bool deliver(yls_sse *e, const char *run, int64_t step, const char *json, size_t len)
{
    cursor_ent *c = cursor_entry(e, run);
    if (!c)
        return true;
    cursor_ent saved = *c;
    if (!c->seen || step > c->step)
        c->step = step;
    c->seen = true;
    c->used = ++e->clock;
    static char idline[CURSOR_MAX + 8];
    size_t idlen = cursor_line(e, idline);
    static const char mid[] = "event: point\ndata: ";
    size_t total = idlen + sizeof mid - 1 + len + 2;
    char *ev = malloc(total);
    bool ok = ev != NULL;
    if (ok) {
        memcpy(ev, idline, idlen);
        memcpy(ev + idlen, mid, sizeof mid - 1);
        memcpy(ev + idlen + sizeof mid - 1, json, len);
        memcpy(ev + total - 2, "\n\n", 2);
        ok = append(e, ev, total);
        free(ev);
    } else {
        e->ended = true;
    }
    if (!ok)
        *c = saved; /* not sent: the client's cursor stays before it */
    return ok;
}

static bool wants(const yls_sse *e, const char *run)
{
    if (e->all)
        return true;
    for (size_t i = 0; i < e->ncur; i++)
        if (!strcmp(e->cur[i].run, run))
            return true;
    return false;
}

static void hold(yls_sse *e, const char *run, int64_t step, const char *json, size_t len)
{
    if (e->held_bytes + len > SSE_BUF_MAX) {
        e->held_lost = true; /* the stream ends after the replay, and the client resumes */
        return;
    }
    held *h = malloc(sizeof *h + len);
    if (!h) {
        e->held_lost = true;
        return;
    }
    h->next = NULL;
    snprintf(h->run, sizeof h->run, "%s", run);
    h->step = step;
    h->len = len;
    memcpy(h->json, json, len);
    *e->held_tail = h;
    e->held_tail = &h->next;
    e->held_bytes += len;
}

void yls_sse_publish(yls_server *s, const char *run, int64_t step, const char *json)
{
    size_t len = strlen(json);
    for (yls_sse *e = s->sse; e; e = e->next) {
        if (e->ended || !wants(e, run))
            continue;
        if (e->replaying)
            hold(e, run, step, json, len);
        else if (deliver(e, run, step, json, len) || e->ended)
            wake(e);
    }
}

static void replay_done(yls_hop *op)
{
    yls_sse *e = op->data;
    e->replaying = false;
    if (e->freed)
        goto out;
    if (op->rc) {
        char msg[YLS_HISTORY_ERR_MAX + 32];
        int n = snprintf(msg, sizeof msg, ": replay failed: %s\n\n", op->err);
        for (int i = 2; i < n - 2; i++)
            if (msg[i] == '\n')
                msg[i] = ' ';
        append(e, msg, strlen(msg));
        e->ended = true; /* the client comes back with the same Last-Event-ID */
    }
    for (size_t i = 0; i < op->n && !e->ended; i++) {
        json_t *o = yls_point_json(&op->points[i]);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text) {
            e->ended = true;
            break;
        }
        deliver(e, op->points[i].run, op->points[i].step, text, strlen(text));
        free(text);
    }
    while (e->held) {
        held *h = e->held;
        e->held = h->next;
        cursor_ent *c = cursor_find(e, h->run);
        if (!e->ended && (!c || !c->seen || h->step > c->step))
            deliver(e, h->run, h->step, h->json, h->len);
        free(h);
    }
    e->held_tail = &e->held;
    e->held_bytes = 0;
    if (op->more || e->held_lost)
        e->ended = true; /* the rest on the client's next resume */
    wake(e);
out:
    yls_hop_free(op);
    unref(e);
}

/* Read the points after the cursor from the history, for a resumed stream. 0 (also when
 * there is nothing to replay) or -1 with f set. */
static int replay_start(yls_sse *e, yls_fail *f)
{
    yls_history *h = e->srv->history;
    size_t n = 0;
    for (size_t i = 0; i < e->ncur; i++)
        n += e->cur[i].seen;
    if (!h || n == 0)
        return 0;
    yls_hop *op = yls_hop_new(YLS_HOP_REPLAY, replay_done, e);
    if (op)
        op->from = calloc(n, sizeof *op->from);
    if (!op || !op->from) {
        yls_hop_free(op);
        return yls_fail_set(f, 503, "out of memory; retry later");
    }
    for (size_t i = 0; i < e->ncur; i++) {
        if (!e->cur[i].seen)
            continue;
        snprintf(op->from[op->nfrom].run, sizeof op->from[op->nfrom].run, "%s", e->cur[i].run);
        op->from[op->nfrom++].after = e->cur[i].step;
    }
    op->limit = REPLAY_MAX;
    if (yls_history_submit(h, op)) {
        yls_hop_free(op);
        return yls_fail_set(f, 503, "history reads are busy; retry later");
    }
    e->refs++;
    e->replaying = true;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Serving                                                                               */

typedef struct {
    yls_sse *e;
    yls_fail *f;
} args_ctx;

static enum MHD_Result on_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                              const char *value)
{
    (void)kind;
    args_ctx *a = cls;
    yls_sse *e = a->e;
    if (strcmp(key, "run") != 0)
        return MHD_YES;
    size_t len = value ? strlen(value) : 0;
    if (len == 0 || len >= YLS_RUN_MAX) {
        yls_fail_set(a->f, 400, "run: a run name has 1 to %d bytes", YLS_RUN_MAX - 1);
        return MHD_NO;
    }
    if (cursor_find(e, value))
        return MHD_YES;
    if (e->ncur == SSE_RUNS_MAX) {
        yls_fail_set(a->f, 400, "run: at most %d runs per stream", SSE_RUNS_MAX);
        return MHD_NO;
    }
    snprintf(e->cur[e->ncur++].run, YLS_RUN_MAX, "%s", value);
    return MHD_YES;
}

static void heartbeat(uv_timer_t *t)
{
    yls_server *s = t->data;
    static const char beat[] = ": heartbeat\n\n";
    for (yls_sse *e = s->sse; e; e = e->next) {
        /* a write to a client that left fails, and libmicrohttpd frees the stream */
        if (!e->ended)
            append(e, beat, sizeof beat - 1);
        wake(e);
    }
}

static void heartbeat_start(yls_server *s)
{
    if (s->sse_timer_on || !s->opt.heartbeat)
        return;
    uv_timer_init(&s->loop, &s->sse_timer);
    s->sse_timer.data = s;
    uint64_t ms = (uint64_t)s->opt.heartbeat * 1000;
    uv_timer_start(&s->sse_timer, heartbeat, ms, ms);
    s->sse_timer_on = true;
}

void yls_sse_shutdown(yls_server *s)
{
    if (!s->sse_timer_on)
        return;
    uv_close((uv_handle_t *)&s->sse_timer, NULL);
    s->sse_timer_on = false;
}

static void fail_free(yls_sse *e)
{
    free(e->buf);
    free(e);
}

enum MHD_Result yls_sse_serve(yls_request *r)
{
    yls_server *s = r->srv;
    if (s->draining)
        return yls_reply_error(r, 503, "the server is shutting down");
    if (s->nsse >= s->opt.max_streams)
        return yls_reply_error(r, 503,
                               "too many event streams: %u are open (--max-streams %u); retry "
                               "later",
                               s->nsse, s->opt.max_streams);
    yls_sse *e = calloc(1, sizeof *e);
    if (!e)
        return yls_reply_error(r, 503, "out of memory; retry later");
    e->srv = s;
    e->conn = r->conn;
    e->held_tail = &e->held;
    e->refs = 1;
    yls_fail f = {0};
    if (r->route.run[0]) { /* /v1/runs/{run}/events */
        e->legacy = true;
        e->ncur = 1;
        snprintf(e->cur[0].run, sizeof e->cur[0].run, "%s", r->route.run);
    } else {
        args_ctx a = {e, &f};
        MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, on_arg, &a);
        e->all = e->ncur == 0 && !f.status;
    }
    const char *last = yls_header(r, "Last-Event-ID");
    if (!f.status && last && *last)
        cursor_parse(e, last, &f);
    static const char hello[] = "retry: 2000\n\n";
    if (!f.status && !append(e, hello, sizeof hello - 1))
        yls_fail_set(&f, 503, "out of memory; retry later");
    if (!f.status)
        replay_start(e, &f);
    if (f.status) {
        fail_free(e);
        return yls_reply_fail(r, &f);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, reader, e, stream_free);
    if (!resp) {
        /* a replay in flight holds a reference: it frees e when it is done */
        e->freed = true;
        unref(e);
        return yls_reply_error(r, 503, "out of memory; retry later");
    }
    e->next = s->sse;
    if (s->sse)
        s->sse->prevp = &e->next;
    e->prevp = &s->sse;
    s->sse = e;
    s->nsse++;
    poll_start(e);
    heartbeat_start(s);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* nginx: pass events on */
    yls_safe_headers(resp);
    return yls_reply(r, 200, resp, 0);
}

void yls_sse_close_all(yls_server *s)
{
    for (yls_sse *e = s->sse; e; e = e->next) {
        e->ended = true;
        wake(e);
    }
}

unsigned yls_sse_count(const yls_server *s) { return s->nsse; }
