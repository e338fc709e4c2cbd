/*
 * history.h: the recorded points of training runs, and the storage behind them.
 *
 * A request with the `run` parameter records one point (yls_point) when it succeeds. The
 * points are kept by a storage BACKEND (history_sqlite.c, the embedded default, or
 * history_pg.c, PostgreSQL shared by replicas) behind the small table of functions below.
 * The backend's functions are blocking. history.c opens the store twice: one handle for
 * its WRITER thread (record, remove) and one for its READER thread (runs, steps, layers);
 * each handle is used by its own thread only, which takes operations from a bounded FIFO
 * queue and hands each back to the loop thread (uv_async) when it is done. So a backend
 * needs no locking of its own, the compute threads never wait on storage, reads never
 * wait behind writes, and "the next step of a run" is decided by a single writer.
 *
 * WRITING A BACKEND. Fill a yls_history_backend:
 *   open(target, &db, err)         target is what follows the scheme (a file path for
 *                                  SQLite, a connection string for PostgreSQL); creates the
 *                                  schema when missing.
 *   record(db, pts, n, image_steps, err)
 *                                  store n points in ONE transaction, durably: when it
 *                                  returns 0 the points survive a crash of the process. A
 *                                  point with step < 0 gets the next step of its run (1 +
 *                                  the largest stored or earlier in pts, 0 for a new run),
 *                                  written back into pts[i].step. A point with the step of
 *                                  a stored one replaces it, its image rows included. A
 *                                  point's image rows (n_images of them) go to the images
 *                                  table; then the run's image rows with step <= (its
 *                                  largest image step - image_steps) are deleted (retention).
 *   runs(db, &runs, &n, err)       every run, most recently updated first (malloc'd array),
 *                                  with its configuration (malloc'd JSON text or NULL).
 *   steps(db, run, after, limit, &pts, &n, err)
 *                                  the points of run with step > after, by step, at most
 *                                  limit of them (malloc'd array).
 *   remove(db, run, &deleted, err) delete a run's points, image rows, configuration and
 *                                  scalars; *deleted: how many points.
 *   images(db, run, image, &rows, &n, err)
 *                                  the image rows of run, by step then image: every row
 *                                  (image < 0), or every row of the steps that image is in
 *                                  (its batches: what its relative values need).
 *   put_config(db, run, json, err) store (replace) the run's configuration, a JSON object.
 *   config(db, run, &json, err)    the run's configuration (malloc'd) or NULL: none.
 *   put_scalars(db, run, v, n, err) store n scalars in one transaction (replacing those
 *                                  with the same run, name and step).
 *   scalars(db, run, &v, &n, err)  the run's scalars, by name then step.
 *   layers(db, run, &L, err)       the largest num_layers of a run's points (0: none).
 *   evals(db, run, step, &rows, &n, err)
 *                                  the evaluation records stored at (run, step), by image
 *                                  (record stores a point's eval_blob rows; remove deletes
 *                                  them with the run).
 *   eval_steps(db, run, after, limit, &steps, &n, err)
 *                                  the steps of run with evaluation records and step >
 *                                  after, by step, at most limit of them (malloc'd array),
 *                                  each with its count of images and its classes.
 *   close(db)                      NULL is fine.
 * Every function returns 0, or -1 with a message in err (YLS_HISTORY_ERR_MAX bytes).
 *
 * OWNERSHIP. Arrays returned by runs/steps belong to the caller (free()). A yls_hop
 * belongs to whoever submitted it until yls_history_submit, to the history thread until
 * its done callback, and to the done callback (which frees it with yls_hop_free) after.
 */
#ifndef YLS_HISTORY_H
#define YLS_HISTORY_H

#include "image_rank.h" /* yls_image_row */
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
    /* RECORD only: the per-image rows to store with the point (0: none); the arrays are
     * malloc'd and owned by the hop (yls_hop_free), image_terms is [n_images][4], the
     * terms of each image not divided by the batch (yl_image_terms); image_truths the
     * image's anchors with a truth (the sum of its layers' yl_layer_sums.count). */
    int64_t n_images;
    int64_t *image_ids;
    double *image_terms;
    int64_t *image_truths;
    /* RECORD only, an evaluated batch (parameter eval): image i's COCO records (a blob of
     * eval_len[i] bytes, yls_eval_image; yls_big_alloc'd, owned by the hop) for image_ids[i],
     * num_classes the model's C; eval_blob NULL: none. Stored under (run, step, image),
     * replacing that image's earlier records at the step but no other image's: the batches
     * of one evaluation step add up, whichever replica took them. */
    void **eval_blob;
    size_t *eval_len;
    int num_classes;
} yls_point;

/* One image's stored evaluation records. */
typedef struct {
    int64_t image;
    int num_classes;
    void *blob; /* malloc'd (8-byte aligned), freed with the array by yls_eval_rows_free */
    size_t len;
} yls_eval_row;
void yls_eval_rows_free(yls_eval_row *rows, size_t n);

/* A step of a run that has evaluation records. */
typedef struct {
    int64_t step, images; /* images: how many have records at the step */
    int num_classes;      /* the largest stored (they agree unless the model changed) */
} yls_eval_step;

/* A scalar a training loop logged next to the loss (learning rate, validation mAP...). */
#define YLS_SCALAR_NAME_MAX 64
typedef struct {
    char name[YLS_SCALAR_NAME_MAX];
    int64_t step;
    double wall, value;
} yls_scalar;

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t first_step, last_step, points;
    double last_loss; /* total at last_step */
    double updated;   /* largest wall time, seconds since the epoch */
    char *config;     /* its configuration, JSON object text (malloc'd), or NULL */
} yls_run_info;

typedef struct {
    const char *name; /* "sqlite" */
    int (*open)(const char *target, void **db, char *err);
    int (*record)(void *db, yls_point *pts, size_t n, int64_t image_steps, char *err);
    int (*runs)(void *db, yls_run_info **runs, size_t *n, char *err);
    int (*steps)(void *db, const char *run, int64_t after, int64_t limit, yls_point **pts,
                 size_t *n, char *err);
    int (*remove)(void *db, const char *run, int64_t *deleted, char *err);
    int (*images)(void *db, const char *run, int64_t image, yls_image_row **rows, size_t *n,
                  char *err);
    int (*put_config)(void *db, const char *run, const char *json, char *err);
    int (*config)(void *db, const char *run, char **json, char *err);
    int (*put_scalars)(void *db, const char *run, const yls_scalar *v, size_t n, char *err);
    int (*scalars)(void *db, const char *run, yls_scalar **v, size_t *n, char *err);
    int (*layers)(void *db, const char *run, int *layers, char *err); /* max num_layers */
    /* the evaluation records of run at step, by image (malloc'd array and blobs) */
    int (*evals)(void *db, const char *run, int64_t step, yls_eval_row **rows, size_t *n,
                 char *err);
    int (*eval_steps)(void *db, const char *run, int64_t after, int64_t limit,
                      yls_eval_step **steps, size_t *n, char *err);
    void (*close)(void *db);
} yls_history_backend;

extern const yls_history_backend yls_history_sqlite;
extern const yls_history_backend yls_history_pg; /* history_pg.c */

/* ------------------------------------------------------------------------------------ */
/* The history threads (history.c).                                                      */

typedef enum {
    YLS_HOP_RECORD,
    YLS_HOP_RUNS,
    YLS_HOP_STEPS,
    YLS_HOP_DELETE,
    YLS_HOP_IMAGES,
    YLS_HOP_PUT_CONFIG,
    YLS_HOP_CONFIG,
    YLS_HOP_PUT_SCALARS,
    YLS_HOP_SCALARS,
    YLS_HOP_REPLAY, /* the points after a step, for several runs (a resumed event stream) */
    YLS_HOP_EVALS,  /* the evaluation records of a run at step `after` */
    YLS_HOP_EVAL_STEPS, /* the steps of a run with evaluation records (after, limit) */
} yls_hop_kind;

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t after;
} yls_run_after;

typedef struct yls_hop yls_hop;
struct yls_hop {
    yls_hop_kind kind;
    void (*done)(yls_hop *op); /* on the loop thread */
    void *data;
    void (*free_data)(void *data); /* set: yls_hop_free frees data with it (the op owns it) */
    /* in */
    yls_point point;           /* RECORD (its step is set when done) */
    char run[YLS_RUN_MAX];     /* STEPS, DELETE, IMAGES, PUT_CONFIG, (PUT_)SCALARS */
    int64_t after, limit;      /* STEPS, EVAL_STEPS; REPLAY: limit per run */
    int64_t image;             /* IMAGES: one image's batches, or -1: every row */
    char *text;                /* PUT_CONFIG in, CONFIG out: the JSON object (malloc'd, freed
                                  with the op; CONFIG: NULL when the run has none) */
    yls_scalar *in_scalars;    /* PUT_SCALARS (malloc'd, freed with the op) */
    size_t n_in;
    bool want_layers;          /* STEPS: also layers, the run's largest num_layers */
    yls_run_after *from;       /* REPLAY (malloc'd, freed with the op) */
    size_t nfrom;
    /* out */
    int rc;                    /* 0 or -1 with err */
    char err[YLS_HISTORY_ERR_MAX];
    yls_run_info *runs;        /* RUNS */
    yls_point *points;         /* STEPS, REPLAY (by run, then step) */
    yls_image_row *rows;       /* IMAGES */
    yls_scalar *scalars;       /* SCALARS */
    yls_eval_row *evals;       /* EVALS */
    yls_eval_step *eval_steps; /* EVAL_STEPS */
    size_t n;
    bool more;                 /* REPLAY: a run had more than limit points */
    int layers;                /* STEPS with want_layers */
    int64_t deleted;           /* DELETE */
    yls_hop *next;
};

/* "none": *out = NULL; "sqlite:PATH" or PATH: SQLite; "postgresql://..." or
 * "postgres://...": PostgreSQL (history_pg.c). Opens the store and starts the
 * thread. 0 or -1 with err. */
int yls_history_open(yls_history **out, uv_loop_t *loop, const char *spec, char *err,
                     size_t errlen);
/* Image rows older than n steps behind a run's newest are deleted (0: none are stored).
 * Call before submitting anything. */
void yls_history_set_image_steps(yls_history *h, int64_t n);
/* Queue op (taken over); op->done is called on the loop thread once it is done. 0, or -1
 * when the queue is full (op not taken: the caller answers 503 and frees it). */
int yls_history_submit(yls_history *h, yls_hop *op);
/* Finish what is queued, stop the thread, close the store and the async handle. */
void yls_history_close(yls_history *h);
/* Follow the points other replicas record in a shared PostgreSQL history: on_point gets
 * each one's JSON, on_gap says some may have been missed (both on the loop thread). Does
 * nothing for SQLite (one daemon per file). */
void yls_history_follow(yls_history *h, void (*on_point)(void *arg, const char *json),
                        void (*on_gap)(void *arg), void *arg);

/* history_pg_listen.c: NOTIFY/LISTEN between replicas. */
#define YLS_PG_CHANNEL "yololoss_points"
typedef struct yls_pg_listener yls_pg_listener;
/* This process's id in the payloads ("<origin> <point JSON>"), so it skips its own. */
const char *yls_pg_origin(void);
yls_pg_listener *yls_pg_listen_start(const char *target, uv_loop_t *loop,
                                     void (*on_point)(void *arg, const char *json),
                                     void (*on_gap)(void *arg), void *arg);
void yls_pg_listen_stop(yls_pg_listener *l); /* NULL is fine */
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
/* A number; null when it is not finite (JSON has no NaN or Inf). */
struct json_t *yls_json_num(double v);
/* A point's rows x cols matrix (layer terms, statistics) as the history stores it:
 * [[a,b,..],..] with non-finite values as null (malloc'd text; NULL out of memory), and back
 * (what is not a number there, or missing, reads as NaN). */
char *yls_matrix_json(const double *v, int rows, int cols);
void yls_matrix_parse(const char *text, double *v, int rows, int cols);

#endif /* YLS_HISTORY_H */
