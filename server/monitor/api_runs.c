/*
 * api_runs.c: the history over HTTP, answered from the history thread's results.
 *
 *   GET    /v1/runs                         [{run, first_step, last_step, last_loss,
 *                                             points, updated, config}], most recent first
 *   GET    /v1/runs/{run}/steps?after=N&limit=M
 *                                           {run, points: [point...]}, step > N (default
 *                                             -1), at most M (default 1000, max 100000)
 *   GET    /v1/runs/{run}/steps.csv         every point, one row each (text/csv), streamed
 *   DELETE /v1/runs/{run}                   {run, deleted}; needs the token when one is set
 *
 * The request is suspended while its operation waits for the history's reader thread (or,
 * for DELETE, the writer); a client reads what it has written, since a point is
 * acknowledged only once committed.
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STEPS_DEFAULT 1000
#define STEPS_MAX 100000


void yls_pending_begin(yls_request *r)
{
    r->srv->pending++;
    yls_request_suspend(r);
}

void yls_pending_end(yls_request *r) { r->srv->pending--; }

enum MHD_Result yls_api_reply_object(yls_request *r, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return yls_reply_json(r, 200, text);
}

/* The backend failed (a database outage, say): the request was fine, so 503 with
 * Retry-After tells the client to come back rather than that something is broken. */
enum MHD_Result yls_api_reply_failed(yls_request *r, const yls_hop *op)
{
    return yls_reply_error(r, 503, "history unavailable: %s", op->err);
}

enum MHD_Result yls_api_reply_pooled(yls_request *r, int status, char *text, const char *msg)
{
    yls_pending_end(r);
    if (status == 200)
        return yls_reply_json(r, 200, text);
    return yls_reply_error(r, status, "%s", msg);
}

static void runs_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc) {
        yls_api_reply_failed(r, op);
        goto cleanup;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < op->n; i++) {
        const yls_run_info *ri = &op->runs[i];
        json_t *o = json_object();
        json_object_set_new(o, "run", yls_run_json(ri->run));
        json_object_set_new(o, "first_step", json_integer(ri->first_step));
        json_object_set_new(o, "last_step", json_integer(ri->last_step));
        json_object_set_new(o, "last_loss", yls_json_num(ri->last_loss));
        json_object_set_new(o, "points", json_integer(ri->points));
        json_object_set_new(o, "updated", yls_json_num(ri->updated));
        json_t *cfg = ri->config ? json_loads(ri->config, 0, NULL) : NULL;
        json_object_set_new(o, "config", cfg ? cfg : json_null());
        json_array_append_new(a, o);
    }
    yls_api_reply_object(r, json_pack("{s:o}", "runs", a));
cleanup:
    yls_hop_free(op);
}

static void steps_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc) {
        yls_api_reply_failed(r, op);
        goto cleanup;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < op->n; i++)
        json_array_append_new(a, yls_point_json(&op->points[i]));
    yls_api_reply_object(r, json_pack("{s:o,s:o}", "run", yls_run_json(op->run), "points", a));
cleanup:
    yls_hop_free(op);
}

/* ------------------------------------------------------------------------------------ */
/* steps.csv, streamed: the history is read CSV_PAGE points at a time on the reader thread,
 * each page formatted when the client has taken the previous one, so memory stays at a
 * page however long the run. The first page is read before the answer (an unavailable
 * history is a 503); a failure after it cuts the chunked response short (no last chunk), so
 * the client sees the download failed rather than a short file. */

#define CSV_PAGE 1000

typedef struct {
    yls_server *srv;
    struct MHD_Connection *conn;
    char run[YLS_RUN_MAX];
    int L;         /* layers in the header */
    int64_t after; /* the last step written */
    char *text;    /* formatted, not yet sent */
    size_t len, off;
    bool fetching, last, failed, suspended, freed;
} csv_stream;

/* A CSV field: quoted, with quotes doubled; a leading = + - @ gets a ' so that spreadsheets
 * do not take it for a formula. */
static void csv_text(FILE *f, const char *s)
{
    fputc('"', f);
    if (*s == '=' || *s == '+' || *s == '-' || *s == '@')
        fputc('\'', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, ",%.17g", v);
    else
        fputs(",", f);
}

/* The rows of a page (after the header when header), into c->text. 0 or -1 (memory). */
static int csv_format(csv_stream *c, const yls_point *pts, size_t n, bool header)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -1;
    int L = c->L;
    if (header) {
        fputs("run,step,wall,batch,total,xy,wh,confidence,class,latency", f);
        for (int l = 0; l < L; l++) {
            for (int t = 0; t < 4; t++)
                fprintf(f, ",layer%d_%s", l, yls_term_names[t]);
            for (int k = 0; k < YL_NUM_STATS; k++)
                fprintf(f, ",layer%d_%s", l, yls_stat_names[k]);
        }
        fputs("\r\n", f);
    }
    for (size_t i = 0; i < n; i++) {
        const yls_point *p = &pts[i];
        csv_text(f, p->run);
        fprintf(f, ",%" PRId64, p->step);
        csv_num(f, p->wall);
        fprintf(f, ",%" PRId64, p->batch);
        csv_num(f, p->total);
        for (int t = 0; t < 4; t++)
            csv_num(f, p->terms[t]);
        csv_num(f, p->latency);
        for (int l = 0; l < L; l++) {
            for (int t = 0; t < 4; t++)
                csv_num(f, l < p->num_layers ? p->layer_terms[l][t] : NAN);
            for (int k = 0; k < YL_NUM_STATS; k++)
                csv_num(f, l < p->num_layers ? p->stats[l][k] : NAN);
        }
        fputs("\r\n", f);
    }
    if (fclose(f) != 0) {
        free(text);
        return -1;
    }
    free(c->text);
    c->text = text;
    c->len = len;
    c->off = 0;
    if (n)
        c->after = pts[n - 1].step;
    c->last = n < CSV_PAGE;
    return 0;
}

static void csv_free(csv_stream *c)
{
    free(c->text);
    free(c);
}

static void csv_page_done(yls_hop *op);

static int csv_fetch(csv_stream *c, void (*done)(yls_hop *), void *data, bool want_layers)
{
    yls_hop *op = yls_hop_new(YLS_HOP_STEPS, done, data);
    if (!op)
        return -1;
    snprintf(op->run, sizeof op->run, "%s", c->run);
    op->after = c->after;
    op->limit = CSV_PAGE;
    op->want_layers = want_layers;
    if (yls_history_submit(c->srv->history, op)) {
        yls_hop_free(op);
        return -1;
    }
    c->fetching = true;
    return 0;
}

static ssize_t csv_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    csv_stream *c = cls;
    if (c->off < c->len) {
        size_t n = c->len - c->off < max ? c->len - c->off : max;
        memcpy(out, c->text + c->off, n);
        c->off += n;
        return (ssize_t)n;
    }
    if (c->failed)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (c->last)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (!c->fetching && csv_fetch(c, csv_page_done, c, false))
        return MHD_CONTENT_READER_END_WITH_ERROR; /* history reads busy: cut short */
    c->suspended = true;
    MHD_suspend_connection(c->conn);
    return 0;
}

/* The response is freed; a page in flight frees c when it is done. */
static void csv_response_free(void *cls)
{
    csv_stream *c = cls;
    c->freed = true;
    if (!c->fetching)
        csv_free(c);
}

static void csv_page_done(yls_hop *op)
{
    csv_stream *c = op->data;
    c->fetching = false;
    if (c->freed) {
        csv_free(c);
    } else {
        if (op->rc || csv_format(c, op->points, op->n, false)) {
            if (op->rc)
                fprintf(stderr, YLS_NAME ": history: steps.csv: %s\n", op->err);
            c->failed = true;
        }
        if (c->suspended) {
            c->suspended = false;
            MHD_resume_connection(c->conn);
            yls_http_wake(c->srv);
        }
    }
    yls_hop_free(op);
}

/* The first page, read while the request is suspended. */
static void csv_first_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    csv_stream *c = calloc(1, sizeof *c);
    if (op->rc) {
        yls_api_reply_failed(r, op);
        goto fail;
    }
    if (!c)
        goto oom;
    c->srv = r->srv;
    c->conn = r->conn;
    snprintf(c->run, sizeof c->run, "%s", op->run);
    c->L = op->layers;
    c->after = INT64_MIN;
    if (csv_format(c, op->points, op->n, true))
        goto oom;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, csv_reader, c,
                                          csv_response_free);
    if (!resp)
        goto oom;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/csv; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION,
                            "attachment; filename=\"steps.csv\"");
    yls_safe_headers(resp);
    yls_reply(r, 200, resp, 0);
    yls_hop_free(op);
    return;
oom:
    yls_reply_error(r, 503, "out of memory; retry later");
fail:
    if (c)
        csv_free(c);
    yls_hop_free(op);
}

static void delete_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc)
        yls_api_reply_failed(r, op);
    else {
        yls_metrics_forget(r->srv, op->run);
        yls_api_reply_object(r, json_pack("{s:o,s:I}", "run", yls_run_json(op->run), "deleted",
                                  (json_int_t)op->deleted));
    }
    yls_hop_free(op);
}

/* A query argument as an integer in [lo, hi]; absent: def. */
int yls_api_arg_int(yls_request *r, const char *name, int64_t lo, int64_t hi, int64_t def,
                    int64_t *out)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
    *out = def;
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

int yls_api_page_args(yls_request *r, int64_t max, int64_t def, int64_t *after, int64_t *limit,
                      enum MHD_Result *ret)
{
    if (yls_api_arg_int(r, "after", INT64_MIN, INT64_MAX, -1, after))
        *ret = yls_reply_error(r, 400, "after must be an integer (a step)");
    else if (yls_api_arg_int(r, "limit", 1, max, def, limit))
        *ret = yls_reply_error(r, 400, "limit must be an integer from 1 to %lld", (long long)max);
    else
        return 0;
    return -1;
}

/* Hand op (NULL: out of memory) to a history thread; r waits, suspended. */
static enum MHD_Result submit(yls_request *r, yls_hop *op)
{
    if (!op)
        return yls_reply_error(r, 503, "out of memory; retry later");
    snprintf(op->run, sizeof op->run, "%s", r->route.run);
    if (yls_history_submit(r->srv->history, op)) {
        yls_hop_free(op);
        return yls_reply_error(r, 503, "the history is busy (its queue is full); retry later");
    }
    yls_pending_begin(r);
    return MHD_YES;
}

int yls_api_refused(yls_request *r, enum MHD_Result *ret)
{
    const yls_server *s = r->srv;
    if (!s->history)
        *ret = yls_reply_error(r, 404, "no history: the daemon runs with --history none");
    else if (s->draining)
        *ret = yls_reply_error(r, 503, "the server is shutting down");
    else
        return 0;
    return -1;
}

enum MHD_Result yls_api_runs(yls_request *r)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    return submit(r, yls_hop_new(YLS_HOP_RUNS, runs_done, r));
}

enum MHD_Result yls_api_steps(yls_request *r)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    int64_t after, limit;
    if (yls_api_page_args(r, STEPS_MAX, STEPS_DEFAULT, &after, &limit, &ret))
        return ret;
    yls_hop *op = yls_hop_new(YLS_HOP_STEPS, steps_done, r);
    if (op) {
        op->after = after;
        op->limit = limit;
    }
    return submit(r, op);
}

enum MHD_Result yls_api_csv(yls_request *r)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    yls_hop *op = yls_hop_new(YLS_HOP_STEPS, csv_first_done, r);
    if (op) {
        op->after = INT64_MIN;
        op->limit = CSV_PAGE;
        op->want_layers = true;
    }
    return submit(r, op);
}

enum MHD_Result yls_api_delete(yls_request *r)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    return submit(r, yls_hop_new(YLS_HOP_DELETE, delete_done, r));
}

enum MHD_Result yls_api_submit(yls_request *r, yls_hop *op)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret)) {
        yls_hop_free(op);
        return ret;
    }
    /* what the writes record must be reachable (and deletable) under its name */
    yls_fail f = {0};
    if (op && (op->kind == YLS_HOP_PUT_CONFIG || op->kind == YLS_HOP_PUT_SCALARS) &&
        yls_route_run_name_check(r->srv->router, r->srv, r->route.run, &f)) {
        yls_hop_free(op);
        return yls_reply_error(r, f.status, "%s", f.msg);
    }
    return submit(r, op);
}
