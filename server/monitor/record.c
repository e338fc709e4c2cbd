/*
 * record.c: an infer request with the `run` parameter records one point. Its response is
 * built on the pool as usual; then, on the loop thread, the point goes to the history
 * thread, and the response is sent from the done callback, after the commit: a client that
 * has its answer knows the point is on disk. When the commit fails the client gets a 503
 * instead (and may retry). Committed points (or, with --history none, every point) go to
 * the metrics' gauges and to the event streams of their run.
 */
#include "history.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    yls_request *r;
    struct MHD_Response *resp;
    uint64_t bytes;
} held_reply;

static void publish(yls_server *s, const yls_point *p)
{
    yls_metrics_point(s, p->run, p->step, p->terms, p->total, p->wall);
    json_t *o = yls_point_json(p);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (text)
        yls_sse_publish(s, p->run, p->step, text);
    free(text);
}

static void record_done(yls_hop *op)
{
    held_reply *h = op->data;
    yls_request *r = h->r;
    if (op->rc) {
        MHD_destroy_response(h->resp);
        fprintf(stderr, YLS_NAME ": history: %s\n", op->err);
        yls_reply_error(r, 503, "the point was not recorded (%s); retry later", op->err);
    } else {
        r->step = op->point.step;
        r->has_step = true;
        publish(r->srv, &op->point);
        yls_reply(r, 200, h->resp, h->bytes);
    }
    free(h);
    yls_hop_free(op);
}

bool yls_record_reply(yls_request *r, const struct yls_point_src *src, struct MHD_Response *resp,
                      uint64_t bytes)
{
    if (!r->run[0])
        return false;
    yls_server *s = r->srv;
    yls_point pt;
    memset(&pt, 0, sizeof pt);
    snprintf(pt.run, sizeof pt.run, "%s", r->run);
    pt.step = r->has_step ? r->step : -1;
    uv_timeval64_t tv;
    if (uv_gettimeofday(&tv) == 0)
        pt.wall = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    pt.batch = src->batch;
    pt.total = src->res->loss;
    memcpy(pt.terms, src->res->terms, sizeof pt.terms);
    pt.num_layers = src->res->num_layers;
    memcpy(pt.layer_terms, src->res->layer_terms, sizeof pt.layer_terms);
    memcpy(pt.stats, src->res->stats, sizeof pt.stats);
    pt.latency = (double)(uv_hrtime() - r->t_start) / 1e9;

    if (!s->history) {
        if (pt.step < 0)
            pt.step = yls_metrics_next_step(s, pt.run);
        r->step = pt.step;
        r->has_step = true;
        publish(s, &pt);
        return false;
    }
    held_reply *h = calloc(1, sizeof *h);
    yls_hop *op = h ? yls_hop_new(YLS_HOP_RECORD, record_done, h) : NULL;
    if (!op) {
        free(h);
        MHD_destroy_response(resp);
        yls_reply_error(r, 503, "out of memory recording the point; retry later");
        return true;
    }
    h->r = r;
    h->resp = resp;
    h->bytes = bytes;
    op->point = pt;
    yls_history_submit(s->history, op);
    return true;
}
