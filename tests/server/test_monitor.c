/*
 * test_monitor.c: runs and steps. Points survive a restart and a kill -9 right after the
 * response; the /v1 API returns what was recorded (JSON, CSV, delete with the token); an
 * event stream delivers a new point; /metrics has the run's gauges (and passes promtool
 * when it is installed; make test-metrics-promtool always runs it).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* One infer request of run (step < 0: none); returns its loss. */
static double send_point(const yt_daemon *d, const char *run, int step, uint64_t seed)
{
    double want;
    yt_resp r;
    ck_assert_int_eq(yt_send_point(d, run, step, seed, &want, &r), 200);
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    double loss = yt_find(&o, "loss")->v[0];
    ck_assert(fabs(loss - want) <= 1e-5 * fabs(want) + 1e-6);
    yt_outputs_free(&o);
    yt_resp_free(&r);
    return loss;
}

START_TEST(history_survives_restart_and_kill9)
{
    char hist[256];
    yt_temp_history(hist, sizeof hist, "history");
    const char *args[] = {"--threads", "2", "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    double loss[4];
    for (int i = 0; i < 3; i++)
        loss[i] = send_point(&d, "train", -1, 100 + (uint64_t)i);
    /* kill -9 right after the third response: what was answered is on disk */
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(yt_daemon_wait(&d), 128 + SIGKILL);

    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    json_t *pts = yt_run_points(&d, "train");
    ck_assert_int_eq(json_array_size(pts), 3);
    for (int i = 0; i < 3; i++) {
        json_t *p = json_array_get(pts, (size_t)i);
        ck_assert_int_eq(json_integer_value(json_object_get(p, "step")), i);
        ck_assert(fabs(json_real_value(json_object_get(p, "total")) - loss[i]) <=
                  1e-5 * fabs(loss[i]));
        ck_assert_int_eq(json_integer_value(json_object_get(p, "batch")), 2);
        ck_assert_int_eq(json_array_size(json_object_get(p, "layers")), 2);
    }
    json_decref(pts);
    /* the next step continues after a restart; a clean stop keeps it too */
    loss[3] = send_point(&d, "train", -1, 103);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    pts = yt_run_points(&d, "train");
    ck_assert_int_eq(json_array_size(pts), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(pts, 3), "step")), 3);
    json_decref(pts);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

START_TEST(api_returns_what_was_recorded)
{
    char hist[256];
    yt_temp_history(hist, sizeof hist, "history");
    yt_daemon d;
    yt_resp r;
    const char *args2[] = {"--threads", "2", "--history", hist, NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args2, false), 0);
    ck_assert_int_eq(yt_get(&d, "/v1/runs", &r), 200);
    ck_assert_str_eq(r.body, "{\"runs\":[]}");
    yt_resp_free(&r);
    const char *run = "a/b \"<x>\"";
    const char *run_path = "a%2Fb%20%22%3Cx%3E%22";
    for (int i = 0; i < 5; i++)
        send_point(&d, run, 10 * i, 200 + (uint64_t)i);
    send_point(&d, "other", -1, 300);
    json_t *all = yt_get_json(&d, "/v1/runs");
    json_t *runs = json_object_get(all, "runs");
    ck_assert_int_eq(json_array_size(runs), 2);
    json_t *ra = NULL;
    for (size_t i = 0; i < 2; i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(runs, i), "run")), run))
            ra = json_array_get(runs, i);
    ck_assert_ptr_nonnull(ra);
    ck_assert_int_eq(json_integer_value(json_object_get(ra, "first_step")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(ra, "last_step")), 40);
    ck_assert_int_eq(json_integer_value(json_object_get(ra, "points")), 5);
    json_decref(all);
    char path[256];
    snprintf(path, sizeof path, "/v1/runs/%s/steps?after=10&limit=2", run_path);
    json_t *j = yt_get_json(&d, path);
    json_t *pts = json_object_get(j, "points");
    ck_assert_int_eq(json_array_size(pts), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(pts, 0), "step")), 20);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(pts, 1), "step")), 30);
    json_decref(j);
    snprintf(path, sizeof path, "/v1/runs/%s/steps?limit=0", run_path);
    ck_assert_int_eq(yt_get(&d, path, &r), 400);
    yt_resp_free(&r);
    /* CSV: a header and five rows, the name quoted */
    snprintf(path, sizeof path, "/v1/runs/%s/steps.csv", run_path);
    ck_assert_int_eq(yt_get(&d, path, &r), 200);
    ck_assert(strncmp(r.body, "run,step,wall,batch,total,xy,wh,confidence,class", 48) == 0);
    int rows = 0;
    for (const char *p = r.body; (p = strstr(p, "\r\n")); p += 2)
        rows++;
    ck_assert_int_eq(rows, 6);
    ck_assert(strstr(r.body, "\"a/b \"\"<x>\"\"\",40,") != NULL);
    yt_resp_free(&r);
    /* delete */
    snprintf(path, sizeof path, "/v1/runs/%s", run_path);
    yt_req del = {.method = "DELETE", .path = path};
    ck_assert_int_eq(yt_http(&d, &del, &r), 200);
    ck_assert(strstr(r.body, "\"deleted\":5") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, path, &r), 405);
    yt_resp_free(&r);
    all = yt_get_json(&d, "/v1/runs");
    ck_assert_int_eq(json_array_size(json_object_get(all, "runs")), 1);
    json_decref(all);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

/* A run name that its own endpoints cannot reach ("a/steps": /v1/runs/a/steps is run a's
 * steps) is refused with a 400 naming the rule, by infer and by the writes under a run;
 * a name with '/' that routes back to itself is recorded and deleted as usual. */
START_TEST(unroutable_run_names_are_refused)
{
    char hist[256];
    yt_temp_history(hist, sizeof hist, "names");
    const char *args[] = {"--threads", "1", "--history", hist, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    const char *bad[] = {"a/steps", "b/config", "c/images/7", "d/events", "e/steps.csv",
                         "f/scalars", "g/images"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(yt_record_point(&d, bad[i], 1, 7) == 400, "run '%s' was recorded", bad[i]);
    yt_resp r;
    yt_req put = {.method = "PUT", .path = "/v1/runs/a/steps/config", .body = "{\"lr\":1}",
                  .len = 8, .headers = {"Content-Type: application/json"}};
    ck_assert_int_eq(yt_http(&d, &put, &r), 400);
    ck_assert_msg(strstr(r.body, "run name 'a/steps' cannot be told apart from an endpoint") &&
                      strstr(r.body, "must not end with the path of an endpoint"),
                  "%s", r.body);
    yt_resp_free(&r);
    json_t *all = yt_get_json(&d, "/v1/runs");
    ck_assert_int_eq(json_array_size(json_object_get(all, "runs")), 0);
    json_decref(all);
    ck_assert_int_eq(yt_record_point(&d, "team/steps2", 1, 7), 200);
    yt_req del = {.method = "DELETE", .path = "/v1/runs/team%2Fsteps2"};
    ck_assert_int_eq(yt_http(&d, &del, &r), 200);
    ck_assert(strstr(r.body, "\"deleted\":1") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    yt_remove_history(hist);
}
END_TEST

START_TEST(delete_needs_the_token)
{
    char hist[256], tokpath[] = "/tmp/yololossd-token-XXXXXX";
    yt_temp_history(hist, sizeof hist, "history");
    yt_token_file(tokpath, "tok\n");
    const char *args[] = {"--threads", "1", "--history", hist, "--token-file", tokpath, NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/v1/runs", &r), 200); /* reads are public */
    yt_resp_free(&r);
    yt_req del = {.method = "DELETE", .path = "/v1/runs/x"};
    ck_assert_int_eq(yt_http(&d, &del, &r), 401);
    yt_resp_free(&r);
    del.headers[0] = "Authorization: Bearer tok";
    ck_assert_int_eq(yt_http(&d, &del, &r), 200);
    ck_assert(strstr(r.body, "\"deleted\":0") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(tokpath);
    yt_remove_history(hist);
}
END_TEST

/* Read from fd until needle appears (or 10 s pass); the text read in buf. */
static bool read_until(int fd, char *buf, size_t len, size_t *have, const char *needle)
{
    for (int i = 0; i < 100; i++) {
        buf[*have] = '\0';
        if (strstr(buf, needle))
            return true;
        ssize_t n = recv(fd, buf + *have, len - 1 - *have, 0);
        if (n > 0)
            *have += (size_t)n;
        else if (n == 0)
            return false;
    }
    return false;
}

START_TEST(events_deliver_a_new_point)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)yt_main.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char run[64], req[256];
    snprintf(run, sizeof run, "sse-%d", (int)getpid());
    snprintf(req, sizeof req, "GET /v1/runs/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", run);
    ck_assert_int_eq(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    static char buf[1 << 16];
    size_t have = 0;
    ck_assert(read_until(fd, buf, sizeof buf, &have, "retry: 2000"));
    ck_assert(strstr(buf, "text/event-stream") != NULL);
    send_point(&yt_main, run, 41, 400);
    ck_assert_msg(read_until(fd, buf, sizeof buf, &have, "\"step\":41"), "got: %s", buf);
    ck_assert(strstr(buf, "id: 41\nevent: point\ndata: {") != NULL);
    send_point(&yt_main, run, -1, 401);
    ck_assert_msg(read_until(fd, buf, sizeof buf, &have, "\"step\":42"), "got: %s", buf);
    close(fd);
}
END_TEST

START_TEST(metrics_have_the_run)
{
    char run[64];
    snprintf(run, sizeof run, "metrics-%d", (int)getpid());
    send_point(&yt_main, run, 5, 500);
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/metrics", &r), 200);
    char want[160], h[128];
    snprintf(want, sizeof want, "yololoss_run_step{run=\"%s\"} 5\n", run);
    ck_assert_msg(strstr(r.body, want) != NULL, "%s", r.body);
    snprintf(want, sizeof want, "yololoss_run_loss{run=\"%s\",term=\"total\"} ", run);
    ck_assert(strstr(r.body, want) != NULL);
    ck_assert(strstr(r.body, "yololoss_requests_total{model=\"yolov3-tiny\",code=\"200\"} ") != NULL);
    ck_assert(strstr(r.body, "yololoss_request_duration_seconds_bucket{model=\"yolov3\",le=\"+Inf\"}") != NULL);
    ck_assert(strstr(r.body, "yololoss_worker_threads 3\n") != NULL);
    ck_assert_ptr_nonnull(yt_header(&r, "Content-Type", h, sizeof h));
    ck_assert(strstr(h, "text/plain; version=0.0.4") != NULL);
    if (system("command -v promtool > /dev/null 2>&1") == 0) {
        FILE *p = popen("promtool check metrics > /dev/null 2>&1", "w");
        ck_assert_ptr_nonnull(p);
        fwrite(r.body, 1, r.len, p);
        ck_assert_int_eq(pclose(p), 0);
    }
    yt_resp_free(&r);
}
END_TEST

START_TEST(metrics_max_runs_and_dashboard)
{
    const char *args[] = {"--threads", "1", "--history", "none", "--metrics-max-runs", "2", NULL};
    yt_daemon d;
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    send_point(&d, "r1", -1, 600);
    send_point(&d, "r2", -1, 601);
    send_point(&d, "r3", -1, 602);
    send_point(&d, "r3", -1, 603);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/metrics", &r), 200);
    ck_assert(strstr(r.body, "run=\"r1\"") == NULL);
    ck_assert(strstr(r.body, "yololoss_run_step{run=\"r2\"} 0\n") != NULL);
    ck_assert(strstr(r.body, "yololoss_run_step{run=\"r3\"} 1\n") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/v1/runs", &r), 404); /* no history */
    yt_resp_free(&r);
    char h[512];
    ck_assert_int_eq(yt_get(&d, "/", &r), 200);
    ck_assert_ptr_nonnull(yt_header(&r, "Content-Security-Policy", h, sizeof h));
    ck_assert(strstr(h, "script-src 'self'") != NULL);
    ck_assert(strstr(r.body, "/assets/uPlot.iife.min.js") != NULL);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/assets/uPlot.iife.min.js", &r), 200);
    ck_assert(r.len > 10000);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/assets/nope.js", &r), 404);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
}
END_TEST

Suite *yt_suite_monitor(void)
{
    Suite *s = suite_create("monitor");
    TCase *tc = tcase_create("monitor");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, history_survives_restart_and_kill9);
    tcase_add_test(tc, api_returns_what_was_recorded);
    tcase_add_test(tc, delete_needs_the_token);
    tcase_add_test(tc, unroutable_run_names_are_refused);
    tcase_add_test(tc, events_deliver_a_new_point);
    tcase_add_test(tc, metrics_have_the_run);
    tcase_add_test(tc, metrics_max_runs_and_dashboard);
    suite_add_tcase(s, tc);
    return s;
}
