/*
 * history.h: the recorded points of training runs, and the storage behind them.
 *
 * A request with the `run` parameter records one point (yls_point) when it succeeds. The
 * points are kept by a storage BACKEND (history_sqlite.c, the embedded default, or
 * history_pg.c, PostgreSQL shared by replicas) behind the small table of functions below. The backend's functions are
 * blocking and are called from ONE thread only, the history thread of history.c, which
 * takes operations from a FIFO queue and hands each back to the loop thread (uv_async)
 * when it is done. So a backend needs no locking of its own, the compute threads never
 * wait on storage, and "the next step of a run" is decided by a single writer.
 *
 * WRITING A BACKEND. Fill a yls_history_backend:
 *   open(target, &db, err)         target is what follows the scheme (a file path for
 *                                  SQLite, a connection string for PostgreSQL); creates the
 *                                  schema when missing.
 *   record(db, pts, n, err)        store n points in ONE transaction, durably: when it
 *                                  returns 0 the points survive a crash of the process. A
 *                                  point with step < 0 gets the next step of its run (1 +
 *                                  the largest stored or earlier in pts, 0 for a new run),
 *                                  written back into pts[i].step. A point with the step of
 *                                  a stored one replaces it.
 *   runs(db, &runs, &n, err)       every run, most recently updated first (malloc'd array).
 *   steps(db, run, after, limit, &pts, &n, err)
 *                                  the points of run with step > after, by step, at most
 *                                  limit of them (malloc'd array).
 *   remove(db, run, &deleted, err) delete a run's points; *deleted: how many.
 *   close(db)                      NULL is fine.
 * Every function returns 0, or -1 with a message in err (YLS_HISTORY_ERR_MAX bytes).
 *
 * OWNERSHIP. Arrays returned by runs/steps belong to the caller (free()). A yls_hop
 * belongs to whoever submitted it until yls_history_submit, to the history thread until
 * its done callback, and to the done callback (which frees it with yls_hop_free) after.
 */
#ifndef YLS_HISTORY_H
#define YLS_HISTORY_H

#include "server.h"

#define YLS_HISTORY_ERR_MAX 256

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t step;   /* < 0 before record: the next step of the run */
    double wall;    /* seconds since the epoch */
    int64_t batch;  /* images */
    double total;   /* the loss: sum of terms */
    double terms[4]; /* xy, wh, confidence, class (each / batch) */
    int num_layers;
    double layer_terms[YL_MAX_LAYERS][4];
    double stats[YL_MAX_LAYERS][YL_NUM_STATS]; /* count, avg_iou, avg_class, avg_obj,
                                                   avg_noobj, recall50, recall75, ignored */
    double latency; /* seconds from the first byte of the request to the answer */
} yls_point;

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t first_step, last_step, points;
    double last_loss; /* total at last_step */
    double updated;   /* largest wall time, seconds since the epoch */
} yls_run_info;

typedef struct {
    const char *name; /* "sqlite" */
    int (*open)(const char *target, void **db, char *err);
    int (*record)(void *db, yls_point *pts, size_t n, char *err);
    int (*runs)(void *db, yls_run_info **runs, size_t *n, char *err);
    int (*steps)(void *db, const char *run, int64_t after, int64_t limit, yls_point **pts,
                 size_t *n, char *err);
    int (*remove)(void *db, const char *run, int64_t *deleted, char *err);
    void (*close)(void *db);
} yls_history_backend;

extern const yls_history_backend yls_history_sqlite;
extern const yls_history_backend yls_history_pg; /* history_pg.c */

/* ------------------------------------------------------------------------------------ */
/* The history thread (history.c).                                                      */

typedef enum { YLS_HOP_RECORD, YLS_HOP_RUNS, YLS_HOP_STEPS, YLS_HOP_DELETE } yls_hop_kind;

typedef struct yls_hop yls_hop;
struct yls_hop {
    yls_hop_kind kind;
    void (*done)(yls_hop *op); /* on the loop thread */
    void *data;
    /* in */
    yls_point point;           /* RECORD (its step is set when done) */
    char run[YLS_RUN_MAX];     /* STEPS, DELETE */
    int64_t after, limit;      /* STEPS */
    /* out */
    int rc;                    /* 0 or -1 with err */
    char err[YLS_HISTORY_ERR_MAX];
    yls_run_info *runs;        /* RUNS */
    yls_point *points;         /* STEPS */
    size_t n;
    int64_t deleted;           /* DELETE */
    yls_hop *next;
};

/* "none": *out = NULL; "sqlite:PATH" or PATH: SQLite; "postgresql://..." or
 * "postgres://...": PostgreSQL (history_pg.c). Opens the store and starts the
 * thread. 0 or -1 with err. */
int yls_history_open(yls_history **out, uv_loop_t *loop, const char *spec, char *err,
                     size_t errlen);
/* Queue op (taken over); op->done is called on the loop thread once it is done. */
void yls_history_submit(yls_history *h, yls_hop *op);
/* Finish what is queued, stop the thread, close the store and the async handle. */
void yls_history_close(yls_history *h);
yls_hop *yls_hop_new(yls_hop_kind kind, void (*done)(yls_hop *), void *data);
void yls_hop_free(yls_hop *op);

/* ------------------------------------------------------------------------------------ */
/* A point's names and JSON (point.c), for the API, the event streams and the CSV.       */

extern const char *const yls_term_names[4];            /* xy, wh, confidence, class */
extern const char *const yls_stat_names[YL_NUM_STATS]; /* count, avg_iou, ... */
struct json_t;
/* The point as a JSON object (jansson): the body of GET .../steps and of an event. */
struct json_t *yls_point_json(const yls_point *p);
/* A run name as a JSON string. */
struct json_t *yls_run_json(const char *run);

#endif /* YLS_HISTORY_H */
