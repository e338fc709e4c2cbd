/*
 * test_history_pg.c: the PostgreSQL history backend against a real PostgreSQL server that
 * the suite starts itself (initdb + pg_ctl of Debian's postgresql package into a temporary
 * directory, listening on a unix socket there only; as the `postgres` user, or `nobody`,
 * when the tests run as root, since postgres refuses root). Skipped, with a message, only
 * when the server's binaries are missing (YT_PG_BINDIR names them, default the newest
 * /usr/lib/postgresql/N/bin).
 *
 * Covered: points recorded and read back through /v1 (steps given and not, runs, delete);
 * two daemons on one database writing one run at once (steps unique and contiguous, both
 * see every point); event streams on either daemon carrying the points of both (NOTIFY /
 * LISTEN) and resuming from the history; persistence across a restart of the daemon; an outage of the database
 * (503 for a recording request, the daemon lives on) and the recovery after it.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char pg_bindir[256];
static char pg_dir[64];     /* the temporary directory: data/, the socket, logs */
static char pg_url[256];
static bool pg_up;
static char pg_skip[256];   /* why the suite is skipped ("" when it is not) */
static uid_t pg_uid;
static gid_t pg_gid;

/* Run bindir/prog args... as the server's user, output appended to pg_dir/log. Exit status. */
static int pg_run(const char *prog, const char *const *args)
{
    char path[512], log[128];
    snprintf(path, sizeof path, "%s/%s", pg_bindir, prog);
    snprintf(log, sizeof log, "%s/pg.log", pg_dir);
    const char *argv[16] = {path};
    int argc = 1;
    for (int i = 0; args[i] && argc < 15; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int in = open("/dev/null", O_RDONLY);
        if (fd < 0 || in < 0)
            _exit(126);
        dup2(in, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (geteuid() == 0 &&
            (setgroups(0, NULL) || setgid(pg_gid) || setuid(pg_uid)))
            _exit(126);
        if (chdir(pg_dir))
            _exit(126);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void pg_log_dump(void)
{
    char log[128];
    snprintf(log, sizeof log, "%s/pg.log", pg_dir);
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
}

static int pg_start(void)
{
    char data[128], opts[160];
    snprintf(data, sizeof data, "%s/data", pg_dir);
    snprintf(opts, sizeof opts, "-k %s -c listen_addresses= -F", pg_dir);
    const char *args[] = {"-D", data, "-o", opts, "-w", "-t", "20", "start", NULL};
    return pg_run("pg_ctl", args);
}

static int pg_stop(void)
{
    char data[128];
    snprintf(data, sizeof data, "%s/data", pg_dir);
    const char *args[] = {"-D", data, "-m", "fast", "-w", "stop", NULL};
    return pg_run("pg_ctl", args);
}

static bool find_bindir(void)
{
    const char *env = getenv("YT_PG_BINDIR");
    if (env && *env) {
        snprintf(pg_bindir, sizeof pg_bindir, "%s", env);
    } else {
        glob_t g;
        if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) || g.gl_pathc == 0) {
            globfree(&g);
            return false;
        }
        /* the newest: the longest name, then the largest (15 > 9) */
        const char *best = g.gl_pathv[0];
        for (size_t i = 1; i < g.gl_pathc; i++) {
            size_t a = strlen(g.gl_pathv[i]), b = strlen(best);
            if (a > b || (a == b && strcmp(g.gl_pathv[i], best) > 0))
                best = g.gl_pathv[i];
        }
        snprintf(pg_bindir, sizeof pg_bindir, "%.*s", (int)(strlen(best) - strlen("/initdb")),
                 best);
        globfree(&g);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/initdb", pg_bindir);
    if (access(p, X_OK))
        return false;
    snprintf(p, sizeof p, "%s/pg_ctl", pg_bindir);
    return access(p, X_OK) == 0;
}

static void pg_setup(void)
{
    pg_skip[0] = '\0';
    pg_up = false;
    if (!find_bindir()) {
        snprintf(pg_skip, sizeof pg_skip,
                 "no PostgreSQL server binaries (initdb, pg_ctl: Debian's postgresql package, "
                 "or YT_PG_BINDIR)");
        fprintf(stderr, "history-pg: SKIPPED: %s\n", pg_skip);
        return;
    }
    snprintf(pg_dir, sizeof pg_dir, "/tmp/yololoss-pg-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pg_dir));
    pg_uid = geteuid();
    pg_gid = getegid();
    if (pg_uid == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw)
            pw = getpwnam("nobody");
        ck_assert_msg(pw != NULL, "running as root and no postgres or nobody user");
        pg_uid = pw->pw_uid;
        pg_gid = pw->pw_gid;
        ck_assert_int_eq(chown(pg_dir, pg_uid, pg_gid), 0);
    }
    char data[128];
    snprintf(data, sizeof data, "%s/data", pg_dir);
    const char *initdb[] = {"-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                            "--no-sync", "--no-locale", NULL};
    if (pg_run("initdb", initdb) || pg_start()) {
        pg_log_dump();
        ck_abort_msg("cannot start PostgreSQL from %s in %s", pg_bindir, pg_dir);
    }
    pg_up = true;
    snprintf(pg_url, sizeof pg_url, "postgresql:///postgres?host=%s&user=postgres", pg_dir);
}

static void pg_teardown(void)
{
    if (!pg_dir[0])
        return;
    if (pg_up)
        pg_stop();
    pg_up = false;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", pg_dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
    pg_dir[0] = '\0';
}

#define SKIP_IF_NO_PG()                                                                    \
    do {                                                                                   \
        if (pg_skip[0]) {                                                                  \
            fprintf(stderr, "history-pg: %s: SKIPPED: %s\n", __func__, pg_skip);            \
            return;                                                                        \
        }                                                                                  \
    } while (0)

static int64_t step_at(json_t *pts, size_t i)
{
    return json_integer_value(json_object_get(json_array_get(pts, i), "step"));
}

static void start_daemon(yt_daemon *d)
{
    const char *args[] = {"--threads", "2", "--history", pg_url, NULL};
    ck_assert_int_eq(yt_daemon_start(d, args, false), 0);
}

START_TEST(pg_record_read_delete)
{
    SKIP_IF_NO_PG();
    yt_daemon d;
    start_daemon(&d);
    double loss[4];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(yt_send_point(&d, "pg-basic", -1, 500 + (uint64_t)i, &loss[i], NULL), 200);
    ck_assert_int_eq(yt_send_point(&d, "pg-basic", 10, 503, &loss[3], NULL), 200);
    ck_assert_int_eq(yt_send_point(&d, "pg-basic", 10, 503, &loss[3], NULL), 200); /* replaces */
    json_t *pts = yt_run_points(&d, "pg-basic");
    ck_assert_int_eq(json_array_size(pts), 4);
    const int64_t want[4] = {0, 1, 2, 10};
    for (size_t i = 0; i < 4; i++) {
        json_t *p = json_array_get(pts, i);
        ck_assert_int_eq(step_at(pts, i), want[i]);
        ck_assert(fabs(json_real_value(json_object_get(p, "total")) - loss[i]) <=
                  1e-5 * fabs(loss[i]) + 1e-6);
        ck_assert_int_eq(json_integer_value(json_object_get(p, "batch")), 2);
        ck_assert_int_eq(json_array_size(json_object_get(p, "layers")), 2);
    }
    json_decref(pts);
    /* the next step follows the largest */
    ck_assert_int_eq(yt_record_point(&d, "pg-basic", -1, 504), 200);
    json_t *j = yt_get_json(&d, "/v1/runs/pg-basic/steps?after=2&limit=1");
    ck_assert_int_eq(json_array_size(json_object_get(j, "points")), 1);
    ck_assert_int_eq(step_at(json_object_get(j, "points"), 0), 10);
    json_decref(j);
    json_t *all = yt_get_json(&d, "/v1/runs");
    json_t *runs = json_object_get(all, "runs"), *ri = NULL;
    for (size_t i = 0; i < json_array_size(runs); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(runs, i), "run")),
                    "pg-basic"))
            ri = json_array_get(runs, i);
    ck_assert_ptr_nonnull(ri);
    ck_assert_int_eq(json_integer_value(json_object_get(ri, "first_step")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(ri, "last_step")), 11);
    ck_assert_int_eq(json_integer_value(json_object_get(ri, "points")), 5);
    json_decref(all);
    yt_req del = {.method = "DELETE", .path = "/v1/runs/pg-basic"};
    yt_resp r;
    ck_assert_int_eq(yt_http(&d, &del, &r), 200);
    ck_assert_msg(strstr(r.body, "\"deleted\":5") != NULL, "%s", r.body);
    yt_resp_free(&r);
    pts = yt_run_points(&d, "pg-basic");
    ck_assert_int_eq(json_array_size(pts), 0);
    json_decref(pts);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

typedef struct {
    const yt_daemon *d;
    int n;
    uint64_t seed;
    int failures;
} writer;

static void *write_points(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->n; i++)
        if (yt_record_point(w->d, "pg-shared", -1, w->seed + (uint64_t)i) != 200)
            w->failures++;
    return NULL;
}

START_TEST(pg_two_daemons_one_run)
{
    SKIP_IF_NO_PG();
    yt_daemon d[2];
    start_daemon(&d[0]);
    start_daemon(&d[1]);
    enum { WRITERS = 4, EACH = 10 };
    writer w[WRITERS];
    pthread_t t[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.d = &d[i % 2], .n = EACH, .seed = 1000 + 100 * (uint64_t)i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, write_points, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].failures, 0);
    }
    for (int k = 0; k < 2; k++) {
        json_t *pts = yt_run_points(&d[k], "pg-shared");
        ck_assert_int_eq(json_array_size(pts), WRITERS * EACH);
        for (size_t i = 0; i < WRITERS * EACH; i++)
            ck_assert_int_eq(step_at(pts, i), (int64_t)i); /* unique and contiguous */
        json_decref(pts);
    }
    ck_assert_int_eq(yt_daemon_stop(&d[0]), 0);
    ck_assert_int_eq(yt_daemon_stop(&d[1]), 0);
}
END_TEST

/* Replicas on one database: a stream on either shows the points recorded through both
 * (NOTIFY/LISTEN), each once, and a stream resumed with Last-Event-ID on one replica gets
 * what the other recorded meanwhile. */
/* Evaluation batches split between two replicas: each answers the one-shot result. */
START_TEST(pg_eval_stream_two_replicas)
{
    SKIP_IF_NO_PG();
    yt_daemon d[2];
    start_daemon(&d[0]);
    start_daemon(&d[1]);
    const yt_daemon *both[2] = {&d[0], &d[1]};
    yt_check_eval_stream(both, 2, "pg-eval");
    ck_assert_int_eq(yt_daemon_stop(&d[0]), 0);
    ck_assert_int_eq(yt_daemon_stop(&d[1]), 0);
}
END_TEST

START_TEST(pg_streams_see_every_replica)
{
    SKIP_IF_NO_PG();
    enum { N = 6 };
    yt_daemon d[2];
    start_daemon(&d[0]);
    start_daemon(&d[1]);
    static char buf[2][1 << 16];
    size_t have[2];
    int fd[2], st;
    for (int k = 0; k < 2; k++) {
        fd[k] = yt_stream_open(&d[k], "/v1/events?run=pg-live", NULL, buf[k], sizeof buf[k],
                               &have[k], &st);
        ck_assert_int_ge(fd[k], 0);
        ck_assert_int_eq(st, 200);
        ck_assert(yt_read_until(fd[k], buf[k], sizeof buf[k], &have[k], "retry: 2000\n\n"));
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(yt_record_point(&d[i % 2], "pg-live", i, 3000 + (uint64_t)i), 200);
    char want[96];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++) {
            snprintf(want, sizeof want, "event: point\ndata: {\"run\":\"pg-live\",\"step\":%d,", i);
            ck_assert_msg(yt_read_until(fd[k], buf[k], sizeof buf[k], &have[k], want),
                          "daemon %d: no step %d: %s", k, i, buf[k]);
        }
        int events = 0;
        for (const char *p = buf[k]; (p = strstr(p, "event: point")); p++)
            events++;
        ck_assert_int_eq(events, N); /* nothing twice (its own points come once) */
    }
    ck_assert(strstr(buf[0], "id: pg-live:5\n") != NULL);
    close(fd[0]);
    /* daemon 1 records while daemon 0's client is away; it comes back with its last id */
    ck_assert_int_eq(yt_record_point(&d[1], "pg-live", N, 3100), 200);
    ck_assert_int_eq(yt_record_point(&d[1], "pg-live", N + 1, 3101), 200);
    fd[0] = yt_stream_open(&d[0], "/v1/events?run=pg-live", "Last-Event-ID: pg-live:5", buf[0],
                           sizeof buf[0], &have[0], &st);
    ck_assert_int_eq(st, 200);
    ck_assert_msg(yt_read_until(fd[0], buf[0], sizeof buf[0], &have[0],
                                "id: pg-live:7\nevent: point\n"), "%s", buf[0]);
    ck_assert(strstr(buf[0], "id: pg-live:6\nevent: point\n") != NULL);
    close(fd[0]);
    close(fd[1]);
    ck_assert_int_eq(yt_daemon_stop(&d[0]), 0);
    ck_assert_int_eq(yt_daemon_stop(&d[1]), 0);
}
END_TEST

START_TEST(pg_survives_restart)
{
    SKIP_IF_NO_PG();
    yt_daemon d;
    start_daemon(&d);
    double loss[2];
    ck_assert_int_eq(yt_send_point(&d, "pg-restart", -1, 700, &loss[0], NULL), 200);
    ck_assert_int_eq(yt_send_point(&d, "pg-restart", -1, 701, &loss[1], NULL), 200);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    start_daemon(&d);
    json_t *pts = yt_run_points(&d, "pg-restart");
    ck_assert_int_eq(json_array_size(pts), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert(fabs(json_real_value(json_object_get(json_array_get(pts, i), "total")) -
                       loss[i]) <= 1e-5 * fabs(loss[i]) + 1e-6);
    json_decref(pts);
    ck_assert_int_eq(yt_record_point(&d, "pg-restart", -1, 702), 200);
    pts = yt_run_points(&d, "pg-restart");
    ck_assert_int_eq(json_array_size(pts), 3);
    ck_assert_int_eq(step_at(pts, 2), 2);
    json_decref(pts);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

START_TEST(pg_outage_503_then_recovery)
{
    SKIP_IF_NO_PG();
    yt_daemon d;
    start_daemon(&d);
    ck_assert_int_eq(yt_record_point(&d, "pg-outage", -1, 800), 200);
    /* a stream open across the outage is ended once the daemon listens again (points of
     * other replicas may have gone by unheard): its client resumes from the history */
    static char buf[1 << 16];
    size_t have;
    int sst;
    int fd = yt_stream_open(&d, "/v1/events?run=pg-outage", NULL, buf, sizeof buf, &have, &sst);
    ck_assert_int_eq(sst, 200);
    ck_assert_int_eq(pg_stop(), 0);
    pg_up = false;
    yt_resp r;
    ck_assert_int_eq(yt_record_point(&d, "pg-outage", -1, 801), 503);
    ck_assert_int_eq(yt_record_point(&d, "pg-outage", -1, 802), 503);
    long st = yt_get(&d, "/v1/runs/pg-outage/steps", &r);
    ck_assert_msg(st == 503, "GET during the outage: %ld (want 503)", st);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/v2/health/live", &r), 200); /* still alive */
    yt_resp_free(&r);
    ck_assert_int_eq(pg_start(), 0);
    pg_up = true;
    ck_assert_int_eq(yt_record_point(&d, "pg-outage", -1, 803), 200);
    /* ended: the last chunk of its response (the connection may stay for keep-alive) */
    ck_assert_msg(yt_read_until(fd, buf, sizeof buf, &have, "\r\n0\r\n\r\n"),
                  "the stream was not ended: %s", buf);
    close(fd);
    json_t *pts = yt_run_points(&d, "pg-outage");
    ck_assert_int_eq(json_array_size(pts), 2);
    ck_assert_int_eq(step_at(pts, 1), 1);
    json_decref(pts);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

/* The per-image table, the configuration and the scalars: test_images.c's checks. */
START_TEST(pg_images_config_scalars)
{
    SKIP_IF_NO_PG();
    yt_daemon d;
    start_daemon(&d);
    yt_check_images_roundtrip(&d, "pg-images");
    yt_check_config_and_scalars(&d, "pg-config", NULL);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    const char *args[] = {"--threads", "1", "--history", pg_url, "--image-history-steps", "2",
                          NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_check_images_retention(&d, "pg-keep2");
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

/* A database of an older daemon: table images without truths (the column dropped, one
 * row of the old form); a daemon starting adds the column back. */
START_TEST(pg_older_images_table_gets_truths)
{
    SKIP_IF_NO_PG();
    char host[96];
    snprintf(host, sizeof host, "%s", pg_dir);
    const char *psql[] = {"-h", host, "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                          "-c",
                          "CREATE TABLE IF NOT EXISTS images (run TEXT NOT NULL,"
                          " step BIGINT NOT NULL, image BIGINT NOT NULL,"
                          " xy DOUBLE PRECISION NOT NULL, wh DOUBLE PRECISION NOT NULL,"
                          " confidence DOUBLE PRECISION NOT NULL,"
                          " class DOUBLE PRECISION NOT NULL, PRIMARY KEY (run, step, image));"
                          "ALTER TABLE images DROP COLUMN IF EXISTS truths;"
                          "INSERT INTO images VALUES ('pg-old', 0, 10, 1, 2, 3, 4)",
                          NULL};
    if (pg_run("psql", psql)) {
        pg_log_dump();
        ck_abort_msg("psql failed");
    }
    yt_daemon d;
    start_daemon(&d);
    yt_check_images_older_row(&d, "pg-old");
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

Suite *yt_suite_history_pg(void)
{
    Suite *s = suite_create("history-pg");
    TCase *tc = tcase_create("postgresql");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, pg_setup, pg_teardown);
    tcase_add_test(tc, pg_record_read_delete);
    tcase_add_test(tc, pg_two_daemons_one_run);
    tcase_add_test(tc, pg_eval_stream_two_replicas);
    tcase_add_test(tc, pg_streams_see_every_replica);
    tcase_add_test(tc, pg_survives_restart);
    tcase_add_test(tc, pg_outage_503_then_recovery);
    tcase_add_test(tc, pg_images_config_scalars);
    tcase_add_test(tc, pg_older_images_table_gets_truths);
    suite_add_tcase(s, tc);
    return s;
}
