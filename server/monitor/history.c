/*
 * history.c: the history thread. One thread owns the backend's handle and runs the
 * operations in the order they were submitted; consecutive RECORD operations found in the
 * queue together are written in one transaction (group commit: one fsync for all the
 * points that arrived while the previous commit was running). Finished operations go to
 * a done list, and a uv_async wakes the loop thread, which calls their done callbacks.
 * The compute threads never touch any of this: the loop thread submits a point after the
 * response is built and sends the response from the done callback.
 */
#include "history.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAX 256

struct yls_history {
    const yls_history_backend *be;
    void *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    yls_hop *queue, **queue_tail; /* submitted */
    yls_hop *done, **done_tail;   /* finished, for the loop thread */
    bool quit;
    int64_t image_steps; /* retention of the per-image rows */
    uv_async_t async;
};

yls_hop *yls_hop_new(yls_hop_kind kind, void (*done)(yls_hop *), void *data)
{
    yls_hop *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->done = done;
    op->data = data;
    op->point.step = -1;
    op->limit = -1;
    return op;
}

void yls_hop_free(yls_hop *op)
{
    if (!op)
        return;
    if (op->runs)
        for (size_t i = 0; i < op->n; i++)
            free(op->runs[i].config);
    free(op->runs);
    free(op->points);
    free(op->rows);
    free(op->scalars);
    free(op->in_scalars);
    free(op->text);
    free(op->point.image_ids);
    free(op->point.image_terms);
    free(op);
}

static void run_one(yls_history *h, yls_hop *op)
{
    switch (op->kind) {
    case YLS_HOP_RUNS:
        op->rc = h->be->runs(h->db, &op->runs, &op->n, op->err);
        break;
    case YLS_HOP_STEPS:
        op->rc = h->be->steps(h->db, op->run, op->after, op->limit, &op->points, &op->n, op->err);
        break;
    case YLS_HOP_DELETE:
        op->rc = h->be->remove(h->db, op->run, &op->deleted, op->err);
        break;
    case YLS_HOP_IMAGES:
        op->rc = h->be->images(h->db, op->run, &op->rows, &op->n, op->err);
        break;
    case YLS_HOP_PUT_CONFIG:
        op->rc = h->be->put_config(h->db, op->run, op->text, op->err);
        break;
    case YLS_HOP_PUT_SCALARS:
        op->rc = h->be->put_scalars(h->db, op->run, op->in_scalars, op->n_in, op->err);
        break;
    case YLS_HOP_SCALARS:
        op->rc = h->be->scalars(h->db, op->run, &op->scalars, &op->n, op->err);
        break;
    case YLS_HOP_RECORD:
        break; /* grouped by the caller */
    }
}

/* Record ops[0..n) in one transaction; on failure every one of them fails. */
static void record_group(yls_history *h, yls_hop **ops, size_t n)
{
    yls_point pts[GROUP_MAX];
    for (size_t i = 0; i < n; i++)
        pts[i] = ops[i]->point;
    char err[YLS_HISTORY_ERR_MAX] = "";
    int rc = h->be->record(h->db, pts, n, h->image_steps, err);
    for (size_t i = 0; i < n; i++) {
        ops[i]->rc = rc;
        if (rc)
            snprintf(ops[i]->err, sizeof ops[i]->err, "%s", err);
        else
            ops[i]->point.step = pts[i].step;
    }
}

static void *thread_main(void *arg)
{
    yls_history *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->queue && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!h->queue)
            break; /* quit, and nothing left */
        yls_hop *batch = h->queue;
        h->queue = NULL;
        h->queue_tail = &h->queue;
        pthread_mutex_unlock(&h->mu);

        yls_hop *finished = NULL, **ftail = &finished;
        while (batch) {
            yls_hop *group[GROUP_MAX];
            size_t n = 0;
            while (batch && batch->kind == YLS_HOP_RECORD && n < GROUP_MAX) {
                group[n++] = batch;
                batch = batch->next;
            }
            if (n) {
                record_group(h, group, n);
                for (size_t i = 0; i < n; i++) {
                    group[i]->next = NULL;
                    *ftail = group[i];
                    ftail = &group[i]->next;
                }
                continue;
            }
            yls_hop *op = batch;
            batch = batch->next;
            op->next = NULL;
            run_one(h, op);
            *ftail = op;
            ftail = &op->next;
        }

        pthread_mutex_lock(&h->mu);
        *h->done_tail = finished;
        h->done_tail = ftail;
        uv_async_send(&h->async);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void on_async(uv_async_t *a)
{
    yls_history *h = a->data;
    pthread_mutex_lock(&h->mu);
    yls_hop *list = h->done;
    h->done = NULL;
    h->done_tail = &h->done;
    pthread_mutex_unlock(&h->mu);
    while (list) {
        yls_hop *op = list;
        list = list->next;
        op->next = NULL;
        op->done(op);
    }
}

static void on_async_closed(uv_handle_t *a)
{
    yls_history *h = a->data;
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int yls_history_open(yls_history **out, uv_loop_t *loop, const char *spec, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!strcmp(spec, "none"))
        return 0;
    const yls_history_backend *be = &yls_history_sqlite;
    const char *target = spec;
    if (!strncmp(spec, "sqlite:", 7))
        target = spec + 7;
    else if (!strncmp(spec, "postgresql://", 13) || !strncmp(spec, "postgres://", 11))
        be = &yls_history_pg; /* libpq takes the URL itself */
    yls_history *h = calloc(1, sizeof *h);
    char berr[YLS_HISTORY_ERR_MAX] = "";
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    h->be = be;
    if (be->open(target, &h->db, berr)) {
        snprintf(err, errlen, "--history %s: %s", be == &yls_history_sqlite ? spec : be->name,
                 berr); /* a PostgreSQL URL may hold a password */
        free(h);
        return -1;
    }
    h->queue_tail = &h->queue;
    h->done_tail = &h->done;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    uv_async_init(loop, &h->async, on_async);
    h->async.data = h;
    if (pthread_create(&h->thread, NULL, thread_main, h)) {
        snprintf(err, errlen, "cannot start the history thread");
        be->close(h->db);
        uv_close((uv_handle_t *)&h->async, on_async_closed); /* frees h */
        return -1;
    }
    *out = h;
    return 0;
}

void yls_history_set_image_steps(yls_history *h, int64_t n) { h->image_steps = n; }

void yls_history_submit(yls_history *h, yls_hop *op)
{
    op->next = NULL;
    pthread_mutex_lock(&h->mu);
    *h->queue_tail = op;
    h->queue_tail = &op->next;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void yls_history_close(yls_history *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->quit = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    on_async(&h->async); /* the last done callbacks */
    h->be->close(h->db);
    h->db = NULL;
    uv_close((uv_handle_t *)&h->async, on_async_closed);
}
