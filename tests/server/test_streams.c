/*
 * test_streams.c: event streams (/v1/events, /v1/runs/{run}/events). One stream carries the
 * runs it names (or every run); each event's id is the stream's cursor and a reconnect
 * with Last-Event-ID replays what was missed from the history; a heartbeat comment comes
 * every --heartbeat seconds; --max-streams caps them (503); abandoned streams give their
 * descriptors back without any heartbeat (the daemon polls the sockets of suspended
 * streams); the token rule is that of the other reads. Waits are bounded; nothing asserts
 * on durations.
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUF (1 << 16)

static void record(const yt_daemon *d, const char *run, int step)
{
    static uint64_t seed = 9000;
    long st = yt_record_point(d, run, step, seed++);
    ck_assert_msg(st == 200, "recording %s step %d: %ld", run, step, st);
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Open a stream that must answer 200 and say hello. */
static int stream(const yt_daemon *d, const char *path, const char *header, char *buf,
                  size_t *have)
{
    int st;
    int fd = yt_stream_open(d, path, header, buf, BUF, have, &st);
    if (fd < 0) {
        char why[256];
        ck_abort_msg("GET %s: no connection: %s; %s", path, strerror(errno),
                     yt_daemon_state(d, why, sizeof why));
    }
    ck_assert_msg(st == 200, "GET %s: %d %s", path, st, buf);
    ck_assert(yt_read_until(fd, buf, BUF, have, "retry: 2000\n\n"));
    ck_assert(strstr(buf, "text/event-stream") != NULL);
    return fd;
}

START_TEST(one_stream_for_several_runs_resumes_with_last_event_id)
{
    char hist[256];
    yt_temp_history(hist, sizeof hist, "streams");
    const char *args[] = {"--threads", "2", "--history", hist, "--heartbeat", "0", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    static char buf[BUF];
    size_t have;
    int fd = stream(&d, "/v1/events?run=a&run=b%2Cc", NULL, buf, &have);
    record(&d, "a", 0);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: a:0\nevent: point\ndata: {\"run\":\"a\""),
                  "got: %s", buf);
    record(&d, "b,c", 5);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have,
                                "id: a:0,b%2Cc:5\nevent: point\ndata: {\"run\":\"b,c\",\"step\":5"),
                  "got: %s", buf);
    record(&d, "other", 0); /* not a run of this stream */
    record(&d, "a", 1);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: a:1,b%2Cc:5\n"), "got: %s", buf);
    ck_assert(strstr(buf, "\"run\":\"other\"") == NULL);
    close(fd);

    /* missed while away, then back with the last id seen */
    record(&d, "a", 2);
    record(&d, "a", 3);
    record(&d, "b,c", 6);
    fd = stream(&d, "/v1/events?run=a&run=b%2Cc", "Last-Event-ID: a:1,b%2Cc:5", buf, &have);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: a:3,b%2Cc:6\n"), "got: %s", buf);
    ck_assert(strstr(buf, "id: a:2,b%2Cc:5\nevent: point\ndata: {\"run\":\"a\",\"step\":2") != NULL);
    ck_assert(strstr(buf, "id: a:3,b%2Cc:5\n") != NULL);
    record(&d, "a", 4); /* then live */
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: a:4,b%2Cc:6\n"), "got: %s", buf);
    ck_assert_int_eq(count(buf, "event: point"), 4); /* nothing twice, nothing before a:1 */
    close(fd);

    /* the first API: one run, the id is the step */
    fd = stream(&d, "/v1/runs/a/events", "Last-Event-ID: 2", buf, &have);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: 4\nevent: point\n"), "got: %s", buf);
    ck_assert(strstr(buf, "id: 3\nevent: point\ndata: {\"run\":\"a\",\"step\":3") != NULL);
    ck_assert_int_eq(count(buf, "event: point"), 2);
    close(fd);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

START_TEST(a_stream_of_every_run)
{
    const char *args[] = {"--threads", "1", "--history", "none", "--heartbeat", "0", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    static char buf[BUF];
    size_t have;
    int fd = stream(&d, "/v1/events", NULL, buf, &have);
    record(&d, "x", 3);
    record(&d, "y/z", -1);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, "id: x:3,y%2Fz:0\nevent: point\n"),
                  "got: %s", buf);
    ck_assert(strstr(buf, "id: x:3\nevent: point\ndata: {\"run\":\"x\",\"step\":3") != NULL);
    close(fd);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

START_TEST(heartbeat_comments)
{
    const char *args[] = {"--threads", "1", "--heartbeat", "1", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    static char buf[BUF];
    size_t have;
    int fd = stream(&d, "/v1/events?run=quiet", NULL, buf, &have);
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, ": heartbeat\n\n"), "got: %s", buf);
    have = 0; /* and again */
    ck_assert_msg(yt_read_until(fd, buf, BUF, &have, ": heartbeat\n\n"), "got: %s", buf);
    close(fd);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

START_TEST(max_streams_is_a_503_with_a_message)
{
    const char *args[] = {"--threads", "1", "--max-streams", "2", "--heartbeat", "0", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    static char buf[BUF];
    size_t have;
    int a = stream(&d, "/v1/events?run=r", NULL, buf, &have);
    int b = stream(&d, "/v1/runs/r/events", NULL, buf, &have);
    int st;
    int c = yt_stream_open(&d, "/v1/events", NULL, buf, BUF, &have, &st);
    ck_assert_int_eq(st, 503);
    ck_assert_msg(yt_read_until(c, buf, BUF, &have, "too many event streams: 2 are open "
                                                    "(--max-streams 2)"),
                  "got: %s", buf);
    close(c);
    yt_resp r; /* everything else is still served */
    ck_assert_int_eq(yt_get(&d, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
    close(a); /* a stream closed makes room */
    for (int i = 0; i < 100 && st != 200; i++) {
        yt_nap_ms(50);
        c = yt_stream_open(&d, "/v1/events", NULL, buf, BUF, &have, &st);
        if (st != 200)
            close(c);
    }
    ck_assert_int_eq(st, 200);
    close(b);
    close(c);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

/* Hundreds of streams abandoned by their clients (a closed tab) come back, with no
 * heartbeat to find them: the daemon notices the sockets close while they are suspended. */
START_TEST(abandoned_streams_give_their_descriptors_back)
{
    enum { N = 300 };
    const char *args[] = {"--threads", "1", "--max-streams", "1000", "--heartbeat", "0", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    int fds0 = yt_open_fds(d.pid);
    ck_assert_int_gt(fds0, 0);
    static int socks[N];
    static char buf[BUF];
    size_t have;
    for (int i = 0; i < N; i++)
        socks[i] = stream(&d, i % 2 ? "/v1/events?run=made-up" : "/v1/runs/x/events", NULL,
                          buf, &have);
    int fds1 = yt_open_fds(d.pid);
    ck_assert_msg(fds1 >= fds0 + N, "%d descriptors with %d streams, %d before", fds1, N, fds0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/metrics", &r), 200);
    char want[64];
    snprintf(want, sizeof want, "yololoss_event_streams %d\n", N);
    ck_assert_msg(strstr(r.body, want) != NULL, "no '%s'", want);
    yt_resp_free(&r);
    for (int i = 0; i < N; i++)
        close(socks[i]);
    int fds = fds1;
    for (int i = 0; i < 200 && fds > fds0; i++) {
        yt_nap_ms(50);
        fds = yt_open_fds(d.pid);
    }
    ck_assert_msg(fds <= fds0, "%d descriptors after the clients left, %d before", fds, fds0);
    ck_assert_int_eq(yt_get(&d, "/metrics", &r), 200);
    ck_assert(strstr(r.body, "yololoss_event_streams 0\n") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

/* A stream answers without a token exactly when the other reads do. */
START_TEST(streams_follow_the_token_rule_of_reads)
{
    char tokpath[] = "/tmp/yololossd-token-XXXXXX";
    yt_token_file(tokpath, "tok\n");
    char hist[256];
    yt_temp_history(hist, sizeof hist, "streams");
    const char *args[] = {"--threads", "1", "--token-file", tokpath, "--heartbeat", "0",
                          "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    const char *auth[] = {NULL, "Authorization: Bearer wrong", "Authorization: Bearer tok"};
    static char buf[BUF];
    for (int i = 0; i < 3; i++) {
        yt_req q = {.path = "/v1/runs", .headers = {auth[i]}};
        yt_resp r;
        long read_status = yt_http(&d, &q, &r);
        yt_resp_free(&r);
        const char *paths[] = {"/v1/events?run=a", "/v1/events", "/v1/runs/a/events"};
        for (int k = 0; k < 3; k++) {
            size_t have;
            int st;
            int fd = yt_stream_open(&d, paths[k], auth[i], buf, BUF, &have, &st);
            ck_assert_int_ge(fd, 0);
            ck_assert_msg(st == read_status, "%s with %s: %d, GET /v1/runs: %ld", paths[k],
                          auth[i] ? auth[i] : "no token", st, read_status);
            close(fd);
        }
    }
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(tokpath);
    yt_remove_history(hist);
}
END_TEST

START_TEST(bad_stream_requests_are_400_with_a_message)
{
    static char buf[BUF];
    const struct {
        const char *path, *header, *msg;
    } bad[] = {
        {"/v1/events?run=a", "Last-Event-ID: a:x", "Last-Event-ID: bad step for run 'a'"},
        {"/v1/events?run=a", "Last-Event-ID: a", "Last-Event-ID: expected run:step at byte 1"},
        {"/v1/events?run=a", "Last-Event-ID: %zz:1", "Last-Event-ID: bad %-escape at byte 0"},
        {"/v1/runs/a/events", "Last-Event-ID: a:1", "Last-Event-ID 'a:1' is not a step"},
        {"/v1/events?run=", NULL, "run: a run name has 1 to 63 bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t have;
        int st;
        int fd = yt_stream_open(&yt_main, bad[i].path, bad[i].header, buf, BUF, &have, &st);
        ck_assert_int_ge(fd, 0);
        ck_assert_msg(st == 400, "%s %s: %d", bad[i].path, bad[i].header, st);
        ck_assert_msg(yt_read_until(fd, buf, BUF, &have, bad[i].msg), "want '%s', got: %s",
                      bad[i].msg, buf);
        close(fd);
    }
}
END_TEST

Suite *yt_suite_streams(void)
{
    Suite *s = suite_create("streams");
    TCase *tc = tcase_create("streams");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, one_stream_for_several_runs_resumes_with_last_event_id);
    tcase_add_test(tc, a_stream_of_every_run);
    tcase_add_test(tc, heartbeat_comments);
    tcase_add_test(tc, max_streams_is_a_503_with_a_message);
    tcase_add_test(tc, abandoned_streams_give_their_descriptors_back);
    tcase_add_test(tc, streams_follow_the_token_rule_of_reads);
    tcase_add_test(tc, bad_stream_requests_are_400_with_a_message);
    suite_add_tcase(s, tc);
    return s;
}
