/*
 * test_faults.c: faults around the daemon, each against a daemon of its own. Clients that
 * disconnect mid-upload or while their batch computes (the daemon keeps serving, fds come
 * back, RSS stays bounded, exit 0, so ASan finds no leak); 200 slow clients (cut at
 * --timeout while others are served); a burst past --max-inflight (503 + Retry-After, RSS
 * bounded); SIGTERM under load (in-flight requests finish, exit 0); kill -9 under load
 * with --history (every point whose response was received is there after a restart).
 * Waits are bounded; nothing asserts on durations.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Wait (at most 20 s) for the daemon's open fds to come down to want; the count. */
static int fds_settle(pid_t pid, int want)
{
    int n = yt_open_fds(pid);
    for (int i = 0; i < 400 && n > want; i++) {
        yt_nap_ms(50);
        n = yt_open_fds(pid);
    }
    return n;
}

static int connect_to(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* a full accept queue (200 connections at once, a daemon slowed by a sanitizer) may
     * refuse a connection: retry, bounded */
    int rc = -1;
    for (int i = 0; i < 100 && (rc = connect(fd, (struct sockaddr *)&sa, sizeof sa)) != 0; i++) {
        close(fd);
        yt_nap_ms(20);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_ge(fd, 0);
    }
    ck_assert_msg(rc == 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* the server may have closed: that is for the caller to check */
        c += k;
        n -= (size_t)k;
    }
}

/* Whether the server closed fd (EOF or reset), waiting at most ms. */
static bool closed_by_server(int fd, int ms)
{
    char buf[4096];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int k = poll(&p, 1, ms);
        if (k <= 0)
            return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return true; /* EOF or reset */
    }
}

/* A request's head for a body of len bytes (binary when header_len). */
static int request_head(char *buf, size_t cap, const char *model, size_t len, size_t header_len)
{
    int n = snprintf(buf, cap, "POST /v2/models/%s/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "Content-Length: %zu\r\n", model, len);
    if (header_len)
        n += snprintf(buf + n, cap - (size_t)n, "Inference-Header-Content-Length: %zu\r\n",
                      header_len);
    n += snprintf(buf + n, cap - (size_t)n, "\r\n");
    return n;
}

static const yt_spec big_spec = {.num_anchors = 9, .B = 4, .H0 = 8, .W0 = 8, .C = 20,
                                 .out_dtype = YL_F32, .truth = YT_BOXES, .truth_dtype = YL_F32,
                                 .T = 12, .seed = 901};
static const yt_spec small_spec = {.num_anchors = 6, .B = 2, .H0 = 2, .W0 = 2, .C = 3,
                                   .out_dtype = YL_F32, .truth = YT_BOXES,
                                   .truth_dtype = YL_F32, .T = 4, .seed = 902};

/* A good request, answered correctly. */
static void check_serves(const yt_daemon *d, const yt_case *c)
{
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    yt_resp r;
    char msg[256];
    ck_assert_msg(yt_infer(d, c, &s, &r) == 200, "status %ld: %s %s", r.status,
                  yt_error_message(&r, msg, sizeof msg), r.error);
    yt_check_answer(c, &r);
}

/* ------------------------------------------------------------------------------------ */

#define DISCONNECT_REPS 60

START_TEST(disconnects_leak_nothing)
{
    yt_daemon d;
    /* libmicrohttpd does not always notice at once that a client went away mid-request:
     * such a connection (and its in-flight slot) is released at --timeout at the latest */
    const char *args[] = {"--threads", "2", "--timeout", "3", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c;
    yt_case_make(&c, &big_spec);
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    char head[512];
    int head_len = request_head(head, sizeof head, "yolov3", len, hl);
    check_serves(&d, &c);
    int fds0 = yt_open_fds(d.pid);
    long rss_warm = 0;
    for (int rep = 0; rep < DISCONNECT_REPS; rep++) {
        /* mid-upload: the head and half the body, then gone (a reset every other time) */
        int fd = connect_to(d.port);
        send_all(fd, head, (size_t)head_len);
        send_all(fd, body, len / 2);
        if (rep % 2) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
        /* while its batch computes: the whole request, then gone before the answer */
        fd = connect_to(d.port);
        send_all(fd, head, (size_t)head_len);
        send_all(fd, body, len);
        close(fd);
        if (rep % 10 == 9) { /* in tens, so that no more than 20 pile up */
            fds_settle(d.pid, fds0);
            if (rep == 9)
                rss_warm = yt_rss_kb(d.pid);
        }
    }
    int fds_end = fds_settle(d.pid, fds0);
    ck_assert_msg(fds_end <= fds0, "open fds %d after %d disconnects, %d before", fds_end,
                  2 * DISCONNECT_REPS, fds0);
    long rss_end = yt_rss_kb(d.pid);
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine keeps freed memory; its leak check at exit
                             * (yt_daemon_stop's status) is the test there */
    /* RSS is not the leak detector here: up to 20 abandoned requests pile up at once and the
     * buffer cache keeps large buffers for reuse, so what stays resident varies by 25 MB
     * from run to run. LeakSanitizer is the leak test (test-sanitize runs this suite under
     * ASan; leaking the body of every abandoned request fails it there, checked by
     * mutation). This bound only catches runaway growth: more than 60 bodies' worth. */
    long allowed_kb = (long)((size_t)DISCONNECT_REPS * len / 1024);
    ck_assert_msg(rss_end - rss_warm < allowed_kb,
                  "RSS %ld kB after the disconnects, %ld kB after the first 10: grew by more "
                  "than 60 bodies of %zu bytes",
                  rss_end, rss_warm, len);
#endif
    fprintf(stderr, "faults: %d disconnects: fds %d -> %d, RSS %ld kB (after 20) -> %ld kB\n",
            2 * DISCONNECT_REPS, fds0, fds_end, rss_warm, rss_end);
    check_serves(&d, &c); /* the pool keeps serving */
    free(body);
    yt_case_free(&c);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* ------------------------------------------------------------------------------------ */

#define SLOW_CLIENTS 200

START_TEST(slow_clients_cut_at_timeout)
{
    yt_daemon d;
    /* each slow client holds an in-flight slot until it is cut: room for all of them */
    const char *args[] = {"--threads", "2", "--timeout", "2", "--max-inflight", "512", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c;
    yt_case_make(&c, &small_spec);
    int fds0 = yt_open_fds(d.pid);
    char head[512];
    int head_len = request_head(head, sizeof head, "yolov3-tiny", 100000, 0);
    int fd[SLOW_CLIENTS];
    bool cut[SLOW_CLIENTS] = {false};
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fd[i] = connect_to(d.port);
        send_all(fd[i], head, (size_t)head_len);
    }
    /* a byte a second from each; the others are served meanwhile; every slow one is cut
     * (bounded: 30 s, far past the 2 s timeout) */
    int ncut = 0;
    for (int sec = 0; sec < 30 && ncut < SLOW_CLIENTS; sec++) {
        for (int i = 0; i < SLOW_CLIENTS; i++)
            if (!cut[i])
                send_all(fd[i], "{", 1);
        check_serves(&d, &c);
        yt_nap_ms(1000);
        for (int i = 0; i < SLOW_CLIENTS; i++)
            if (!cut[i] && closed_by_server(fd[i], 0)) {
                cut[i] = true;
                ncut++;
            }
    }
    for (int i = 0; i < SLOW_CLIENTS; i++)
        close(fd[i]);
    ck_assert_msg(ncut == SLOW_CLIENTS, "%d of %d slow clients cut", ncut, SLOW_CLIENTS);
    fprintf(stderr, "faults: %d slow clients (a byte a second, --timeout 2) all cut\n", ncut);
    int fds_end = fds_settle(d.pid, fds0);
    ck_assert_msg(fds_end <= fds0, "open fds %d, %d before", fds_end, fds0);
    check_serves(&d, &c);
    yt_case_free(&c);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Held uploads: requests whose headers were accepted (admitted; in flight once their body */
/* ends) and whose bodies wait for a release.                                            */

typedef struct {
    const yt_daemon *d;
    const yt_case *c;
    uint8_t *body;
    size_t len, hl;
    yt_gate gate;
    yt_resp resp;
    pthread_t th;
    json_t *params;
} held;

static void *held_main(void *arg)
{
    held *h = arg;
    char ih[64];
    snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", h->hl);
    yt_req req = {.path = h->c->L == 3 ? "/v2/models/yolov3/infer" : "/v2/models/yolov3-tiny/infer",
                  .body = h->body, .len = h->len, .gate = &h->gate};
    req.headers[0] = ih;
    yt_http(h->d, &req, &h->resp);
    return NULL;
}

static void held_start(held *h, const yt_daemon *d, const yt_case *c)
{
    h->d = d;
    h->c = c;
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    h->body = yt_request_body(c, &s, &h->len, &h->hl);
    yt_gate_init(&h->gate);
    ck_assert_int_eq(pthread_create(&h->th, NULL, held_main, h), 0);
    yt_gate_wait_started(&h->gate);
}

static void held_finish(held *h)
{
    yt_gate_release(&h->gate);
    pthread_join(h->th, NULL);
    char msg[256];
    ck_assert_msg(h->resp.status == 200, "held request: %ld %s %s", h->resp.status,
                  yt_error_message(&h->resp, msg, sizeof msg), h->resp.error);
    yt_check_answer(h->c, &h->resp);
    free(h->body);
}

#define BURST 200

/* A request held in flight by a client that does not read its 22 MB answer (an upload
 * still arriving holds no slot: it counts from the end of its body). */
static const yt_spec hold_spec = {.num_anchors = 9, .B = 4, .H0 = 16, .W0 = 16, .C = 80,
                                  .out_dtype = YL_F16, .truth = YT_BOXES,
                                  .truth_dtype = YL_F32, .T = 6, .seed = 903};

typedef struct {
    int fd;
    uint8_t *body;
} hold;

static void hold_start(hold *h, const yt_daemon *d, const yt_case *c)
{
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    size_t len, hl;
    h->body = yt_request_body(c, &s, &len, &hl);
    h->fd = yt_hold_send(d, "/v2/models/yolov3/infer", h->body, len, hl);
    ck_assert_int_ge(h->fd, 0);
}

static void hold_finish(hold *h, const yt_case *c)
{
    yt_resp r;
    char msg[256];
    ck_assert_msg(yt_hold_finish(h->fd, &r) == 200, "held request: %ld %s %s", r.status,
                  yt_error_message(&r, msg, sizeof msg), r.error);
    yt_check_answer(c, &r);
    free(h->body);
}

START_TEST(burst_past_max_inflight)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-inflight", "2", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c, big;
    yt_case_make(&c, &hold_spec);
    yt_case_make(&big, &big_spec);
    hold h[2];
    hold_start(&h[0], &d, &c);
    hold_start(&h[1], &d, &c);
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_inflight_requests", 2), 2);
    ck_assert(yt_hold_answering(h[0].fd) && yt_hold_answering(h[1].fd)); /* computed */
    long rss0 = yt_rss_kb(d.pid);
    /* the burst: large bodies, refused at their headers */
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    int n503 = 0;
    for (int i = 0; i < BURST; i++) {
        yt_resp r;
        long st = yt_infer(&d, &big, &s, &r);
        char ra[32];
        if (st == 503 && yt_header(&r, "Retry-After", ra, sizeof ra) && atoi(ra) > 0)
            n503++;
        else
            ck_abort_msg("burst request %d: status %ld, Retry-After %s", i, st,
                         yt_header(&r, "Retry-After", ra, sizeof ra) ? ra : "missing");
        yt_resp_free(&r);
    }
    long rss1 = yt_rss_kb(d.pid);
    fprintf(stderr, "faults: burst of %d past --max-inflight 2: %d x 503, RSS %ld -> %ld kB\n",
            BURST, n503, rss0, rss1);
    ck_assert_msg(rss1 < rss0 + 16384, "RSS %ld kB after the burst, %ld kB before", rss1, rss0);
    hold_finish(&h[0], &c);
    hold_finish(&h[1], &c);
    check_serves(&d, &big);
    yt_case_free(&c);
    yt_case_free(&big);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* ------------------------------------------------------------------------------------ */

#define HELD 8

START_TEST(sigterm_under_load)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c;
    yt_case_make(&c, &big_spec);
    held h[HELD];
    for (int i = 0; i < HELD; i++)
        held_start(&h[i], &d, &c);
    kill(d.pid, SIGTERM);
    /* draining (ready says no, bounded wait): a new infer request is refused, the held ones
     * finish */
    yt_resp r;
    for (int i = 0; i < 2000; i++) {
        long ready = yt_get(&d, "/v2/health/ready", &r);
        yt_resp_free(&r);
        if (ready != 200)
            break;
        yt_nap_ms(10);
    }
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    long st = yt_infer(&d, &c, &s, &r);
    ck_assert_msg(st == 503 || st == 0, "a new request while draining: %ld", st);
    yt_resp_free(&r);
    for (int i = 0; i < HELD; i++)
        held_finish(&h[i]);
    ck_assert_int_eq(yt_daemon_wait(&d), 0);
    yt_case_free(&c);
    unlink(d.errlog);
}
END_TEST

/* ------------------------------------------------------------------------------------ */

#define KILL_CLIENTS 8
#define KILL_AFTER 40 /* answered points before the kill */

typedef struct {
    const yt_daemon *d;
    const yt_case *c;
    int id;
    int acked[1000]; /* steps answered 200 */
    int nacked;
    int *total; /* shared, under mu */
    pthread_mutex_t *mu;
} pointer;

static void *pointer_main(void *arg)
{
    pointer *p = arg;
    for (int k = 0; k < 1000; k++) {
        int step = k * KILL_CLIENTS + p->id;
        json_t *params = json_pack("{s:s,s:i}", "run", "killed", "step", step);
        yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true,
                     .params = params};
        s.outputs[0] = "loss";
        yt_resp r;
        long st = yt_infer(p->d, p->c, &s, &r);
        json_decref(params);
        yt_resp_free(&r);
        if (st != 200)
            break; /* killed */
        p->acked[p->nacked++] = step;
        pthread_mutex_lock(p->mu);
        ++*p->total;
        pthread_mutex_unlock(p->mu);
    }
    return NULL;
}

START_TEST(kill9_under_load_keeps_history)
{
    char history[96];
    snprintf(history, sizeof history, "/tmp/yololossd-test-kill9-%d.sqlite", (int)getpid());
    yt_daemon d;
    const char *args[] = {"--threads", "2", "--history", history, NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c;
    yt_case_make(&c, &small_spec);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int total = 0;
    static pointer p[KILL_CLIENTS];
    pthread_t th[KILL_CLIENTS];
    for (int i = 0; i < KILL_CLIENTS; i++) {
        p[i] = (pointer){.d = &d, .c = &c, .id = i, .total = &total, .mu = &mu};
        ck_assert_int_eq(pthread_create(&th[i], NULL, pointer_main, &p[i]), 0);
    }
    for (int i = 0; i < 6000; i++) { /* at most 60 s */
        pthread_mutex_lock(&mu);
        int t = total;
        pthread_mutex_unlock(&mu);
        if (t >= KILL_AFTER)
            break;
        yt_nap_ms(10);
    }
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(yt_daemon_wait(&d), 128 + SIGKILL);
    int acked = 0;
    for (int i = 0; i < KILL_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        acked += p[i].nacked;
    }
    ck_assert_int_ge(acked, KILL_AFTER);
    /* restart on the same history: every answered point is there */
    unlink(d.errlog);
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/v1/runs/killed/steps?limit=100000", &r), 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    json_t *pts = json_object_get(j, "points");
    ck_assert(json_is_array(pts));
    static bool have[1000 * KILL_CLIENTS];
    memset(have, 0, sizeof have);
    size_t i;
    json_t *pt;
    json_array_foreach(pts, i, pt) {
        json_int_t st = json_integer_value(json_object_get(pt, "step"));
        if (st >= 0 && st < 1000 * KILL_CLIENTS)
            have[st] = true;
    }
    for (int k = 0; k < KILL_CLIENTS; k++)
        for (int a = 0; a < p[k].nacked; a++)
            ck_assert_msg(have[p[k].acked[a]], "step %d was answered but is not in the history",
                          p[k].acked[a]);
    fprintf(stderr, "faults: kill -9 under load: %d answered points, %zu in the history\n",
            acked, json_array_size(pts));
    json_decref(j);
    yt_resp_free(&r);
    yt_case_free(&c);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    for (int k = 0; k < 3; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s%s", history, k == 0 ? "" : k == 1 ? "-wal" : "-shm");
        unlink(path);
    }
}
END_TEST

Suite *yt_suite_faults(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, disconnects_leak_nothing);
    tcase_add_test(tc, slow_clients_cut_at_timeout);
    tcase_add_test(tc, burst_past_max_inflight);
    tcase_add_test(tc, sigterm_under_load);
    tcase_add_test(tc, kill9_under_load_keeps_history);
    suite_add_tcase(s, tc);
    return s;
}
