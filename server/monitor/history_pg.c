/*
 * history_pg.c: the PostgreSQL backend of history.h (libpq), for replicas sharing one
 * history. The same table as the SQLite backend, one row per point keyed by (run, step).
 *
 * SHARED BY REPLICAS. Every daemon may write any run at any time, so the database decides:
 *   - the schema is created under a transaction-scoped advisory lock (CREATE TABLE IF NOT
 *     EXISTS alone races on the catalog when replicas start together);
 *   - record() takes a transaction-scoped advisory lock per run it writes (in a fixed
 *     order, so two replicas never deadlock), then computes a missing step as
 *     coalesce(max(step) + 1, 0) in the INSERT itself. The lock is taken by a statement of
 *     its own: under READ COMMITTED the INSERT's snapshot is taken after the lock is held,
 *     so it sees every point committed by the replica that held the lock before. Steps
 *     given by the client replace the stored point (ON CONFLICT DO UPDATE) as in SQLite.
 *   - a point is acknowledged after COMMIT returned (synchronous_commit is the server's).
 *
 * LOST CONNECTIONS. A broken connection is reset at the start of the next operation; an
 * operation whose first statement fails on a broken connection is retried once on a new
 * one (nothing was done yet), anything else fails with the server's message (the daemon
 * answers 503 to the recording request, and the client retries). open() waits up to
 * PG_OPEN_WAIT seconds for the server (replicas may start before the database).
 * A handle is used by one thread only (history.c opens two: its writer's and its reader's).
 */
#include "history.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_OPEN_WAIT 30
#define PG_LOCK_CLASS 0x796c6c /* first key of the advisory locks: "yll" */

typedef struct {
    PGconn *conn;
    char *target;
} pgdb;

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS points ("
    " run TEXT NOT NULL, step BIGINT NOT NULL, wall DOUBLE PRECISION NOT NULL,"
    " batch BIGINT NOT NULL, total DOUBLE PRECISION, xy DOUBLE PRECISION,"
    " wh DOUBLE PRECISION, confidence DOUBLE PRECISION, class DOUBLE PRECISION,"
    " num_layers INTEGER NOT NULL, layer_terms TEXT NOT NULL, stats TEXT NOT NULL,"
    " latency DOUBLE PRECISION NOT NULL, PRIMARY KEY (run, step));"
    "CREATE TABLE IF NOT EXISTS images ("
    " run TEXT NOT NULL, step BIGINT NOT NULL, image BIGINT NOT NULL,"
    " xy DOUBLE PRECISION NOT NULL, wh DOUBLE PRECISION NOT NULL,"
    " confidence DOUBLE PRECISION NOT NULL, class DOUBLE PRECISION NOT NULL,"
    " truths BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (run, step, image));"
    /* a database of an older daemon: its rows get 0 truths (ranked per image) */
    "ALTER TABLE images ADD COLUMN IF NOT EXISTS truths BIGINT NOT NULL DEFAULT 0;"
    /* per-image evaluation records (eval_records.c's blobs), added up per step */
    "CREATE TABLE IF NOT EXISTS evals ("
    " run TEXT NOT NULL, step BIGINT NOT NULL, image BIGINT NOT NULL,"
    " classes INTEGER NOT NULL, records BYTEA NOT NULL,"
    " PRIMARY KEY (run, step, image));"
    "CREATE TABLE IF NOT EXISTS configs ("
    " run TEXT NOT NULL PRIMARY KEY, config TEXT NOT NULL,"
    " updated DOUBLE PRECISION NOT NULL);"
    "CREATE TABLE IF NOT EXISTS scalars ("
    " run TEXT NOT NULL, name TEXT NOT NULL, step BIGINT NOT NULL,"
    " wall DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (run, name, step))";

static int fail_msg(char *err, const char *what, const char *msg)
{
    char m[YLS_HISTORY_ERR_MAX];
    snprintf(m, sizeof m, "%s", msg ? msg : "?");
    size_t len = strlen(m);
    while (len && (m[len - 1] == '\n' || m[len - 1] == ' '))
        m[--len] = '\0';
    for (char *p = m; *p; p++)
        if (*p == '\n')
            *p = ' ';
    snprintf(err, YLS_HISTORY_ERR_MAX, "%s: %s", what, m);
    return -1;
}

static int fail(pgdb *db, char *err, const char *what)
{
    return fail_msg(err, what, db->conn ? PQerrorMessage(db->conn) : "not connected");
}

static PGconn *connect_to(const char *target)
{
    /* connect_timeout first: one given in the URL overrides it */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"5", YLS_NAME, target, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

static void quiet_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

/* A statement without parameters whose result is not needed: 0 or -1 with err. */
static int exec_ok(pgdb *db, const char *sql, char *err, const char *what)
{
    PGresult *res = PQexec(db->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        fail_msg(err, what, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/* Connected, reconnecting when the connection was lost. */
static int ensure(pgdb *db, char *err)
{
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
        return 0;
    if (db->conn)
        PQreset(db->conn);
    else
        db->conn = connect_to(db->target);
    if (!db->conn) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "connect: out of memory");
        return -1;
    }
    if (PQstatus(db->conn) != CONNECTION_OK)
        return fail(db, err, "connect");
    PQsetNoticeReceiver(db->conn, quiet_notice, NULL);
    return 0;
}

/* The connection broke during the last statement (worth one retry on a new one). */
static bool broken(pgdb *db) { return !db->conn || PQstatus(db->conn) != CONNECTION_OK; }

static int create_schema(pgdb *db, char *err)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "BEGIN; SELECT pg_advisory_xact_lock(%d, 0); %s; COMMIT", PG_LOCK_CLASS, schema);
    if (exec_ok(db, sql, err, "schema")) {
        exec_ok(db, "ROLLBACK", (char[YLS_HISTORY_ERR_MAX]){0}, "rollback");
        return -1;
    }
    return 0;
}

static void pg_close(void *handle)
{
    pgdb *db = handle;
    if (!db)
        return;
    PQfinish(db->conn);
    free(db->target);
    free(db);
}

static int pg_open(const char *target, void **out, char *err)
{
    *out = NULL;
    pgdb *db = calloc(1, sizeof *db);
    if (!db || !(db->target = strdup(target))) {
        free(db);
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    time_t start = time(NULL);
    bool told = false;
    for (;;) {
        if (ensure(db, err) == 0)
            break;
        /* a server that is not up yet: wait; anything else (bad URL, password): fail now */
        if (!strstr(err, "Connection refused") && !strstr(err, "No such file") &&
            !strstr(err, "starting up") && !strstr(err, "could not translate host"))
            goto fail;
        if (time(NULL) - start >= PG_OPEN_WAIT)
            goto fail;
        if (!told) {
            fprintf(stderr, YLS_NAME ": waiting for PostgreSQL (%s)\n", err);
            told = true;
        }
        PQfinish(db->conn);
        db->conn = NULL;
        struct timespec ts = {0, 500000000L};
        nanosleep(&ts, NULL);
    }
    if (create_schema(db, err))
        goto fail;
    *out = db;
    return 0;
fail:
    pg_close(db);
    return -1;
}

/* A double as PostgreSQL's float8 input. */
static void fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v))
        snprintf(buf, len, "NaN");
    else if (isinf(v))
        snprintf(buf, len, v > 0 ? "Infinity" : "-Infinity");
    else
        snprintf(buf, len, "%.17g", v);
}

static double get_double(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0.0 : strtod(PQgetvalue(res, row, col), NULL);
}

static int64_t get_int(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static int cmp_run(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* BEGIN, on a new connection when the old one is found broken. */
static int begin(pgdb *db, char *err)
{
    for (int attempt = 0;; attempt++) {
        if (ensure(db, err))
            return -1;
        if (exec_ok(db, "BEGIN", err, "begin") == 0)
            return 0;
        if (attempt > 0 || !broken(db))
            return -1;
    }
}

static int lock_runs(pgdb *db, const yls_point *pts, size_t n, char *err)
{
    const char **runs = malloc((n ? n : 1) * sizeof *runs);
    if (!runs) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        runs[i] = pts[i].run;
    qsort(runs, n, sizeof *runs, cmp_run);
    int rc = 0;
    char cls[16];
    snprintf(cls, sizeof cls, "%d", PG_LOCK_CLASS);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i && !strcmp(runs[i], runs[i - 1]))
            continue;
        const char *params[2] = {cls, runs[i]};
        PGresult *res = PQexecParams(db->conn,
                                     "SELECT pg_advisory_xact_lock($1::int, hashtext($2))", 2,
                                     NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail_msg(err, "lock", PQresultErrorMessage(res));
        PQclear(res);
    }
    free(runs);
    return rc;
}

/* A statement with parameters whose result is not needed: 0 or -1 with err. */
static int exec_params(pgdb *db, const char *sql, int n, const char *const *params, char *err,
                       const char *what)
{
    PGresult *res = PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        fail_msg(err, what, PQresultErrorMessage(res));
    PQclear(res);
    return rc;
}

/* "{a,b,...}": n values of v (stride apart), as a PostgreSQL array literal; malloc'd. */
static char *array_text(const int64_t *ids, const double *v, int64_t n, int stride)
{
    size_t cap = 2 + (size_t)n * 26, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[len++] = '{';
    for (int64_t i = 0; i < n; i++) {
        if (i)
            s[len++] = ',';
        if (ids)
            len += (size_t)snprintf(s + len, cap - len, "%lld", (long long)ids[i]);
        else
            len += (size_t)snprintf(s + len, cap - len, "%.17g", v[i * stride]);
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* The point's image rows (one statement: arrays unnested), the step's old rows out first
 * (a replaced point), then the rows out of the retention window. */
static int record_images(pgdb *db, const yls_point *p, int64_t step, bool step_given,
                         int64_t image_steps, char *err)
{
    char st[24], keep[24];
    snprintf(st, sizeof st, "%lld", (long long)step);
    snprintf(keep, sizeof keep, "%lld", (long long)image_steps);
    const char *del[2] = {p->run, st};
    if (step_given && exec_params(db, "DELETE FROM images WHERE run = $1 AND step = $2::bigint",
                                  2, del, err, "images"))
        return -1;
    if (p->n_images == 0 || image_steps <= 0)
        return 0;
    char *arr[6] = {array_text(p->image_ids, NULL, p->n_images, 0), NULL, NULL, NULL, NULL,
                    array_text(p->image_truths, NULL, p->n_images, 0)};
    for (int t = 0; t < 4; t++)
        arr[1 + t] = array_text(NULL, p->image_terms + t, p->n_images, 4);
    int rc = -1;
    if (arr[0] && arr[1] && arr[2] && arr[3] && arr[4] && arr[5]) {
        const char *params[8] = {p->run, st, arr[0], arr[1], arr[2], arr[3], arr[4], arr[5]};
        rc = exec_params(db,
                         "INSERT INTO images (run, step, image, xy, wh, confidence, class,"
                         " truths) SELECT $1, $2::bigint, * FROM unnest($3::bigint[],"
                         " $4::float8[], $5::float8[], $6::float8[], $7::float8[],"
                         " $8::bigint[])"
                         " ON CONFLICT (run, step, image) DO UPDATE SET xy = EXCLUDED.xy,"
                         " wh = EXCLUDED.wh, confidence = EXCLUDED.confidence,"
                         " class = EXCLUDED.class, truths = EXCLUDED.truths",
                         8, params, err, "images");
    } else {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
    }
    for (int k = 0; k < 6; k++)
        free(arr[k]);
    const char *ret[2] = {p->run, keep};
    if (rc == 0)
        rc = exec_params(db,
                         "DELETE FROM images WHERE run = $1 AND step <= (SELECT max(step)"
                         " FROM images WHERE run = $1) - $2::bigint",
                         2, ret, err, "images");
    return rc;
}

/* Tell the other replicas (history_pg_listen.c): a NOTIFY is delivered at COMMIT, so they
 * hear of committed points only. The payload, "<origin> <point JSON>", stays under
 * PostgreSQL's 8000 bytes: a point of YL_MAX_LAYERS layers is about 1.5 kB. */
#define PG_NOTIFY_MAX 7999

static int notify_point(pgdb *db, const yls_point *p, int64_t step, char *err)
{
    yls_point q = *p;
    q.step = step;
    json_t *o = yls_point_json(&q);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!json) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    const char *origin = yls_pg_origin();
    size_t olen = strlen(origin), jlen = strlen(json), len = olen + 1 + jlen;
    char *payload = len <= PG_NOTIFY_MAX ? malloc(len + 1) : NULL;
    int rc = 0;
    if (payload) {
        memcpy(payload, origin, olen);
        payload[olen] = ' ';
        memcpy(payload + olen + 1, json, jlen + 1);
        const char *params[1] = {payload};
        PGresult *res = PQexecParams(db->conn, "SELECT pg_notify('" YLS_PG_CHANNEL "', $1)", 1,
                                     NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = fail_msg(err, "notify", PQresultErrorMessage(res));
        PQclear(res);
    } else if (len <= PG_NOTIFY_MAX) {
        rc = -1;
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
    }
    free(payload);
    free(json);
    return rc;
}

/* The point's evaluation records (the blob as a binary parameter): each image's replaces
 * that image's at the step. */
static int record_evals(pgdb *db, const yls_point *p, int64_t step, char *err)
{
    char st[24], nc[16], id[24];
    snprintf(st, sizeof st, "%lld", (long long)step);
    snprintf(nc, sizeof nc, "%d", p->num_classes);
    for (int64_t i = 0; p->eval_blob && i < p->n_images; i++) {
        snprintf(id, sizeof id, "%lld", (long long)p->image_ids[i]);
        const char *params[5] = {p->run, st, id, nc, p->eval_blob[i]};
        int lens[5] = {0, 0, 0, 0, (int)p->eval_len[i]}, fmts[5] = {0, 0, 0, 0, 1};
        PGresult *res = PQexecParams(db->conn,
                                     "INSERT INTO evals VALUES ($1, $2::bigint, $3::bigint,"
                                     " $4::integer, $5) ON CONFLICT (run, step, image) DO UPDATE"
                                     " SET classes = EXCLUDED.classes, records = EXCLUDED.records",
                                     5, NULL, params, lens, fmts, 0);
        int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0
                                                          : fail_msg(err, "evals",
                                                                     PQresultErrorMessage(res));
        PQclear(res);
        if (rc)
            return -1;
    }
    return 0;
}

static int pg_record(void *handle, yls_point *pts, size_t n, int64_t image_steps, char *err)
{
    pgdb *db = handle;
    int rc = -1;
    bool in_tx = false;
    int64_t *steps = malloc((n ? n : 1) * sizeof *steps);
    if (!steps) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    if (begin(db, err))
        goto cleanup;
    in_tx = true;
    if (lock_runs(db, pts, n, err))
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        const yls_point *p = &pts[i];
        char step[24], wall[32], batch[24], total[32], terms[4][32], nl[16], latency[32];
        snprintf(step, sizeof step, "%lld", (long long)p->step);
        fmt_double(wall, sizeof wall, p->wall);
        snprintf(batch, sizeof batch, "%lld", (long long)p->batch);
        fmt_double(total, sizeof total, p->total);
        for (int t = 0; t < 4; t++)
            fmt_double(terms[t], sizeof terms[t], p->terms[t]);
        snprintf(nl, sizeof nl, "%d", p->num_layers);
        fmt_double(latency, sizeof latency, p->latency);
        char *lt = yls_matrix_json(&p->layer_terms[0][0], p->num_layers, 4);
        char *stt = yls_matrix_json(&p->stats[0][0], p->num_layers, YL_NUM_STATS);
        const char *params[13] = {p->run, step, wall, batch, total, terms[0], terms[1],
                                  terms[2], terms[3], nl, lt ? lt : "[]", stt ? stt : "[]",
                                  latency};
        PGresult *res = PQexecParams(
            db->conn,
            "INSERT INTO points AS p VALUES ($1,"
            " CASE WHEN $2::bigint < 0 THEN (SELECT coalesce(max(step) + 1, 0) FROM points"
            "  WHERE run = $1) ELSE $2::bigint END,"
            " $3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
            " ON CONFLICT (run, step) DO UPDATE SET wall = EXCLUDED.wall,"
            " batch = EXCLUDED.batch, total = EXCLUDED.total, xy = EXCLUDED.xy,"
            " wh = EXCLUDED.wh, confidence = EXCLUDED.confidence, class = EXCLUDED.class,"
            " num_layers = EXCLUDED.num_layers, layer_terms = EXCLUDED.layer_terms,"
            " stats = EXCLUDED.stats, latency = EXCLUDED.latency RETURNING step",
            13, NULL, params, NULL, NULL, 0);
        free(lt);
        free(stt);
        bool ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        if (ok)
            steps[i] = get_int(res, 0, 0);
        else
            fail_msg(err, "insert", PQresultErrorMessage(res));
        PQclear(res);
        if (!ok || record_images(db, p, steps[i], p->step >= 0, image_steps, err) ||
            record_evals(db, p, steps[i], err) ||
            notify_point(db, p, steps[i], err))
            goto cleanup;
    }
    in_tx = false; /* COMMIT ends it, successful or not */
    if (exec_ok(db, "COMMIT", err, "commit"))
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        pts[i].step = steps[i];
    rc = 0;
cleanup:
    if (in_tx && !broken(db))
        exec_ok(db, "ROLLBACK", (char[YLS_HISTORY_ERR_MAX]){0}, "rollback");
    free(steps);
    return rc;
}

/* A read-only query, retried once on a new connection when the old one was broken. */
static PGresult *query(pgdb *db, const char *sql, int nparams, const char *const *params,
                       char *err, const char *what)
{
    for (int attempt = 0;; attempt++) {
        if (ensure(db, err))
            return NULL;
        PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
            return res;
        fail_msg(err, what, PQresultErrorMessage(res));
        PQclear(res);
        if (attempt > 0 || !broken(db))
            return NULL;
    }
}

/* Fills one element from row i of res; -1 with err when it cannot. */
typedef int (*row_fn)(const PGresult *res, int i, void *elem, const void *arg, char *err);

/* query() and one zeroed element of elem bytes per row it returned, filled by row(): 0 with
 * the array in *out and its length in *n, or -1 with err, all freed (release(), when given,
 * frees what row() allocated in an element). */
static int read_rows(pgdb *db, const char *sql, int nparams, const char *const *params,
                     size_t elem, row_fn row, const void *arg, void (*release)(void *elem),
                     void **out, size_t *n, char *err, const char *what)
{
    *out = NULL;
    *n = 0;
    PGresult *res = query(db, sql, nparams, params, err, what);
    if (!res)
        return -1;
    int rows = PQntuples(res);
    char *v = calloc(rows ? (size_t)rows : 1, elem);
    if (!v) {
        PQclear(res);
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    for (int i = 0; i < rows; i++)
        if (row(res, i, v + (size_t)i * elem, arg, err)) {
            for (int k = 0; release && k < i; k++)
                release(v + (size_t)k * elem);
            free(v);
            PQclear(res);
            return -1;
        }
    PQclear(res);
    *out = v;
    *n = (size_t)rows;
    return 0;
}

static int run_row(const PGresult *res, int i, void *elem, const void *arg, char *err)
{
    yls_run_info *r = elem;
    (void)arg;
    snprintf(r->run, sizeof r->run, "%s", PQgetvalue(res, i, 0));
    r->first_step = get_int(res, i, 1);
    r->last_step = get_int(res, i, 2);
    r->points = get_int(res, i, 3);
    r->updated = get_double(res, i, 4);
    r->last_loss = get_double(res, i, 5);
    if (!PQgetisnull(res, i, 6) && !(r->config = strdup(PQgetvalue(res, i, 6)))) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    return 0;
}

static void run_release(void *elem) { free(((yls_run_info *)elem)->config); }

static int pg_runs(void *handle, yls_run_info **out, size_t *n, char *err)
{
    return read_rows(handle,
                     "SELECT run, min(step), max(step), count(*), max(wall),"
                     " (SELECT total FROM points q WHERE q.run = p.run"
                     "  ORDER BY step DESC LIMIT 1),"
                     " (SELECT config FROM configs c WHERE c.run = p.run)"
                     " FROM points p GROUP BY run ORDER BY max(wall) DESC,"
                     " run COLLATE \"C\"",
                     0, NULL, sizeof **out, run_row, NULL, run_release, (void **)out, n, err,
                     "runs");
}

static int step_row(const PGresult *res, int i, void *elem, const void *run, char *err)
{
    yls_point *p = elem;
    (void)err;
    snprintf(p->run, sizeof p->run, "%s", (const char *)run);
    p->step = get_int(res, i, 0);
    p->wall = get_double(res, i, 1);
    p->batch = get_int(res, i, 2);
    p->total = get_double(res, i, 3);
    for (int t = 0; t < 4; t++)
        p->terms[t] = get_double(res, i, 4 + t);
    int64_t L = get_int(res, i, 8);
    p->num_layers = L < 0 ? 0 : L > YL_MAX_LAYERS ? YL_MAX_LAYERS : (int)L;
    yls_matrix_parse(PQgetvalue(res, i, 9), &p->layer_terms[0][0], p->num_layers, 4);
    yls_matrix_parse(PQgetvalue(res, i, 10), &p->stats[0][0], p->num_layers, YL_NUM_STATS);
    p->latency = get_double(res, i, 11);
    return 0;
}

static int pg_steps(void *handle, const char *run, int64_t after, int64_t limit,
                    yls_point **out, size_t *n, char *err)
{
    char a[24], l[24];
    snprintf(a, sizeof a, "%lld", (long long)after);
    snprintf(l, sizeof l, "%lld", (long long)limit);
    const char *params[3] = {run, a, limit < 0 ? NULL : l}; /* LIMIT NULL: all */
    return read_rows(handle,
                     "SELECT step, wall, batch, total, xy, wh, confidence, class,"
                     " num_layers, layer_terms, stats, latency FROM points"
                     " WHERE run = $1 AND step > $2::bigint ORDER BY step"
                     " LIMIT $3::bigint",
                     3, params, sizeof **out, step_row, run, NULL, (void **)out, n, err,
                     "steps");
}

static int pg_remove(void *handle, const char *run, int64_t *deleted, char *err)
{
    pgdb *db = handle;
    const char *params[1] = {run};
    *deleted = 0;
    if (begin(db, err))
        return -1;
    PGresult *res = PQexecParams(db->conn, "DELETE FROM points WHERE run = $1", 1, NULL, params,
                                 NULL, NULL, 0);
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0
                                                      : fail_msg(err, "delete",
                                                                 PQresultErrorMessage(res));
    int64_t n = rc ? 0 : strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    if (rc == 0)
        rc = exec_params(db, "DELETE FROM images WHERE run = $1", 1, params, err, "delete");
    if (rc == 0)
        rc = exec_params(db, "DELETE FROM evals WHERE run = $1", 1, params, err, "delete");
    if (rc == 0)
        rc = exec_params(db, "DELETE FROM configs WHERE run = $1", 1, params, err, "delete");
    if (rc == 0)
        rc = exec_params(db, "DELETE FROM scalars WHERE run = $1", 1, params, err, "delete");
    if (rc == 0)
        rc = exec_ok(db, "COMMIT", err, "commit");
    else if (!broken(db))
        exec_ok(db, "ROLLBACK", (char[YLS_HISTORY_ERR_MAX]){0}, "rollback");
    if (rc == 0)
        *deleted = n;
    return rc;
}

static int image_row(const PGresult *res, int i, void *elem, const void *arg, char *err)
{
    yls_image_row *r = elem;
    (void)arg, (void)err;
    r->image = get_int(res, i, 0);
    r->step = get_int(res, i, 1);
    for (int t = 0; t < 4; t++)
        r->terms[t] = get_double(res, i, 2 + t);
    r->truths = get_int(res, i, 6);
    return 0;
}

static int pg_images(void *handle, const char *run, int64_t image, yls_image_row **out,
                     size_t *n, char *err)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)image);
    const char *params[2] = {run, id};
    return read_rows(handle,
                     "SELECT image, step, xy, wh, confidence, class, truths FROM images"
                     " WHERE run = $1 AND ($2::bigint < 0 OR step IN (SELECT step FROM"
                     "  images WHERE run = $1 AND image = $2::bigint))"
                     " ORDER BY step, image",
                     2, params, sizeof **out, image_row, NULL, NULL, (void **)out, n, err,
                     "images");
}

static int eval_row(const PGresult *res, int i, void *elem, const void *arg, char *err)
{
    yls_eval_row *r = elem;
    (void)arg;
    r->image = get_int(res, i, 0);
    r->num_classes = (int)get_int(res, i, 1);
    size_t len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 2), &len);
    r->blob = raw ? malloc(len ? len : 1) : NULL;
    if (!r->blob) {
        PQfreemem(raw);
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        return -1;
    }
    memcpy(r->blob, raw, len);
    r->len = len;
    PQfreemem(raw);
    return 0;
}

static void eval_release(void *elem) { free(((yls_eval_row *)elem)->blob); }

static int pg_evals(void *handle, const char *run, int64_t step, yls_eval_row **out, size_t *n,
                    char *err)
{
    char st[24];
    snprintf(st, sizeof st, "%lld", (long long)step);
    const char *params[2] = {run, st};
    return read_rows(handle,
                     "SELECT image, classes, records FROM evals WHERE run = $1"
                     " AND step = $2::bigint ORDER BY image",
                     2, params, sizeof **out, eval_row, NULL, eval_release, (void **)out, n, err,
                     "evals");
}

static int eval_step_row(const PGresult *res, int i, void *elem, const void *arg, char *err)
{
    yls_eval_step *e = elem;
    (void)arg, (void)err;
    e->step = get_int(res, i, 0);
    e->images = get_int(res, i, 1);
    e->num_classes = (int)get_int(res, i, 2);
    return 0;
}

static int pg_eval_steps(void *handle, const char *run, int64_t after, int64_t limit,
                         yls_eval_step **out, size_t *n, char *err)
{
    char a[24], l[24];
    snprintf(a, sizeof a, "%lld", (long long)after);
    snprintf(l, sizeof l, "%lld", (long long)limit);
    const char *params[3] = {run, a, limit < 0 ? NULL : l}; /* LIMIT NULL: all */
    return read_rows(handle,
                     "SELECT step, COUNT(*), MAX(classes) FROM evals WHERE run = $1"
                     " AND step > $2::bigint GROUP BY step ORDER BY step LIMIT $3::bigint",
                     3, params, sizeof **out, eval_step_row, NULL, NULL, (void **)out, n, err,
                     "eval steps");
}

static double now_wall(void)
{
    uv_timeval64_t tv;
    return uv_gettimeofday(&tv) == 0 ? (double)tv.tv_sec + (double)tv.tv_usec / 1e6 : 0.0;
}

static int pg_put_config(void *handle, const char *run, const char *json, char *err)
{
    pgdb *db = handle;
    char wall[32];
    fmt_double(wall, sizeof wall, now_wall());
    const char *params[3] = {run, json, wall};
    PGresult *res = query(db,
                          "INSERT INTO configs VALUES ($1, $2, $3) ON CONFLICT (run) DO UPDATE"
                          " SET config = EXCLUDED.config, updated = EXCLUDED.updated",
                          3, params, err, "config");
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

static int pg_config(void *handle, const char *run, char **json, char *err)
{
    pgdb *db = handle;
    *json = NULL;
    const char *params[1] = {run};
    PGresult *res = query(db, "SELECT config FROM configs WHERE run = $1", 1, params, err,
                          "config");
    if (!res)
        return -1;
    int rc = 0;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
        !(*json = strdup(PQgetvalue(res, 0, 0)))) {
        snprintf(err, YLS_HISTORY_ERR_MAX, "out of memory");
        rc = -1;
    }
    PQclear(res);
    return rc;
}

static int pg_put_scalars(void *handle, const char *run, const yls_scalar *v, size_t n,
                          char *err)
{
    pgdb *db = handle;
    if (begin(db, err))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char step[24], wall[32], value[32];
        snprintf(step, sizeof step, "%lld", (long long)v[i].step);
        fmt_double(wall, sizeof wall, v[i].wall);
        fmt_double(value, sizeof value, v[i].value);
        const char *params[5] = {run, v[i].name, step, wall, value};
        rc = exec_params(db,
                         "INSERT INTO scalars VALUES ($1, $2, $3, $4, $5)"
                         " ON CONFLICT (run, name, step) DO UPDATE SET wall = EXCLUDED.wall,"
                         " value = EXCLUDED.value",
                         5, params, err, "scalars");
    }
    if (rc == 0)
        return exec_ok(db, "COMMIT", err, "commit");
    if (!broken(db))
        exec_ok(db, "ROLLBACK", (char[YLS_HISTORY_ERR_MAX]){0}, "rollback");
    return -1;
}

static int scalar_row(const PGresult *res, int i, void *elem, const void *arg, char *err)
{
    yls_scalar *r = elem;
    (void)arg, (void)err;
    snprintf(r->name, sizeof r->name, "%s", PQgetvalue(res, i, 0));
    r->step = get_int(res, i, 1);
    r->wall = get_double(res, i, 2);
    r->value = get_double(res, i, 3);
    return 0;
}

static int pg_scalars(void *handle, const char *run, yls_scalar **out, size_t *n, char *err)
{
    const char *params[1] = {run};
    return read_rows(handle,
                     "SELECT name, step, wall, value FROM scalars WHERE run = $1"
                     " ORDER BY name COLLATE \"C\", step",
                     1, params, sizeof **out, scalar_row, NULL, NULL, (void **)out, n, err,
                     "scalars");
}

static int pg_layers(void *handle, const char *run, int *layers, char *err)
{
    pgdb *db = handle;
    const char *params[1] = {run};
    *layers = 0;
    PGresult *res = query(db, "SELECT coalesce(max(num_layers), 0) FROM points WHERE run = $1",
                          1, params, err, "layers");
    if (!res)
        return -1;
    int64_t L = PQntuples(res) == 1 ? get_int(res, 0, 0) : 0;
    *layers = L < 0 ? 0 : L > YL_MAX_LAYERS ? YL_MAX_LAYERS : (int)L;
    PQclear(res);
    return 0;
}

const yls_history_backend yls_history_pg = {
    .name = "postgresql",
    .open = pg_open,
    .record = pg_record,
    .runs = pg_runs,
    .steps = pg_steps,
    .remove = pg_remove,
    .images = pg_images,
    .put_config = pg_put_config,
    .config = pg_config,
    .put_scalars = pg_put_scalars,
    .scalars = pg_scalars,
    .layers = pg_layers,
    .evals = pg_evals,
    .eval_steps = pg_eval_steps,
    .close = pg_close,
};
