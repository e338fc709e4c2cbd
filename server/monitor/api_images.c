/*
 * api_images.c: the per-image table of a run over HTTP (docs/monitoring.md "Images").
 *
 *   GET /v1/runs/{run}/images?order=loss&limit=N&window=K&per=box
 *       the images ranked by score, highest first (image_rank.h says how the score is
 *       computed; per=box (default): values per truth, per=image: whole): {run, order,
 *       per, window, images_total, rows, image_url, images: [{rank, image, score,
 *       appearances, used, last_step, last_value, mean_value, last_truths, url}]}
 *   GET /v1/runs/{run}/images/{id}?per=box
 *       one image's rows: {run, image, per, url, history: [{step, xy, wh, confidence,
 *       class, loss, truths, value, batch_mean, relative}]} by step; 404 when the run has
 *       no row of it
 *
 * The rows are read on the history thread (every row of the run: the table is bounded by
 * --image-history-steps); ranking them and writing the answer run on the libuv pool, so that
 * the loop thread, which serves every connection, never waits on a large run (320000 rows
 * take a few hundred ms). The work touches only its own query and the hop's rows.
 */
#include "api.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANK_DEFAULT 100
#define RANK_MAX 100000
#define WINDOW_DEFAULT 5
#define WINDOW_MAX 100000

static const char *const order_names[5] = {"xy", "wh", "confidence", "class", "loss"};
static const char *const per_names[2] = {"image", "box"}; /* YLS_PER_IMAGE, YLS_PER_TRUTH */

typedef struct {
    yls_work work; /* first: the query is the work item */
    yls_request *r;
    const char *image_url; /* --image-url (read-only) */
    int64_t image;         /* the image of a history */
    bool ranking;          /* else one image's history */
    int term;              /* 0..3 or YLS_RANK_LOSS */
    int per;               /* YLS_PER_TRUTH or YLS_PER_IMAGE */
    int64_t limit, window;
    yls_hop *op;           /* the rows, read by the history thread */
    /* out, from the pool */
    unsigned status;       /* 200, or an error with msg */
    char msg[256];
    char *text;            /* the JSON answer (malloc'd) */
} images_query;

/* The --image-url template with every {id} replaced, or null. */
static json_t *image_url(const char *t, int64_t id)
{
    if (!t)
        return json_null();
    char ids[24], buf[2048];
    snprintf(ids, sizeof ids, "%" PRId64, id);
    size_t o = 0;
    for (const char *p = t; *p && o + sizeof ids < sizeof buf;) {
        if (!strncmp(p, "{id}", 4)) {
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s", ids);
            p += 4;
        } else {
            buf[o++] = *p++;
        }
    }
    buf[o] = '\0';
    json_t *v = json_string(buf);
    return v ? v : json_null();
}

/* The ranking's JSON (pool thread). */
static void rank_work(images_query *q)
{
    yls_hop *op = q->op;
    yls_image_score *sc = NULL;
    size_t m = 0;
    if (yls_images_rank(op->rows, op->n, q->term, q->per, q->window, &sc, &m)) {
        q->status = 503;
        snprintf(q->msg, sizeof q->msg, "out of memory ranking %zu rows; retry later", op->n);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < m && (int64_t)i < q->limit; i++) {
        const yls_image_score *s = &sc[i];
        json_t *o = json_object();
        json_object_set_new(o, "rank", json_integer((json_int_t)i + 1));
        json_object_set_new(o, "image", json_integer(s->image));
        json_object_set_new(o, "score", yls_json_num(s->score));
        json_object_set_new(o, "appearances", json_integer(s->appearances));
        json_object_set_new(o, "used", json_integer(s->used));
        json_object_set_new(o, "last_step", json_integer(s->last_step));
        json_object_set_new(o, "last_value", yls_json_num(s->last_value));
        json_object_set_new(o, "mean_value", yls_json_num(s->mean_value));
        json_object_set_new(o, "last_truths", json_integer(s->last_truths));
        json_object_set_new(o, "url", image_url(q->image_url, s->image));
        json_array_append_new(a, o);
    }
    free(sc);
    json_t *root = json_pack("{s:o,s:s,s:s,s:I,s:I,s:I,s:o,s:o}", "run", yls_run_json(op->run),
                             "order", order_names[q->term], "per", per_names[q->per],
                             "window", (json_int_t)q->window,
                             "images_total", (json_int_t)m, "rows", (json_int_t)op->n,
                             "image_url", q->image_url ? json_string(q->image_url) : json_null(),
                             "images", a);
    q->text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    q->status = 200;
}

/* One image's history as JSON (pool thread). */
static void history_work(images_query *q)
{
    yls_hop *op = q->op;
    double *mean = malloc((op->n ? op->n : 1) * sizeof *mean);
    double *rel = malloc((op->n ? op->n : 1) * sizeof *rel);
    if (!mean || !rel || yls_images_relative(op->rows, op->n, YLS_RANK_LOSS, q->per, mean, rel)) {
        free(mean);
        free(rel);
        q->status = 503;
        snprintf(q->msg, sizeof q->msg, "out of memory reading %zu rows; retry later", op->n);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < op->n; i++) { /* by step: the backend's order */
        const yls_image_row *row = &op->rows[i];
        if (row->image != q->image)
            continue;
        json_array_append_new(
            a, json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:I,s:o,s:o,s:o}", "step",
                         (json_int_t)row->step, "xy", yls_json_num(row->terms[0]), "wh",
                         yls_json_num(row->terms[1]), "confidence", yls_json_num(row->terms[2]),
                         "class", yls_json_num(row->terms[3]), "loss",
                         yls_json_num(yls_image_value(row, YLS_RANK_LOSS, YLS_PER_IMAGE)),
                         "truths", (json_int_t)row->truths, "value",
                         yls_json_num(yls_image_value(row, YLS_RANK_LOSS, q->per)), "batch_mean",
                         yls_json_num(mean[i]), "relative", yls_json_num(rel[i])));
    }
    free(mean);
    free(rel);
    if (json_array_size(a) == 0) {
        json_decref(a);
        q->status = 404;
        snprintf(q->msg, sizeof q->msg,
                 "run '%.64s' has no rows of image %" PRId64
                 " (never given in image_ids, or older than --image-history-steps)",
                 op->run, q->image);
        return;
    }
    json_t *root = json_pack("{s:o,s:I,s:s,s:o,s:o}", "run", yls_run_json(op->run), "image",
                             (json_int_t)q->image, "per", per_names[q->per], "url",
                             image_url(q->image_url, q->image), "history", a);
    q->text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    q->status = 200;
}

static void images_work(yls_work *w)
{
    images_query *q = (images_query *)(void *)w;
    if (q->ranking)
        rank_work(q);
    else
        history_work(q);
}

static void images_after(yls_work *w, int status)
{
    (void)status;
    images_query *q = (images_query *)(void *)w;
    yls_api_reply_pooled(q->r, q->status, q->text, q->msg);
    yls_hop_free(q->op); /* and q, its data */
}

/* The rows are read: answer from the pool (the request stays pending until then). */
static void rows_done(yls_hop *op)
{
    images_query *q = op->data;
    if (op->rc) {
        yls_pending_end(q->r);
        yls_api_reply_failed(q->r, op);
        yls_hop_free(op); /* and q */
        return;
    }
    q->op = op;
    yls_pool_queue(q->r->srv, &q->work, images_work, images_after);
}

static enum MHD_Result images_serve(yls_request *r, bool ranking)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    images_query *q = calloc(1, sizeof *q);
    if (!q)
        return yls_reply_error(r, 503, "out of memory; retry later");
    q->r = r;
    q->ranking = ranking;
    q->image = r->route.image;
    q->image_url = r->srv->opt.image_url;
    q->term = YLS_RANK_LOSS;
    q->per = YLS_PER_TRUTH;
    const char *per = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "per");
    if (per && *per) {
        if (!strcmp(per, "image"))
            q->per = YLS_PER_IMAGE;
        else if (strcmp(per, "box")) {
            free(q);
            return yls_reply_error(r, 400, "per must be box (the loss per truth, the default) "
                                           "or image, not '%.64s'",
                                   per);
        }
    }
    if (ranking) {
        const char *order = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "order");
        if (order && *order) {
            q->term = -1;
            for (int t = 0; t < 5; t++)
                if (!strcmp(order, order_names[t]))
                    q->term = t;
            if (q->term < 0) {
                free(q);
                return yls_reply_error(r, 400, "order must be loss, xy, wh, confidence or class, "
                                               "not '%.64s'",
                                       order);
            }
        }
        if (yls_api_arg_int(r, "limit", 1, RANK_MAX, RANK_DEFAULT, &q->limit)) {
            free(q);
            return yls_reply_error(r, 400, "limit must be an integer from 1 to %d", RANK_MAX);
        }
        if (yls_api_arg_int(r, "window", 1, WINDOW_MAX, WINDOW_DEFAULT, &q->window)) {
            free(q);
            return yls_reply_error(r, 400, "window must be an integer from 1 to %d (the last "
                                           "appearances of an image that its score averages)",
                                   WINDOW_MAX);
        }
    }
    yls_hop *op = yls_hop_new(YLS_HOP_IMAGES, rows_done, q);
    if (!op) {
        free(q);
    } else {
        op->free_data = free; /* the query goes with the op, also when it is refused */
        if (!ranking)
            op->image = q->image; /* only its batches: the relative values need no more */
    }
    return yls_api_submit(r, op);
}

enum MHD_Result yls_api_images(yls_request *r) { return images_serve(r, true); }

enum MHD_Result yls_api_image(yls_request *r) { return images_serve(r, false); }
