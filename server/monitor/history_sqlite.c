/*
 * history_sqlite.c: the SQLite backend of history.h. One table, one row per point, keyed by
 * (run, step); the per-layer terms and statistics are JSON arrays in text columns. WAL mode
 * with synchronous=FULL: a commit is on disk when record returns, and readers (the history's
 * reader thread with a connection of its own, the sqlite3 shell, a backup) do not block the
 * writer. A handle is used by one thread only.
 */
#include "history.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA busy_timeout=5000;"
    "CREATE TABLE IF NOT EXISTS points ("
    " run TEXT NOT NULL, step INTEGER NOT NULL, wall REAL NOT NULL, batch INTEGER NOT NULL,"
    " total REAL, xy REAL, wh REAL, confidence REAL, class REAL,"
    " num_layers INTEGER NOT NULL, layer_terms TEXT NOT NULL, stats TEXT NOT NULL,"
    " latency REAL NOT NULL, PRIMARY KEY (run, step)) WITHOUT ROWID;"
    /* per-image terms: keyed by step first, so that retention (a range of steps) and the
     * batch means (one step's rows) are range scans; an image's history reads the run */
    "CREATE TABLE IF NOT EXISTS images ("
    " run TEXT NOT NULL, step INTEGER NOT NULL, image INTEGER NOT NULL,"
    " xy REAL NOT NULL, wh REAL NOT NULL, confidence REAL NOT NULL, class REAL NOT NULL,"
    " truths INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (run, step, image)) WITHOUT ROWID;"
    /* per-image evaluation records (eval_records.c's blobs), added up per step */
    "CREATE TABLE IF NOT EXISTS evals ("
    " run TEXT NOT NULL, step INTEGER NOT NULL, image INTEGER NOT NULL,"
    " classes INTEGER NOT NULL, records BLOB NOT NULL,"
    " PRIMARY KEY (run, step, image)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS configs ("
    " run TEXT NOT NULL PRIMARY KEY, config TEXT NOT NULL, updated REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS scalars ("
    " run TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL, wall REAL NOT NULL,"
    " value REAL NOT NULL, PRIMARY KEY (run, name, step)) WITHOUT ROWID;";

static int fail(sqlite3 *db, char *err, const char *what)
{
    snprintf(err, YLS_HISTORY_ERR_MAX, "%s: %s", what, db ? sqlite3_errmsg(db) : "?");
    return -1;
}

/* Whether table images has column truths (a file of an older daemon has not). */
static bool has_truths(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('images') WHERE name = 'truths'",
                           -1, &st, NULL) == SQLITE_OK)
        found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

/* An older file: add the column (its rows get 0 truths: ranked per image, see
 * docs/monitoring.md). SQLite has no ADD COLUMN IF NOT EXISTS; a second daemon that added
 * it meanwhile makes the ALTER fail, hence the second look. */
static int migrate(sqlite3 *db, char *err)
{
    if (has_truths(db))
        return 0;
    if (sqlite3_exec(db, "ALTER TABLE images ADD COLUMN truths INTEGER NOT NULL DEFAULT 0",
                     NULL, NULL, NULL) != SQLITE_OK &&
        !has_truths(db))
        return fail(db, err, "schema (adding images.truths)");
    return 0;
}

static int sq_open(const char *target, void **out, char *err)
{
    sqlite3 *db = NULL;
    *out = NULL;
    if (sqlite3_open_v2(target, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                         SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        fail(db, err, "open");
        sqlite3_close(db);
        return -1;
    }
    char *msg = NULL;
    if (sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "schema: %s", msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        return -1;
    }
    if (migrate(db, err)) {
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

static void sq_close(void *db) { sqlite3_close(db); }

static int next_step(sqlite3 *db, const char *run, int64_t *step)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(step) + 1, 0) FROM points WHERE run = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : -1;
    if (rc == 0)
        *step = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* A statement with (run, a) bound, run to completion. 0 or -1. */
static int exec_run_i(sqlite3_stmt *st, const char *run, int64_t a)
{
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

/* The point's image rows: the step's old rows out (a replaced point), the new ones in, and
 * the rows that fell out of the retention window. */
static int record_images(sqlite3_stmt *const st[3], const yls_point *p,
                         bool step_given, int64_t image_steps)
{
    if (step_given && exec_run_i(st[0], p->run, p->step))
        return -1;
    if (p->n_images == 0 || image_steps <= 0)
        return 0;
    for (int64_t i = 0; i < p->n_images; i++) {
        sqlite3_reset(st[1]);
        sqlite3_bind_text(st[1], 1, p->run, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st[1], 2, p->step);
        sqlite3_bind_int64(st[1], 3, p->image_ids[i]);
        for (int t = 0; t < 4; t++)
            sqlite3_bind_double(st[1], 4 + t, p->image_terms[i * 4 + t]);
        sqlite3_bind_int64(st[1], 8, p->image_truths[i]);
        if (sqlite3_step(st[1]) != SQLITE_DONE)
            return -1;
    }
    return exec_run_i(st[2], p->run, image_steps);
}

/* The point's evaluation records: each image's replaces that image's at the step. */
static int record_evals(sqlite3_stmt *st, const yls_point *p)
{
    for (int64_t i = 0; p->eval_blob && i < p->n_images; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, p->run, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, p->step);
        sqlite3_bind_int64(st, 3, p->image_ids[i]);
        sqlite3_bind_int(st, 4, p->num_classes);
        sqlite3_bind_blob64(st, 5, p->eval_blob[i], p->eval_len[i], SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            return -1;
    }
    return 0;
}

static int sq_record(void *handle, yls_point *pts, size_t n, int64_t image_steps, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *ins = NULL, *img[3] = {NULL, NULL, NULL}, *ev = NULL;
    int rc = -1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "begin");
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO points VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM images WHERE run = ?1 AND step = ?2", -1,
                           &img[0], NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO images (run, step, image, xy, wh,"
                           " confidence, class, truths) VALUES (?,?,?,?,?,?,?,?)", -1,
                           &img[1], NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "DELETE FROM images WHERE run = ?1 AND step <= (SELECT max(step)"
                           " FROM images WHERE run = ?1) - ?2",
                           -1, &img[2], NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO evals VALUES (?,?,?,?,?)", -1, &ev,
                           NULL) != SQLITE_OK) {
        fail(db, err, "prepare");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        yls_point *p = &pts[i];
        bool step_given = p->step >= 0;
        if (p->step < 0 && next_step(db, p->run, &p->step)) {
            fail(db, err, "next step");
            goto cleanup;
        }
        char *lt = yls_matrix_json(&p->layer_terms[0][0], p->num_layers, 4);
        char *stt = yls_matrix_json(&p->stats[0][0], p->num_layers, YL_NUM_STATS);
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, p->run, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, p->step);
        sqlite3_bind_double(ins, 3, p->wall);
        sqlite3_bind_int64(ins, 4, p->batch);
        sqlite3_bind_double(ins, 5, p->total);
        for (int t = 0; t < 4; t++)
            sqlite3_bind_double(ins, 6 + t, p->terms[t]);
        sqlite3_bind_int(ins, 10, p->num_layers);
        sqlite3_bind_text(ins, 11, lt ? lt : "[]", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 12, stt ? stt : "[]", -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(ins, 13, p->latency);
        free(lt);
        free(stt);
        if (sqlite3_step(ins) != SQLITE_DONE) {
            fail(db, err, "insert");
            goto cleanup;
        }
        if (record_images(img, p, step_given, image_steps)) {
            fail(db, err, "images");
            goto cleanup;
        }
        if (record_evals(ev, p)) {
            fail(db, err, "evals");
            goto cleanup;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(db, err, "commit");
        goto cleanup;
    }
    rc = 0;
cleanup:
    sqlite3_finalize(ins);
    sqlite3_finalize(ev);
    for (int k = 0; k < 3; k++)
        sqlite3_finalize(img[k]);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Room for element len of *v (result rows arrive one at a time): doubles the array when
 * full. 0, or -1 with err set. */
static int grow(void **v, size_t *cap, size_t len, size_t elem, char *err)
{
    if (len < *cap)
        return 0;
    size_t ncap = *cap ? 2 * *cap : 64;
    void *nv = realloc(*v, ncap * elem);
    if (!nv) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    *v = nv;
    *cap = ncap;
    return 0;
}

/* The SQL prepared with ?1 bound to run: NULL with err when it cannot be. */
static sqlite3_stmt *prepare_run(sqlite3 *db, const char *sql, const char *run, char *err,
                                 const char *what)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail(db, err, what);
        sqlite3_finalize(st);
        return NULL;
    }
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    return st;
}

/* Fills one zeroed element from the current row; -1 with err when it cannot. */
typedef int (*row_fn)(sqlite3_stmt *st, void *elem, const void *arg, char *err);

/* Steps st (NULL: the prepare failed, err is set) to the end, one element of elem bytes per
 * row filled by row(): 0 with the array in *out and its length in *n, or -1 with err, all
 * freed (release(), when given, frees what row() allocated in an element). Finalizes st. */
static int read_rows(sqlite3 *db, sqlite3_stmt *st, size_t elem, row_fn row, const void *arg,
                     void (*release)(void *elem), void **out, size_t *n, char *err,
                     const char *what)
{
    *out = NULL;
    *n = 0;
    if (!st)
        return -1;
    char *v = NULL;
    size_t len = 0, cap = 0;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&v, &cap, len, elem, err))
            goto fail;
        void *e = v + len++ * elem;
        memset(e, 0, elem);
        if (row(st, e, arg, err))
            goto fail;
    }
    if (s != SQLITE_DONE) {
        fail(db, err, what);
        goto fail;
    }
    sqlite3_finalize(st);
    *out = v;
    *n = len;
    return 0;
fail:
    sqlite3_finalize(st);
    for (size_t i = 0; release && i < len; i++)
        release(v + i * elem);
    free(v);
    return -1;
}

static int run_row(sqlite3_stmt *st, void *elem, const void *arg, char *err)
{
    yls_run_info *r = elem;
    (void)arg;
    const unsigned char *name = sqlite3_column_text(st, 0);
    snprintf(r->run, sizeof r->run, "%s", name ? (const char *)name : "");
    r->first_step = sqlite3_column_int64(st, 1);
    r->last_step = sqlite3_column_int64(st, 2);
    r->points = sqlite3_column_int64(st, 3);
    r->updated = sqlite3_column_double(st, 4);
    r->last_loss = sqlite3_column_double(st, 5);
    const unsigned char *cfg = sqlite3_column_text(st, 6);
    if (cfg && !(r->config = strdup((const char *)cfg))) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    return 0;
}

static void run_release(void *elem) { free(((yls_run_info *)elem)->config); }

static int sq_runs(void *handle, yls_run_info **out, size_t *n, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT run, min(step), max(step), count(*), max(wall),"
                           " (SELECT total FROM points q WHERE q.run = p.run"
                           "  ORDER BY step DESC LIMIT 1),"
                           " (SELECT config FROM configs c WHERE c.run = p.run)"
                           " FROM points p GROUP BY run ORDER BY max(wall) DESC, run",
                           -1, &st, NULL) != SQLITE_OK)
        fail(db, err, "runs"); /* st is NULL: read_rows returns -1 */
    return read_rows(db, st, sizeof **out, run_row, NULL, run_release, (void **)out, n, err,
                     "runs");
}

static int step_row(sqlite3_stmt *st, void *elem, const void *run, char *err)
{
    yls_point *p = elem;
    (void)err;
    snprintf(p->run, sizeof p->run, "%s", (const char *)run);
    p->step = sqlite3_column_int64(st, 0);
    p->wall = sqlite3_column_double(st, 1);
    p->batch = sqlite3_column_int64(st, 2);
    p->total = sqlite3_column_double(st, 3);
    for (int t = 0; t < 4; t++)
        p->terms[t] = sqlite3_column_double(st, 4 + t);
    int L = sqlite3_column_int(st, 8);
    p->num_layers = L < 0 ? 0 : L > YL_MAX_LAYERS ? YL_MAX_LAYERS : L;
    yls_matrix_parse((const char *)sqlite3_column_text(st, 9), &p->layer_terms[0][0],
                 p->num_layers, 4);
    yls_matrix_parse((const char *)sqlite3_column_text(st, 10), &p->stats[0][0], p->num_layers,
                 YL_NUM_STATS);
    p->latency = sqlite3_column_double(st, 11);
    return 0;
}

static int sq_steps(void *handle, const char *run, int64_t after, int64_t limit,
                    yls_point **out, size_t *n, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db,
                                   "SELECT step, wall, batch, total, xy, wh, confidence, class,"
                                   " num_layers, layer_terms, stats, latency FROM points"
                                   " WHERE run = ? AND step > ? ORDER BY step LIMIT ?",
                                   run, err, "steps");
    if (st) {
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int64(st, 3, limit);
    }
    return read_rows(db, st, sizeof **out, step_row, run, NULL, (void **)out, n, err, "steps");
}

/* DELETE FROM table WHERE run = ?: 0 with *changes, or -1. */
static int delete_run(sqlite3 *db, const char *table, const char *run, int64_t *changes)
{
    char sql[64];
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE run = ?", table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    if (rc == 0 && changes)
        *changes = sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc;
}

static int sq_remove(void *handle, const char *run, int64_t *deleted, char *err)
{
    sqlite3 *db = handle;
    *deleted = 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "begin");
    if (delete_run(db, "points", run, deleted) || delete_run(db, "images", run, NULL) ||
        delete_run(db, "evals", run, NULL) ||
        delete_run(db, "configs", run, NULL) || delete_run(db, "scalars", run, NULL) ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(db, err, "delete");
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        *deleted = 0;
        return -1;
    }
    return 0;
}

static int image_row(sqlite3_stmt *st, void *elem, const void *arg, char *err)
{
    yls_image_row *r = elem;
    (void)arg, (void)err;
    r->image = sqlite3_column_int64(st, 0);
    r->step = sqlite3_column_int64(st, 1);
    for (int t = 0; t < 4; t++)
        r->terms[t] = sqlite3_column_double(st, 2 + t);
    r->truths = sqlite3_column_int64(st, 6);
    return 0;
}

static int sq_images(void *handle, const char *run, int64_t image, yls_image_row **out,
                     size_t *n, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db,
                                   "SELECT image, step, xy, wh, confidence, class, truths"
                                   " FROM images WHERE run = ?1 AND (?2 < 0 OR step IN"
                                   "  (SELECT step FROM images WHERE run = ?1 AND image = ?2))"
                                   " ORDER BY step, image",
                                   run, err, "images");
    if (st)
        sqlite3_bind_int64(st, 2, image);
    return read_rows(db, st, sizeof **out, image_row, NULL, NULL, (void **)out, n, err,
                     "images");
}

static int eval_row(sqlite3_stmt *st, void *elem, const void *arg, char *err)
{
    yls_eval_row *r = elem;
    (void)arg;
    r->image = sqlite3_column_int64(st, 0);
    r->num_classes = sqlite3_column_int(st, 1);
    r->len = (size_t)sqlite3_column_bytes(st, 2);
    r->blob = malloc(r->len ? r->len : 1);
    if (!r->blob) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    if (r->len)
        memcpy(r->blob, sqlite3_column_blob(st, 2), r->len);
    return 0;
}

static void eval_release(void *elem) { free(((yls_eval_row *)elem)->blob); }

static int sq_evals(void *handle, const char *run, int64_t step, yls_eval_row **out, size_t *n,
                    char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db,
                                   "SELECT image, classes, records FROM evals"
                                   " WHERE run = ?1 AND step = ?2 ORDER BY image",
                                   run, err, "evals");
    if (st)
        sqlite3_bind_int64(st, 2, step);
    return read_rows(db, st, sizeof **out, eval_row, NULL, eval_release, (void **)out, n, err,
                     "evals");
}

static int eval_step_row(sqlite3_stmt *st, void *elem, const void *arg, char *err)
{
    yls_eval_step *e = elem;
    (void)arg, (void)err;
    e->step = sqlite3_column_int64(st, 0);
    e->images = sqlite3_column_int64(st, 1);
    e->num_classes = sqlite3_column_int(st, 2);
    return 0;
}

static int sq_eval_steps(void *handle, const char *run, int64_t after, int64_t limit,
                         yls_eval_step **out, size_t *n, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db,
                                   "SELECT step, COUNT(*), MAX(classes) FROM evals"
                                   " WHERE run = ? AND step > ? GROUP BY step ORDER BY step"
                                   " LIMIT ?",
                                   run, err, "eval steps");
    if (st) {
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int64(st, 3, limit);
    }
    return read_rows(db, st, sizeof **out, eval_step_row, NULL, NULL, (void **)out, n, err,
                     "eval steps");
}

static double now_wall(void)
{
    uv_timeval64_t tv;
    return uv_gettimeofday(&tv) == 0 ? (double)tv.tv_sec + (double)tv.tv_usec / 1e6 : 0.0;
}

static int sq_put_config(void *handle, const char *run, const char *json, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db, "INSERT OR REPLACE INTO configs VALUES (?,?,?)", run,
                                   err, "config");
    if (!st)
        return -1;
    sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, now_wall());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : fail(db, err, "config");
    sqlite3_finalize(st);
    return rc;
}

static int sq_config(void *handle, const char *run, char **json, char *err)
{
    sqlite3 *db = handle;
    *json = NULL;
    sqlite3_stmt *st = prepare_run(db, "SELECT config FROM configs WHERE run = ?", run, err,
                                   "config");
    if (!st)
        return -1;
    int s = sqlite3_step(st), rc = 0;
    if (s == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t && !(*json = strdup((const char *)t))) {
            snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
            rc = -1;
        }
    } else if (s != SQLITE_DONE) {
        rc = fail(db, err, "config");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sq_put_scalars(void *handle, const char *run, const yls_scalar *v, size_t n,
                          char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, err, "begin");
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO scalars VALUES (?,?,?,?,?)", -1, &st,
                           NULL) != SQLITE_OK) {
        fail(db, err, "scalars");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, run, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, v[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, v[i].step);
        sqlite3_bind_double(st, 4, v[i].wall);
        sqlite3_bind_double(st, 5, v[i].value);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fail(db, err, "scalars");
            goto cleanup;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(db, err, "commit");
        goto cleanup;
    }
    rc = 0;
cleanup:
    sqlite3_finalize(st);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int scalar_row(sqlite3_stmt *st, void *elem, const void *arg, char *err)
{
    yls_scalar *r = elem;
    (void)arg, (void)err;
    const unsigned char *name = sqlite3_column_text(st, 0);
    snprintf(r->name, sizeof r->name, "%s", name ? (const char *)name : "");
    r->step = sqlite3_column_int64(st, 1);
    r->wall = sqlite3_column_double(st, 2);
    r->value = sqlite3_column_double(st, 3);
    return 0;
}

static int sq_scalars(void *handle, const char *run, yls_scalar **out, size_t *n, char *err)
{
    sqlite3 *db = handle;
    sqlite3_stmt *st = prepare_run(db,
                                   "SELECT name, step, wall, value FROM scalars WHERE run = ?"
                                   " ORDER BY name, step",
                                   run, err, "scalars");
    return read_rows(db, st, sizeof **out, scalar_row, NULL, NULL, (void **)out, n, err,
                     "scalars");
}

static int sq_layers(void *handle, const char *run, int *layers, char *err)
{
    sqlite3 *db = handle;
    *layers = 0;
    sqlite3_stmt *st = prepare_run(db, "SELECT coalesce(max(num_layers), 0) FROM points"
                                       " WHERE run = ?", run, err, "layers");
    if (!st)
        return -1;
    int rc = sqlite3_step(st) == SQLITE_ROW ? 0 : fail(db, err, "layers");
    if (rc == 0) {
        int L = sqlite3_column_int(st, 0);
        *layers = L < 0 ? 0 : L > YL_MAX_LAYERS ? YL_MAX_LAYERS : L;
    }
    sqlite3_finalize(st);
    return rc;
}

const yls_history_backend yls_history_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .record = sq_record,
    .runs = sq_runs,
    .steps = sq_steps,
    .remove = sq_remove,
    .images = sq_images,
    .put_config = sq_put_config,
    .config = sq_config,
    .put_scalars = sq_put_scalars,
    .scalars = sq_scalars,
    .layers = sq_layers,
    .evals = sq_evals,
    .eval_steps = sq_eval_steps,
    .close = sq_close,
};
