/*
 * record.c: an infer request with the `run` parameter records one point. Its response is
 * built on the pool as usual; then, on the loop thread, the point goes to the history
 * thread, and the response is sent from the done callback, after the commit: a client that
 * has its answer knows the point is on disk. When the commit fails the client gets a 503
 * instead (and may retry). Committed points (or, with --history none, every point) go to
 * the metrics' gauges and to the event streams of their run; with a PostgreSQL history,
 * the points other replicas record go to the event streams too.
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

/* The batch's image ids and terms into p (owned by its hop). 0, or -1: out of memory. */
static int add_image_rows(yls_point *p, const struct yls_point_src *src)
{
    size_t B = (size_t)src->batch;
    p->image_ids = malloc((B ? B : 1) * sizeof *p->image_ids);
    p->image_terms = malloc((B ? B : 1) * 4 * sizeof *p->image_terms);
    p->image_truths = malloc((B ? B : 1) * sizeof *p->image_truths);
    if (!p->image_ids || !p->image_terms || !p->image_truths)
        return -1;
    memcpy(p->image_ids, src->image_ids, B * sizeof *p->image_ids);
    for (size_t b = 0; b < B; b++) {
        yl_image_terms(&src->images[b], &p->image_terms[b * 4]);
        /* the truths the loss saw: anchors with objectness > 0 (a box that another box of
         * the image displaced from its anchor, as keras's preprocess_true_boxes does, is
         * not one), whether the truth came as boxes or as y_true */
        int64_t t = 0;
        for (int l = 0; l < src->images[b].num_layers; l++)
            t += src->images[b].layer[l].count;
        p->image_truths[b] = t;
    }
    p->n_images = (int64_t)B;
    return 0;
}

/* The batch's evaluation records into p (owned by its hop): the blobs are moved, src's
 * entries set to NULL. 0, or -1: out of memory (nothing moved). */
static int take_evals(yls_point *p, const struct yls_point_src *src)
{
    size_t B = (size_t)src->batch;
    p->eval_blob = calloc(B ? B : 1, sizeof *p->eval_blob);
    p->eval_len = calloc(B ? B : 1, sizeof *p->eval_len);
    if (!p->eval_blob || !p->eval_len)
        return -1;
    for (size_t b = 0; b < B; b++) {
        p->eval_blob[b] = src->eval_blob[b];
        p->eval_len[b] = src->eval_len[b];
        src->eval_blob[b] = NULL;
    }
    p->num_classes = src->num_classes;
    return 0;
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
    if (op && ((src->image_ids && add_image_rows(&op->point, src)) ||
               (src->eval_blob && take_evals(&op->point, src)))) {
        yls_hop_free(op);
        op = NULL;
    }
    if (!op) {
        free(h);
        MHD_destroy_response(resp);
        yls_reply_error(r, 503, "out of memory recording the point; retry later");
        return true;
    }
    h->r = r;
    h->resp = resp;
    h->bytes = bytes;
    pt.n_images = op->point.n_images;
    pt.image_ids = op->point.image_ids;
    pt.image_terms = op->point.image_terms;
    pt.image_truths = op->point.image_truths;
    pt.eval_blob = op->point.eval_blob;
    pt.eval_len = op->point.eval_len;
    pt.num_classes = op->point.num_classes;
    op->point = pt;
    if (yls_history_submit(s->history, op)) {
        free(h);
        yls_hop_free(op);
        MHD_destroy_response(resp);
        yls_reply_error(r, 503, "the history is busy (its write queue is full); retry later");
    }
    return true;
}

/* A point another replica recorded (history_pg_listen.c): to the event streams. It is
 * parsed and written again, so that what reaches a stream is always one line of JSON. */
static void on_replica_point(void *arg, const char *json)
{
    yls_server *s = arg;
    json_t *o = json_loads(json, 0, NULL);
    const char *run = json_string_value(json_object_get(o, "run"));
    json_t *step = json_object_get(o, "step");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (run && strlen(run) < YLS_RUN_MAX && json_is_integer(step) && text)
        yls_sse_publish(s, run, json_integer_value(step), text);
    free(text);
    json_decref(o);
}

/* The listener was away: end every stream, each client resumes from its Last-Event-ID. */
static void on_replica_gap(void *arg) { yls_sse_close_all(arg); }

void yls_record_follow_replicas(yls_server *s)
{
    yls_history_follow(s->history, on_replica_point, on_replica_gap, s);
}
