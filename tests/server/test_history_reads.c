/*
 * test_history_reads.c: the history's reads run beside its writes. A history of many
 * points is written straight into the SQLite file (SQL, no daemon in between), then:
 *   - a queue of slow reads (GET /v1/runs over the whole table) does not hold up an infer
 *     request with `run`: its point is committed and answered before the reads are done
 *     (an order of completions, no durations);
 *   - steps.csv of every point is streamed: every row arrives, and the daemon's peak
 *     resident memory (VmHWM) grows by far less than the CSV (or the points) would take
 *     in memory at once;
 *   - an event stream resumed far behind replays in pieces of 1000 points.
 */
#include "harness.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A history file with n points: run `big` steps 0..big-1, the rest spread over `runs`
 * other runs. The daemon creates the schema (started and stopped once), SQL fills it. */
static void make_history(const char *path, int big, int rest, int runs)
{
    const char *args[] = {"--threads", "1", "--history", path, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char sql[2048];
    const char *row =
        " wall, batch, total, xy, wh, confidence, class, num_layers, layer_terms, stats,"
        " latency) SELECT %s, 1700000000.0 + i, 8, 4.0 + i * 1e-6, 1.0, 1.0, 1.5, 0.5, 3,"
        " '[[0.1,0.2,0.3,0.7],[0.1,0.2,0.3,0.7],[0.1,0.2,0.3,0.7]]',"
        " '[[3,0.1,0.7,0.3,0.01,0.1,0.2,7],[3,0.1,0.7,0.3,0.01,0.1,0.2,7],"
        "[3,0.1,0.7,0.3,0.01,0.1,0.2,7]]', 0.001 FROM s";
    char fmt[1024];
    snprintf(fmt, sizeof fmt,
             "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < %%d)"
             " INSERT INTO points (run, step,%s;",
             row);
    char one[1024];
    snprintf(one, sizeof one, fmt, big, "'big', i");
    ck_assert_msg(sqlite3_exec(db, one, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
    snprintf(sql, sizeof sql, "'r' || (i %% %d), i / %d", runs, runs);
    snprintf(one, sizeof one, fmt, rest, sql);
    ck_assert_msg(sqlite3_exec(db, one, NULL, NULL, NULL) == SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

typedef struct {
    const yt_daemon *d;
    atomic_int *seq;
    int done_at; /* its place in the order of completions */
    long status;
} reader;

static void *read_runs(void *arg)
{
    reader *r = arg;
    yt_resp resp;
    r->status = yt_get(r->d, "/v1/runs", &resp);
    r->done_at = atomic_fetch_add(r->seq, 1);
    yt_resp_free(&resp);
    return NULL;
}

START_TEST(slow_reads_do_not_hold_up_recording)
{
    enum { READERS = 24 };
    char hist[256];
    yt_temp_history(hist, sizeof hist, "reads");
    make_history(hist, 1000, 200000, 1000);
    const char *args[] = {"--threads", "2", "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    atomic_int seq = 0;
    static reader rd[READERS];
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++) {
        rd[i] = (reader){.d = &d, .seq = &seq};
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_runs, &rd[i]), 0);
    }
    yt_nap_ms(200); /* a head start, so that the reads are queued first */
    ck_assert_int_eq(yt_record_point(&d, "live", -1, 4242), 200);
    int recorded_at = atomic_fetch_add(&seq, 1);
    int reads_after = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(rd[i].status == 200 || rd[i].status == 503, "read %d: %ld", i,
                      rd[i].status);
        reads_after += rd[i].done_at > recorded_at;
    }
    printf("history-reads: the point was answered %d-th, before %d of %d reads of 201000 "
           "points\n", recorded_at + 1, reads_after, READERS);
    /* behind a shared queue it would come after every read */
    ck_assert_msg(reads_after > 0, "the point was answered after all %d reads", READERS);
    json_t *pts = yt_run_points(&d, "live");
    ck_assert_int_eq(json_array_size(pts), 1);
    json_decref(pts);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

typedef struct {
    const yt_daemon *d;
    long status;
    bool busy; /* a 503 saying the history is busy */
} image_reader;

static void *read_image(void *arg)
{
    image_reader *r = arg;
    yt_resp resp;
    r->status = yt_get(r->d, "/v1/runs/big/images/0", &resp);
    r->busy = r->status == 503 && resp.body && strstr(resp.body, "busy");
    yt_resp_free(&resp);
    return NULL;
}

/* Slow reads (every run's summary over 201000 points) keep the reader busy and fill its
 * queue; image reads sent meanwhile are refused with 503 "busy". Each refusal frees its
 * query: the daemon exits 0 (under ASan: no leak reported). */
START_TEST(busy_image_reads_free_their_query)
{
    enum { SLOW = 40, IMAGES = 100 };
    char hist[256];
    yt_temp_history(hist, sizeof hist, "busy");
    make_history(hist, 1000, 200000, 1000);
    const char *args[] = {"--threads", "1", "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    atomic_int seq = 0;
    static reader slow[SLOW];
    static image_reader rd[IMAGES];
    pthread_t th[SLOW + IMAGES];
    for (int i = 0; i < SLOW; i++) {
        slow[i] = (reader){.d = &d, .seq = &seq};
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_runs, &slow[i]), 0);
    }
    yt_nap_ms(200); /* a head start: the slow reads are queued first */
    for (int i = 0; i < IMAGES; i++) {
        rd[i] = (image_reader){.d = &d};
        ck_assert_int_eq(pthread_create(&th[SLOW + i], NULL, read_image, &rd[i]), 0);
    }
    int busy = 0;
    for (int i = 0; i < SLOW + IMAGES; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < IMAGES; i++)
        busy += rd[i].busy;
    printf("history-reads: %d of %d image reads refused as busy\n", busy, IMAGES);
    ck_assert_msg(busy > 0, "no image read was refused: the queue never filled");
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

START_TEST(csv_of_many_points_is_streamed)
{
    enum { N = 80000 };
    char hist[256];
    yt_temp_history(hist, sizeof hist, "reads");
    make_history(hist, N, 0, 1);
    /* Under AddressSanitizer freed memory waits in a quarantine (256 MB) before reuse,
     * which would count as growth here: this daemon gets none (harmless without ASan). */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    const char *args[] = {"--threads", "1", "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/v1/runs/big/steps?limit=10", &r), 200); /* warm up */
    yt_resp_free(&r);
    long hwm0 = yt_hwm_kb(d.pid);
    ck_assert_int_gt(hwm0, 0);
    ck_assert_int_eq(yt_get(&d, "/v1/runs/big/steps.csv", &r), 200);
    long hwm1 = yt_hwm_kb(d.pid);
    int rows = 0; /* (not strstr in a loop: ASan's strstr measures the haystack each call) */
    for (size_t i = 0; i + 1 < r.len; i++)
        rows += r.body[i] == '\r' && r.body[i + 1] == '\n';
    ck_assert_int_eq(rows, N + 1);
    ck_assert(strstr(r.body, "\r\n\"big\",0,1700000000,8,4,") != NULL);
    char last[64];
    snprintf(last, sizeof last, "\r\n\"big\",%d,", N - 1);
    ck_assert(strstr(r.body, last) != NULL);
    ck_assert(strstr(r.body, ",layer2_recall75,layer2_ignored\r\n") != NULL);
    long csv_kb = (long)(r.len / 1024);
    printf("history-reads: steps.csv of %d points, %ld kB, the daemon's peak RSS %ld -> %ld "
           "kB\n", N, csv_kb, hwm0, hwm1);
    /* at once, the CSV text alone would take csv_kb (and the points 2/3 as much again) */
    ck_assert_msg(hwm1 - hwm0 < csv_kb / 3, "peak RSS grew by %ld kB for a %ld kB CSV",
                  hwm1 - hwm0, csv_kb);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

/* A resumed stream replays at most 1000 points of a run, then ends (its last id says where
 * it stopped), and the next resume goes on from there: a client far behind catches up in
 * bounded pieces, nothing lost, nothing twice. */
START_TEST(resume_replays_in_pieces)
{
    enum { N = 2500 };
    char hist[256];
    yt_temp_history(hist, sizeof hist, "reads");
    make_history(hist, N, 0, 1);
    const char *args[] = {"--threads", "1", "--history", hist, "--heartbeat", "0", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    static char buf[4 << 20];
    int64_t last = -1;
    int pieces = 0, events = 0;
    while (last < N - 1 && pieces < 10) {
        char hdr[64], path[] = "/v1/events?run=big";
        snprintf(hdr, sizeof hdr, "Last-Event-ID: big:%lld", (long long)last);
        size_t have;
        int st;
        int fd = yt_stream_open(&d, path, hdr, buf, sizeof buf, &have, &st);
        ck_assert_int_eq(st, 200);
        bool more = last + 1000 < N - 1;
        /* a piece ends with the last chunk; the last piece stays open (live) */
        char want[64];
        snprintf(want, sizeof want, "id: big:%lld\n", (long long)(more ? last + 1000 : N - 1));
        ck_assert_msg(yt_read_until(fd, buf, sizeof buf, &have, want), "piece %d: %.300s",
                      pieces, buf + (have > 300 ? have - 300 : 0));
        if (more)
            ck_assert(yt_read_until(fd, buf, sizeof buf, &have, "\r\n0\r\n\r\n"));
        int n = 0; /* (a byte loop: ASan's strstr measures the haystack each call) */
        static const char ev[] = "event: point\n";
        for (size_t i = 0; i + sizeof ev - 1 <= have; i++)
            n += !memcmp(buf + i, ev, sizeof ev - 1);
        ck_assert_int_eq(n, more ? 1000 : (int)(N - 1 - last));
        char first[64];
        snprintf(first, sizeof first, "id: big:%lld\nevent: point\n", (long long)last + 1);
        ck_assert(strstr(buf, first) != NULL);
        events += n;
        last = more ? last + 1000 : N - 1;
        pieces++;
        close(fd);
    }
    ck_assert_int_eq(events, N);
    ck_assert_int_eq(pieces, 3);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

Suite *yt_suite_history_reads(void)
{
    Suite *s = suite_create("history-reads");
    TCase *tc = tcase_create("history-reads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, slow_reads_do_not_hold_up_recording);
    tcase_add_test(tc, csv_of_many_points_is_streamed);
    tcase_add_test(tc, resume_replays_in_pieces);
    tcase_add_test(tc, busy_image_reads_free_their_query);
    suite_add_tcase(s, tc);
    return s;
}
