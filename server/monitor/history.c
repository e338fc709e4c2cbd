/*
 * history.c: the history threads. The storage is used by two threads, each with its own
 * connection (a backend handle opened twice):
 *   - the WRITER runs RECORD, DELETE, PUT_CONFIG and PUT_SCALARS in the order they were
 *     submitted; consecutive RECORD operations found in its queue together are written in
 *     one transaction (group commit: one fsync for all the points that arrived while the
 *     previous commit ran);
 *   - the READER runs RUNS, STEPS, REPLAY, IMAGES and SCALARS. SQLite in WAL mode lets a
 *     reader run beside the writer; PostgreSQL has a connection of its own for them. So a
 *     long read (the runs of a large table, a CSV export) never delays a point's commit,
 *     and the infer request waiting for that commit.
 * Every answer is still consistent for a client: a point is acknowledged after its commit,
 * so any read started after the acknowledgement sees it.
 * Both queues are bounded (a full one answers 503); finished operations of both go to one
 * done list, and a uv_async wakes the loop thread, which calls their done callbacks. The
 * compute threads never touch any of this.
 */
#include "history.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAX 256
#define WRITE_QUEUE_MAX 4096 /* points, deletes, configurations waiting for the writer */
#define READ_QUEUE_MAX 64    /* reads waiting for the reader */

typedef struct {
    yls_history *h;
    const char *name;
    void *db;
    pthread_t thread;
    bool started;
    yls_hop *queue, **queue_tail; /* submitted */
    size_t queued, max;
} worker;

struct yls_history {
    const yls_history_backend *be;
    worker writer, reader;
    pthread_mutex_t mu; /* both queues, the done list, quit */
    pthread_cond_t cv;
    yls_hop *done, **done_tail; /* finished, for the loop thread */
    bool quit;
    int64_t image_steps; /* retention of the per-image rows */
    uv_async_t async;
    uv_loop_t *loop;
    char *pg_target;               /* PostgreSQL: for the listener */
    yls_pg_listener *listener;     /* the other replicas' points; NULL: none */
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
    op->image = -1;
    return op;
}

void yls_eval_rows_free(yls_eval_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        free(rows[i].blob);
    free(rows);
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
    free(op->point.image_truths);
    if (op->point.eval_blob)
        for (int64_t i = 0; i < op->point.n_images; i++)
            yls_big_free(op->point.eval_blob[i]);
    free(op->point.eval_blob);
    free(op->point.eval_len);
    yls_eval_rows_free(op->evals, op->kind == YLS_HOP_EVALS ? op->n : 0);
    free(op->eval_steps);
    free(op->from);
    if (op->free_data)
        op->free_data(op->data);
    free(op);
}

/* REPLAY: the points after from[i].after of every run, one after the other. */
static int replay(const yls_history_backend *be, void *db, yls_hop *op)
{
    for (size_t i = 0; i < op->nfrom; i++) {
        yls_point *pts = NULL;
        size_t n = 0;
        if (be->steps(db, op->from[i].run, op->from[i].after, op->limit, &pts, &n, op->err))
            return -1;
        if (op->limit >= 0 && (int64_t)n >= op->limit)
            op->more = true;
        if (n) {
            yls_point *all = realloc(op->points, (op->n + n) * sizeof *all);
            if (!all) {
                free(pts);
                snprintf(op->err, sizeof op->err, "out of memory");
                return -1;
            }
            memcpy(all + op->n, pts, n * sizeof *all);
            op->points = all;
            op->n += n;
        }
        free(pts);
    }
    return 0;
}

static void run_one(worker *w, yls_hop *op)
{
    const yls_history_backend *be = w->h->be;
    switch (op->kind) {
    case YLS_HOP_RUNS:
        op->rc = be->runs(w->db, &op->runs, &op->n, op->err);
        break;
    case YLS_HOP_STEPS:
        op->rc = op->want_layers ? be->layers(w->db, op->run, &op->layers, op->err) : 0;
        if (op->rc == 0)
            op->rc = be->steps(w->db, op->run, op->after, op->limit, &op->points, &op->n,
                               op->err);
        break;
    case YLS_HOP_REPLAY:
        op->rc = replay(be, w->db, op);
        break;
    case YLS_HOP_DELETE:
        op->rc = be->remove(w->db, op->run, &op->deleted, op->err);
        break;
    case YLS_HOP_IMAGES:
        op->rc = be->images(w->db, op->run, op->image, &op->rows, &op->n, op->err);
        break;
    case YLS_HOP_PUT_CONFIG:
        op->rc = be->put_config(w->db, op->run, op->text, op->err);
        break;
    case YLS_HOP_CONFIG:
        op->rc = be->config(w->db, op->run, &op->text, op->err);
        break;
    case YLS_HOP_PUT_SCALARS:
        op->rc = be->put_scalars(w->db, op->run, op->in_scalars, op->n_in, op->err);
        break;
    case YLS_HOP_SCALARS:
        op->rc = be->scalars(w->db, op->run, &op->scalars, &op->n, op->err);
        break;
    case YLS_HOP_EVALS:
        op->rc = be->evals(w->db, op->run, op->after, &op->evals, &op->n, op->err);
        break;
    case YLS_HOP_EVAL_STEPS:
        op->rc = be->eval_steps(w->db, op->run, op->after, op->limit, &op->eval_steps, &op->n,
                                op->err);
        break;
    case YLS_HOP_RECORD:
        break; /* grouped by the caller */
    }
}

/* Record ops[0..n) in one transaction; on failure every one of them fails. */
static void record_group(worker *w, yls_hop **ops, size_t n)
{
    yls_point pts[GROUP_MAX];
    for (size_t i = 0; i < n; i++)
        pts[i] = ops[i]->point;
    char err[YLS_HISTORY_ERR_MAX] = "";
    int rc = w->h->be->record(w->db, pts, n, w->h->image_steps, err);
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
    worker *w = arg;
    yls_history *h = w->h;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!w->queue && !h->quit)
            pthread_cond_wait(&h->cv, &h->mu);
        if (!w->queue)
            break; /* quit, and nothing left */
        yls_hop *batch = w->queue;
        w->queue = NULL;
        w->queue_tail = &w->queue;
        w->queued = 0;
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
                record_group(w, group, n);
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
            run_one(w, op);
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
    free(h->pg_target);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* Stop the threads that run and close the handles (after the queues are done). */
static void stop_workers(yls_history *h)
{
    pthread_mutex_lock(&h->mu);
    h->quit = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    worker *ws[2] = {&h->writer, &h->reader};
    for (int i = 0; i < 2; i++) {
        if (ws[i]->started)
            pthread_join(ws[i]->thread, NULL);
        ws[i]->started = false;
        h->be->close(ws[i]->db);
        ws[i]->db = NULL;
    }
}

static int worker_open(yls_history *h, worker *w, const char *name, const char *target,
                       size_t max, char *berr)
{
    w->h = h;
    w->name = name;
    w->max = max;
    w->queue_tail = &w->queue;
    return h->be->open(target, &w->db, berr);
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
    h->loop = loop;
    if (be == &yls_history_pg && !(h->pg_target = strdup(target))) {
        free(h);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* the writer first: it creates the file and the schema */
    if (worker_open(h, &h->writer, "writer", target, WRITE_QUEUE_MAX, berr) ||
        worker_open(h, &h->reader, "reader", target, READ_QUEUE_MAX, berr)) {
        snprintf(err, errlen, "--history %s: %s", be == &yls_history_sqlite ? spec : be->name,
                 berr); /* a PostgreSQL URL may hold a password */
        be->close(h->writer.db);
        free(h->pg_target);
        free(h);
        return -1;
    }
    h->done_tail = &h->done;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    uv_async_init(loop, &h->async, on_async);
    h->async.data = h;
    worker *ws[2] = {&h->writer, &h->reader};
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&ws[i]->thread, NULL, thread_main, ws[i])) {
            snprintf(err, errlen, "cannot start the history %s thread", ws[i]->name);
            stop_workers(h);
            uv_close((uv_handle_t *)&h->async, on_async_closed); /* frees h */
            return -1;
        }
        ws[i]->started = true;
    }
    *out = h;
    return 0;
}

void yls_history_set_image_steps(yls_history *h, int64_t n) { h->image_steps = n; }

int yls_history_submit(yls_history *h, yls_hop *op)
{
    bool write = op->kind == YLS_HOP_RECORD || op->kind == YLS_HOP_DELETE ||
                 op->kind == YLS_HOP_PUT_CONFIG || op->kind == YLS_HOP_PUT_SCALARS;
    worker *w = write ? &h->writer : &h->reader;
    op->next = NULL;
    pthread_mutex_lock(&h->mu);
    if (w->queued >= w->max) {
        pthread_mutex_unlock(&h->mu);
        return -1;
    }
    *w->queue_tail = op;
    w->queue_tail = &op->next;
    w->queued++;
    pthread_cond_broadcast(&h->cv); /* one condition for both threads */
    pthread_mutex_unlock(&h->mu);
    return 0;
}

void yls_history_follow(yls_history *h, void (*on_point)(void *arg, const char *json),
                        void (*on_gap)(void *arg), void *arg)
{
    if (h && h->pg_target && !h->listener)
        h->listener = yls_pg_listen_start(h->pg_target, h->loop, on_point, on_gap, arg);
}

void yls_history_close(yls_history *h)
{
    if (!h)
        return;
    yls_pg_listen_stop(h->listener);
    h->listener = NULL;
    stop_workers(h);     /* what is queued is done first */
    on_async(&h->async); /* the last done callbacks */
    uv_close((uv_handle_t *)&h->async, on_async_closed);
}
