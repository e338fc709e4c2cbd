/*
 * test_hardening.c: what a careless or hostile client can do to the daemon (issue 11).
 * Refusals decided from the headers reach a client that sent "Expect: 100-continue"
 * before any body byte (raw sockets: the first line the daemon sends is the final
 * status, never "100 Continue").
 * The memory budget, JSON shape and output bounds, disconnects and in-flight slots, the
 * per-address limit, replies that cannot be allocated, --drain-grace, libmicrohttpd's own
 * errors as JSON.
 * Waits are bounded; nothing asserts on durations.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP                                                                             */

/* The "error" of a JSON body, or NULL when the body is not {"error": "..."}. */
static bool is_json_error(const char *body, char *msg, size_t cap)
{
    json_error_t e;
    json_t *o = json_loads(body, 0, &e);
    const char *s = json_string_value(json_object_get(o, "error"));
    bool ok = s && *s;
    snprintf(msg, cap, "%.400s", s ? s : body);
    json_decref(o);
    return ok;
}

/* Send head (with "Expect: 100-continue" in it) and no body: the first response must be
 * the final status want, with a JSON error naming want_msg. */
static void expect_refused(unsigned port, const char *head, int want, const char *want_msg)
{
    int fd = yt_raw_connect(port);
    ck_assert(yt_raw_send(fd, head, strlen(head)));
    char h[4096], b[4096], msg[512];
    int st = yt_raw_response(fd, h, sizeof h, b, sizeof b);
    close(fd);
    ck_assert_msg(st == want, "got %d (want %d before any body byte) for:\n%s\n%s", st, want,
                  head, h);
    ck_assert_msg(is_json_error(b, msg, sizeof msg), "not a JSON error: %s", b);
    ck_assert_msg(strstr(msg, want_msg) != NULL, "message \"%s\" lacks \"%s\"", msg, want_msg);
}

/* ------------------------------------------------------------------------------------ */
/* Item 2: Expect: 100-continue                                                         */

START_TEST(expect_continue_refused_on_headers)
{
    unsigned port = yt_small.port; /* --max-body 1M --max-json 256K */
    /* 413: a body over --max-body, declared */
    expect_refused(port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Inference-Header-Content-Length: 100\r\nContent-Length: 2000000000\r\n"
                   "Expect: 100-continue\r\n\r\n",
                   413, "--max-body");
    /* 413: JSON only, over --max-json */
    expect_refused(port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Content-Length: 300000\r\nExpect: 100-continue\r\n\r\n",
                   413, "--max-json");
    /* 404: unknown model; 404: no such path */
    expect_refused(port,
                   "POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: t\r\n"
                   "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
                   404, "nosuch");
    expect_refused(port,
                   "POST /no/such/path HTTP/1.1\r\nHost: t\r\n"
                   "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
                   404, "no such endpoint");
    /* 405: a body to a GET endpoint */
    expect_refused(port,
                   "POST /v2/health/live HTTP/1.1\r\nHost: t\r\n"
                   "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
                   405, "not allowed");
    /* 501: a coding we do not speak */
    expect_refused(port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Content-Encoding: br\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
                   501, "Content-Encoding");
    /* 400: a JSON header longer than the body */
    expect_refused(port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Inference-Header-Content-Length: 5000\r\nContent-Length: 1000\r\n"
                   "Expect: 100-continue\r\n\r\n",
                   400, "larger than the body");

    /* the control: an acceptable request gets "100 Continue", then its answer */
    yt_spec spec = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 5};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 1, .output_binary = -1};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    char head[512];
    snprintf(head, sizeof head,
             "POST /v2/models/yolov3-tiny/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
             "Expect: 100-continue\r\n\r\n",
             len);
    int fd = yt_raw_connect(port);
    ck_assert(yt_raw_send(fd, head, strlen(head)));
    static char h[8192], b[1 << 16];
    ck_assert_int_eq(yt_raw_response(fd, h, sizeof h, b, sizeof b), 100);
    ck_assert(yt_raw_send(fd, body, len));
    ck_assert_int_eq(yt_raw_response(fd, h, sizeof h, b, sizeof b), 200);
    close(fd);
    free(body);
    yt_case_free(&c);
}
END_TEST

START_TEST(expect_continue_401_on_headers)
{
    char path[] = "/tmp/yololossd-token-XXXXXX";
    int tfd = mkstemp(path);
    ck_assert_int_ge(tfd, 0);
    ck_assert_int_eq(write(tfd, "tok\n", 4), 4);
    close(tfd);
    yt_daemon d;
    const char *args[] = {"--token-file", path, "--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    expect_refused(d.port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Inference-Header-Content-Length: 100\r\nContent-Length: 500000000\r\n"
                   "Expect: 100-continue\r\n\r\n",
                   401, "bearer token");
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    unlink(path);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Item 4: shapes are bounded by the data present before anything is allocated           */

/* POST body (JSON only) to yolov3's infer: the status and the error message. */
static long post_json(const char *body, char *msg, size_t cap)
{
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = body, .len = strlen(body)};
    yt_resp r;
    long st = yt_http(&yt_main, &req, &r);
    yt_error_message(&r, msg, cap);
    yt_resp_free(&r);
    return st;
}

START_TEST(json_shape_bounded_by_data)
{
    char msg[512];
    /* a ~400-byte body declaring 2.8e14 elements per layer: 400 naming the mismatch */
    const char *huge =
        "{\"inputs\":[{\"name\":\"output_0\",\"datatype\":\"FP32\",\"shape\":[1,1048576,1048576,255],"
        "\"data\":[0.5]},{\"name\":\"output_1\",\"datatype\":\"FP32\",\"shape\":[1,1048576,1048576,"
        "255],\"data\":[0.5]},{\"name\":\"output_2\",\"datatype\":\"FP32\",\"shape\":[1,1048576,"
        "1048576,255],\"data\":[0.5]},{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[1,1,5],"
        "\"data\":[0.5,0.5,0.1,0.1,0]}]}";
    long st = post_json(huge, msg, sizeof msg);
    ck_assert_msg(st == 400, "status %ld (%s)", st, msg);
    ck_assert_msg(strstr(msg, "output_0") && strstr(msg, "data has 1 values") &&
                      strstr(msg, "[1,1048576,1048576,255]"),
                  "message: %s", msg);
    /* more values than the shape holds, nested: named too */
    const char *more =
        "{\"inputs\":[{\"name\":\"output_0\",\"datatype\":\"FP32\",\"shape\":[1,1,1,2],"
        "\"data\":[[[[1,2,3]]]]},{\"name\":\"output_1\",\"datatype\":\"FP32\",\"shape\":[1],"
        "\"data\":[1]},{\"name\":\"output_2\",\"datatype\":\"FP32\",\"shape\":[1],"
        "\"data\":[1]},{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[1,1,5],"
        "\"data\":[0.5,0.5,0.1,0.1,0]}]}";
    st = post_json(more, msg, sizeof msg);
    ck_assert_msg(st == 400 && strstr(msg, "output_0") && strstr(msg, "more than 2 values"),
                  "status %ld (%s)", st, msg);
    /* the daemon is fine */
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Item 3: the memory budget (--max-memory)                                              */

typedef struct {
    const yt_daemon *d;
    const uint8_t *body;
    size_t len, hl;
    yt_resp resp;
} shot;

static void *shot_main(void *arg)
{
    shot *h = arg;
    char ih[64];
    snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", h->hl);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = h->body, .len = h->len};
    req.headers[0] = ih;
    yt_http(h->d, &req, &h->resp);
    return NULL;
}

typedef struct {
    pid_t pid;
    volatile bool stop;
    long max_kb;
    pthread_t th;
} rss_watch;

static void *rss_main(void *arg)
{
    rss_watch *w = arg;
    while (!w->stop) {
        long kb = yt_rss_kb(w->pid);
        if (kb > w->max_kb)
            w->max_kb = kb;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

#define SHOTS 12
#define BUDGET_MB 160

/* Twelve concurrent requests of ~26 MB each that also want their ~26 MB of gradients, on a
 * 160 MiB budget: those that fit are answered exactly, the others get 503 + Retry-After
 * naming --max-memory, and the daemon's RSS stays under the budget plus what it held
 * before (its code, libraries, idle buffers). */
START_TEST(memory_budget_refuses_past_it)
{
    yt_daemon d;
    const char *args[] = {"--threads", "2", "--max-inflight", "64", "--max-memory",
                          "160M", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_spec spec = {.num_anchors = 9, .B = 12, .H0 = 10, .W0 = 10, .C = 80, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .seed = 77};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    /* one alone fits and is exact: the baseline after it (its blocks kept for reuse) */
    shot one = {.d = &d, .body = body, .len = len, .hl = hl};
    shot_main(&one);
    ck_assert_int_eq(one.resp.status, 200);
    yt_resp_free(&one.resp);
    long rss0 = yt_rss_kb(d.pid);

    rss_watch w = {.pid = d.pid};
    ck_assert_int_eq(pthread_create(&w.th, NULL, rss_main, &w), 0);
    static shot shots[SHOTS];
    pthread_t th[SHOTS];
    for (int i = 0; i < SHOTS; i++) {
        shots[i] = (shot){.d = &d, .body = body, .len = len, .hl = hl};
        ck_assert_int_eq(pthread_create(&th[i], NULL, shot_main, &shots[i]), 0);
    }
    for (int i = 0; i < SHOTS; i++)
        pthread_join(th[i], NULL);
    w.stop = true;
    pthread_join(w.th, NULL);
    int ok = 0, refused = 0;
    for (int i = 0; i < SHOTS; i++) {
        yt_resp *r = &shots[i].resp;
        char msg[512], ra[32];
        if (r->status == 200) {
            yt_outputs o;
            char err[256];
            ck_assert_msg(yt_parse_outputs(r, &o, err, sizeof err) == 0, "%s", err);
            yt_check_output(&c, &o, "loss");
            yt_check_output(&c, &o, "grad_2");
            yt_outputs_free(&o);
            ok++;
        } else {
            ck_assert_msg(r->status == 503, "status %ld: %s %s", r->status,
                          yt_error_message(r, msg, sizeof msg), r->error);
            ck_assert_msg(yt_header(r, "Retry-After", ra, sizeof ra) != NULL, "no Retry-After");
            ck_assert_msg(strstr(yt_error_message(r, msg, sizeof msg), "--max-memory") != NULL,
                          "message: %s", msg);
            refused++;
        }
        yt_resp_free(r);
    }
    fprintf(stderr,
            "hardening: %d requests of %zu bytes (+ gradients) on --max-memory %dM: %d x 200, "
            "%d x 503; RSS %ld kB before, at most %ld kB during\n",
            SHOTS, len, BUDGET_MB, ok, refused, rss0, w.max_kb);
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(ok, 0);
#ifndef __SANITIZE_ADDRESS__
    /* (AddressSanitizer keeps freed memory in quarantine: no RSS bound there) */
    ck_assert_msg(w.max_kb < rss0 + BUDGET_MB * 1024L, "RSS %ld kB, over %ld + the budget",
                  w.max_kb, rss0);
#endif
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    free(body);
    yt_case_free(&c);
}
END_TEST

/* A small gzip body inflating past the budget is refused while it inflates (503), not
 * inflated in full. */
START_TEST(memory_budget_counts_inflation)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-memory", "64M", "--max-body", "1G",
                          "--max-json", "1G", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    /* a body that cannot fit, declared: 503 on its headers, before any byte of it */
    expect_refused(d.port,
                   "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                   "Inference-Header-Content-Length: 100\r\nContent-Length: 209715200\r\n"
                   "Expect: 100-continue\r\n\r\n",
                   503, "--max-memory");
    size_t n = 200u << 20;
    char *text = malloc(n);
    memset(text, ' ', n);
    text[0] = '{';
    text[n - 1] = '}';
    z_stream z;
    memset(&z, 0, sizeof z);
    ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, n);
    uint8_t *gz = malloc(cap);
    z.next_in = (Bytef *)text;
    z.avail_in = (uInt)n;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t gz_len = z.total_out;
    deflateEnd(&z);
    free(text);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = gz, .len = gz_len,
                  .headers = {"Content-Encoding: gzip"}};
    yt_resp r;
    char msg[512];
    long st = yt_http(&d, &req, &r);
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(st == 503 && strstr(msg, "--max-memory"), "%zu gzip bytes: %ld %s %s", gz_len,
                  st, msg, r.error);
    yt_resp_free(&r);
    free(gz);
    ck_assert_int_eq(yt_get(&d, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* JSON output is capped like JSON input: gradients as JSON past --max-json are a 400
 * (before any image is computed) that says to ask for binary data. */
START_TEST(json_output_capped)
{
    /* yt_small: --max-json 256K; yolov3-tiny 8x8, 20 classes: 24000 gradient values */
    yt_spec spec = {.num_anchors = 6, .B = 1, .H0 = 8, .W0 = 8, .C = 20, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 9};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 0, .output_binary = 0, .outputs = {"loss", "grad_0", "grad_1"}};
    yt_resp r;
    char msg[512];
    long st = yt_infer(&yt_small, &c, &s, &r);
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(st == 400 && strstr(msg, "--max-json") && strstr(msg, "binary"), "%ld %s", st,
                  msg);
    yt_resp_free(&r);
    /* the same as binary data: answered, exact */
    s.output_binary = 1;
    ck_assert_int_eq(yt_infer(&yt_small, &c, &s, &r), 200);
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    yt_check_output(&c, &o, "grad_1");
    yt_outputs_free(&o);
    yt_resp_free(&r);
    yt_case_free(&c);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Item 5: disconnects and slots                                                         */

/* A request held in flight by a client that does not read its 22 MB answer. */
static const yt_spec hold_spec = {.num_anchors = 9, .B = 4, .H0 = 16, .W0 = 16, .C = 80,
                                  .out_dtype = YL_F16, .truth = YT_BOXES,
                                  .truth_dtype = YL_F32, .T = 6, .seed = 903};

/* --max-inflight counts requests whose body is complete: one held in flight refuses the
 * next (503 + Retry-After), an upload still arriving does not. */
START_TEST(inflight_counts_complete_bodies)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-inflight", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case c, small;
    yt_case_make(&c, &hold_spec);
    yt_spec ss = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                  .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 3};
    yt_case_make(&small, &ss);
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    /* an upload stalled after its headers (raw: the head and a few bytes of its body) */
    size_t slen, shl;
    uint8_t *sbody = yt_request_body(&small, &s, &slen, &shl);
    int up = yt_raw_connect(d.port);
    char head[256];
    snprintf(head, sizeof head,
             "POST /v2/models/yolov3-tiny/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
             "Inference-Header-Content-Length: %zu\r\n\r\n",
             slen, shl);
    ck_assert(yt_raw_send(up, head, strlen(head)) && yt_raw_send(up, sbody, 10));
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_uploading_requests", 1), 1);
    /* it holds no slot: a complete request is answered */
    yt_resp r;
    ck_assert_int_eq(yt_infer(&d, &small, &s, &r), 200);
    yt_resp_free(&r);
    /* one in flight (its answer unread) holds the slot: the next is refused */
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    int fd = yt_hold_send(&d, "/v2/models/yolov3/infer", body, len, hl);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_inflight_requests", 1), 1);
    char ra[16], msg[256];
    ck_assert_int_eq(yt_infer(&d, &small, &s, &r), 503);
    ck_assert_ptr_nonnull(yt_header(&r, "Retry-After", ra, sizeof ra));
    ck_assert(strstr(yt_error_message(&r, msg, sizeof msg), "--max-inflight 1") != NULL);
    yt_resp_free(&r);
    /* the stalled upload completes while the slot is taken: 503 too, not a queue jump */
    ck_assert(yt_raw_send(up, sbody + 10, slen - 10));
    char h[4096], b[4096];
    ck_assert_int_eq(yt_raw_response(up, h, sizeof h, b, sizeof b), 503);
    close(up);
    ck_assert_int_eq(yt_hold_finish(fd, &r), 200);
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    yt_check_all(&c, &o);
    yt_outputs_free(&o);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    free(body);
    free(sbody);
    yt_case_free(&c);
    yt_case_free(&small);
}
END_TEST

/* A client that leaves while its batch computes: the work stops (queued chunks cancelled,
 * running ones at their next image), its slot is freed, and the daemon says so in
 * /metrics. The batch is large enough that computing it all would take far longer than
 * noticing (a few seconds on one thread). */
START_TEST(client_gone_during_compute)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-inflight", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_spec spec = {.num_anchors = 9, .B = 64, .H0 = 13, .W0 = 13, .C = 80, .out_dtype = YL_F16,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 100, .seed = 17};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    int fd = yt_raw_connect(d.port);
    char head[256];
    snprintf(head, sizeof head,
             "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
             "Inference-Header-Content-Length: %zu\r\n\r\n",
             len, hl);
    ck_assert(yt_raw_send(fd, head, strlen(head)) && yt_raw_send(fd, body, len));
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_inflight_requests", 1), 1);
    close(fd); /* gone while it computes */
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_client_gone_total", 1), 1);
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_inflight_requests", 0), 0);
    double skipped = yt_metric(&d, "yololoss_client_gone_images_total");
    fprintf(stderr, "hardening: client gone during a %d-image batch: %.0f images not computed\n",
            (int)spec.B, skipped);
    ck_assert_msg(skipped > 0, "every image was computed for a client that left");
    /* the slot is free, the daemon serves */
    yt_spec ss = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                  .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 3};
    yt_case small;
    yt_case_make(&small, &ss);
    yt_resp r;
    ck_assert_int_eq(yt_infer(&d, &small, &s, &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    free(body);
    yt_case_free(&c);
    yt_case_free(&small);
}
END_TEST

/* --max-connections-per-address: one address cannot take every descriptor; the others
 * are unaffected, and its connections come back when it closes them. */
START_TEST(per_address_connection_limit)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-connections-per-address", "3", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    int fd[3];
    for (int i = 0; i < 3; i++) {
        /* uploads begun: the connections are held */
        fd[i] = yt_raw_connect(d.port);
        const char *head = "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                           "Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n";
        ck_assert(yt_raw_send(fd[i], head, strlen(head)));
        char h[256], b[256];
        ck_assert_int_eq(yt_raw_response(fd[i], h, sizeof h, b, sizeof b), 100); /* admitted */
        ck_assert(yt_raw_send(fd[i], "{", 1));
    }
    /* the fourth from the same address is closed at once, with no answer */
    int extra = yt_raw_connect(d.port);
    const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
    yt_raw_send(extra, req, strlen(req));
    char c;
    errno = 0;
    ssize_t n = recv(extra, &c, 1, 0); /* end of file or reset; a timeout (EAGAIN) fails */
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET), "recv %zd, errno %d", n, errno);
    close(extra);
    for (int i = 0; i < 3; i++)
        close(fd[i]);
    /* and then there is room again (bounded wait for the daemon to see the closes) */
    long st = 0;
    for (int i = 0; i < 3000 && st != 200; i++) {
        yt_resp r;
        st = yt_get(&d, "/v2/health/live", &r);
        yt_resp_free(&r);
        if (st != 200) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    if (st != 200)
        yt_daemon_dump(&d);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* The daemon's open descriptors once they are back to fds0 or 5 s have gone by. */
static int fds_back_to(const yt_daemon *d, int fds0)
{
    int fds = yt_open_fds(d->pid);
    for (int i = 0; i < 500 && fds > fds0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        fds = yt_open_fds(d->pid);
    }
    return fds;
}

/* Clients that leave mid-upload with a plain close (FIN): libmicrohttpd 0.9.75 driven
 * through its epoll fd missed some of these ends (4 or 5 of 20), holding the connection
 * until --timeout; the socket watch of an upload makes it read them. */
START_TEST(client_gone_mid_upload)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--timeout", "120", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    size_t len = 1700000;
    char *junk = calloc(1, len);
    int fds0 = yt_open_fds(d.pid);
    for (int i = 0; i < 20; i++) {
        int fd = yt_raw_connect(d.port);
        char head[256];
        snprintf(head, sizeof head,
                 "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n"
                 "Inference-Header-Content-Length: 10\r\n\r\n",
                 len);
        ck_assert(yt_raw_send(fd, head, strlen(head)));
        yt_raw_send(fd, junk, len / 2);
        close(fd);
    }
    double up = yt_metric_wait(&d, "yololoss_uploading_requests", 0);
    ck_assert_msg(up == 0, "%.0f of 20 abandoned uploads still held", up);
    int fds = fds_back_to(&d, fds0);
    ck_assert_msg(fds <= fds0, "fds %d, %d before", fds, fds0);
    free(junk);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* Clients that leave in the middle of a request's headers (a first request, or the next
 * one on a keep-alive connection): the headers and the FIN arrive together, and
 * libmicrohttpd 0.9.75, driven through its epoll fd, read the bytes but not the end of
 * file, so each such connection was held until --timeout (20 of 20 here, CLOSE-WAIT). Now
 * a connection between requests is watched for the hang-up, and they are let go at once. */
START_TEST(client_gone_mid_headers)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--timeout", "120", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    int fds0 = yt_open_fds(d.pid);
    for (int i = 0; i < 20; i++) {
        int fd = yt_raw_connect(d.port);
        if (i % 2) { /* a whole request first, answered, then part of the next one */
            const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
            ck_assert(yt_raw_send(fd, req, strlen(req)));
            char h[512], b[256];
            ck_assert_int_eq(yt_raw_response(fd, h, sizeof h, b, sizeof b), 200);
        }
        const char *part = "GET /v2/health/ready HTTP/1.1\r\nHost: t\r\nX-Half: ";
        ck_assert(yt_raw_send(fd, part, strlen(part)));
        close(fd);
    }
    int fds = fds_back_to(&d, fds0);
    ck_assert_msg(fds <= fds0, "fds %d, %d before: connections closed mid-headers still held",
                  fds, fds0);
    yt_resp r; /* and the daemon still answers */
    ck_assert_int_eq(yt_get(&d, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* Slowloris: a client that trickles its header lines (a byte every 0.2 s) is never idle,
 * so libmicrohttpd's idle --timeout never cut it (23 s and counting with --timeout 2).
 * Headers not complete --timeout seconds after the connection opened are cut now, and
 * counted; a kept-alive client that sends whole requests more slowly than that in all is
 * not cut (the deadline starts again after each answer). */
START_TEST(slow_headers_cut_at_timeout)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--timeout", "2", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    int keep = yt_raw_connect(d.port), slow = yt_raw_connect(d.port);
    struct timeval tv = {0, 1000}; /* the slow one's reads: a poll */
    setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const char *part = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    bool cut = false;
    int answered = 0;
    for (size_t i = 0; i < 40 && !cut; i++) { /* 8 s of trickling at most */
        if (i < strlen(part) && !yt_raw_send(slow, part + i, 1))
            cut = true;
        char c;
        errno = 0;
        ssize_t n = recv(slow, &c, 1, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            cut = true;
        if (i % 2 == 0) { /* the kept-alive client: a whole request every 0.4 s */
            const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
            char h[512], b[256];
            ck_assert(yt_raw_send(keep, req, strlen(req)));
            answered += yt_raw_response(keep, h, sizeof h, b, sizeof b) == 200;
        }
        struct timespec ts = {0, 200000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(cut, "a client trickling its headers was not cut in 8 s with --timeout 2");
    double timeouts = yt_metric_wait(&d, "yololoss_header_timeouts_total", 1);
    ck_assert_msg(timeouts == 1, "yololoss_header_timeouts_total %g", timeouts);
    ck_assert_msg(answered >= 5, "the kept-alive client got %d answers", answered);
    char h[512], b[256]; /* still open: one more answer on it */
    const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
    ck_assert(yt_raw_send(keep, req, strlen(req)));
    ck_assert_int_eq(yt_raw_response(keep, h, sizeof h, b, sizeof b), 200);
    close(slow);
    close(keep);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Item 7: small things                                                                  */

/* Wait (bounded: 30 s) for the daemon to exit; its status, or -1 (then it is killed). */
static int wait_exit(yt_daemon *d)
{
    for (int i = 0; i < 3000; i++) {
        int st;
        pid_t w = waitpid(d->pid, &st, WNOHANG);
        if (w == d->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    return -1;
}

/* An error answer that cannot be made (out of memory, injected) for a request answered
 * from the pool: its connection is closed, not left suspended, and SIGTERM still ends the
 * daemon. */
START_TEST(reply_oom_does_not_hang)
{
    setenv("YLOLOSSD_FAULT", "reply-oom", 1);
    yt_daemon d;
    const char *args[] = {"--threads", "1", NULL};
    int started = yt_daemon_start(&d, args, false);
    unsetenv("YLOLOSSD_FAULT");
    ck_assert_int_eq(started, 0);
    /* a body whose error (400: not JSON) is found on the pool, answered suspended */
    const char *head = "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                       "\r\nhello";
    int fd = yt_raw_connect(d.port);
    ck_assert(yt_raw_send(fd, head, strlen(head)));
    char c;
    errno = 0;
    ssize_t n = recv(fd, &c, 1, 0);
    ck_assert_msg(n == 0 || (n < 0 && errno == ECONNRESET),
                  "no end of the connection (recv %zd, errno %d): left suspended", n, errno);
    close(fd);
    kill(d.pid, SIGTERM);
    int rc = wait_exit(&d);
    if (rc != 0)
        yt_daemon_dump(&d);
    ck_assert_int_eq(rc, 0);
    unlink(d.errlog);
}
END_TEST

/* --drain-grace: after SIGTERM ready says 400 at once, requests are still answered during
 * the grace (a load balancer routes a few more before it sees ready), then the daemon
 * drains and exits 0. */
START_TEST(drain_grace_serves_then_stops)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--drain-grace", "10", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_spec ss = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                  .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 3};
    yt_case c;
    yt_case_make(&c, &ss);
    kill(d.pid, SIGTERM);
    yt_resp r;
    long ready = 200;
    for (int i = 0; i < 3000 && ready == 200; i++) {
        ready = yt_get(&d, "/v2/health/ready", &r);
        yt_resp_free(&r);
    }
    ck_assert_int_eq(ready, 400);
    /* within the grace: served, exact */
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    char msg[256];
    ck_assert_msg(yt_infer(&d, &c, &s, &r) == 200, "%ld %s", r.status,
                  yt_error_message(&r, msg, sizeof msg));
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    yt_check_all(&c, &o);
    yt_outputs_free(&o);
    yt_resp_free(&r);
    ck_assert_int_eq(wait_exit(&d), 0);
    unlink(d.errlog);
    yt_case_free(&c);
}
END_TEST

/* libmicrohttpd's own refusals (431 headers too large, 505 version, 400 malformed chunk)
 * come with JSON error bodies, like every other failure, not its HTML pages. */
START_TEST(mhd_errors_are_json)
{
    struct {
        const char *what;
        int want;
    } cases[] = {{"big", 431}, {"GET /v2/health/live HTTP/2.0\r\nHost: t\r\n\r\n", 505},
                 {"POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                  "Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                  400}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *req;
        if (!strcmp(cases[i].what, "big")) {
            size_t n = 300 * 1024;
            req = malloc(n + 256);
            int k = sprintf(req, "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: ");
            memset(req + k, 'a', n);
            strcpy(req + k + n, "\r\n\r\n");
        } else {
            req = strdup(cases[i].what);
        }
        int fd = yt_raw_connect(yt_main.port);
        yt_raw_send(fd, req, strlen(req));
        free(req);
        char h[4096], b[4096], msg[512];
        int st = yt_raw_response(fd, h, sizeof h, b, sizeof b);
        close(fd);
        ck_assert_msg(st == cases[i].want, "case %zu: status %d, want %d", i, st, cases[i].want);
        ck_assert_msg(strstr(h, "application/json") != NULL, "case %zu: %s", i, h);
        ck_assert_msg(is_json_error(b, msg, sizeof msg), "case %zu: not a JSON error: %s", i, b);
    }
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
}
END_TEST

/* What the budget counts comes back: after small requests of every kind (JSON, binary,
 * gzip, refused, failing on the pool), nothing stays counted (no block is large enough to
 * be kept for reuse), so a leak in the accounting cannot creep up to a false 503. */
START_TEST(memory_budget_returns_to_zero)
{
    yt_daemon d;
    const char *args[] = {"--threads", "2", "--max-memory", "256M", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_spec ss = {.num_anchors = 9, .B = 3, .H0 = 2, .W0 = 2, .C = 4, .out_dtype = YL_F16,
                  .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 3, .seed = 21};
    yt_case c;
    yt_case_make(&c, &ss);
    for (int i = 0; i < 20; i++) {
        yt_send s = {.input_mode = i % 4, .output_binary = i % 2 ? -1 : 0,
                     .binary_data_output = i % 3 == 0};
        yt_resp r;
        ck_assert_int_eq(yt_infer(&d, &c, &s, &r), 200);
        yt_resp_free(&r);
        yt_req bad = {.path = "/v2/models/yolov3/infer", .body = "{\"inputs\":[]}", .len = 13};
        ck_assert_int_eq(yt_http(&d, &bad, &r), 400);
        yt_resp_free(&r);
    }
    double used = yt_metric_wait(&d, "yololoss_memory_used_bytes", 0);
    ck_assert_msg(used == 0, "%.0f bytes still counted after the requests", used);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    yt_case_free(&c);
}
END_TEST

Suite *yt_suite_hardening(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("hardening");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, expect_continue_refused_on_headers);
    tcase_add_test(tc, expect_continue_401_on_headers);
    tcase_add_test(tc, json_shape_bounded_by_data);
    tcase_add_test(tc, memory_budget_refuses_past_it);
    tcase_add_test(tc, json_output_capped);
    tcase_add_test(tc, memory_budget_returns_to_zero);
    tcase_add_test(tc, inflight_counts_complete_bodies);
    tcase_add_test(tc, client_gone_during_compute);
    tcase_add_test(tc, client_gone_mid_upload);
    tcase_add_test(tc, client_gone_mid_headers);
    tcase_add_test(tc, slow_headers_cut_at_timeout);
    tcase_add_test(tc, reply_oom_does_not_hang);
    tcase_add_test(tc, drain_grace_serves_then_stops);
    tcase_add_test(tc, mhd_errors_are_json);
    suite_add_tcase(s, tc);
    TCase *pa = tcase_create("limits");
    tcase_set_timeout(pa, 60);
    tcase_add_test(pa, per_address_connection_limit);
    tcase_add_test(pa, memory_budget_counts_inflation);
    suite_add_tcase(s, pa);
    return s;
}
