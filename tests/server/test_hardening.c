/*
 * test_hardening.c: what a careless or hostile client can do to the daemon (issue 11).
 * Refusals decided from the headers reach a client that sent "Expect: 100-continue"
 * before any body byte (raw sockets: the first line the daemon sends is the final
 * status, never "100 Continue").
 * Waits are bounded; nothing asserts on durations.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP                                                                             */

static int raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {20, 0}; /* a bound on every read: a hang fails, it does not block */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static bool raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return false;
        c += k;
        n -= (size_t)k;
    }
    return true;
}

/* One response: its status (0: the connection closed or timed out first); the head in
 * head, the body (Content-Length bytes) in body. Reads the head byte by byte so that
 * nothing after this response is consumed. */
static int raw_response(int fd, char *head, size_t hcap, char *body, size_t bcap)
{
    size_t n = 0;
    head[0] = body[0] = '\0';
    while (n + 1 < hcap) {
        ssize_t k = recv(fd, head + n, 1, 0);
        if (k <= 0)
            return 0;
        n++;
        head[n] = '\0';
        if (n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4))
            break;
    }
    int status = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    size_t len = 0;
    for (const char *p = head; (p = strstr(p, "\r\n")) != NULL; p += 2)
        if (!strncasecmp(p + 2, "Content-Length:", 15))
            len = strtoul(p + 17, NULL, 10);
    size_t got = 0;
    while (got < len && got + 1 < bcap) {
        ssize_t k = recv(fd, body + got, len - got < bcap - 1 - got ? len - got : bcap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    body[got] = '\0';
    return status;
}

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
    int fd = raw_connect(port);
    ck_assert(raw_send(fd, head, strlen(head)));
    char h[4096], b[4096], msg[512];
    int st = raw_response(fd, h, sizeof h, b, sizeof b);
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
    int fd = raw_connect(port);
    ck_assert(raw_send(fd, head, strlen(head)));
    static char h[8192], b[1 << 16];
    ck_assert_int_eq(raw_response(fd, h, sizeof h, b, sizeof b), 100);
    ck_assert(raw_send(fd, body, len));
    ck_assert_int_eq(raw_response(fd, h, sizeof h, b, sizeof b), 200);
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

Suite *yt_suite_hardening(void)
{
    Suite *s = suite_create("hardening");
    TCase *tc = tcase_create("hardening");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, expect_continue_refused_on_headers);
    tcase_add_test(tc, expect_continue_401_on_headers);
    tcase_add_test(tc, json_shape_bounded_by_data);
    suite_add_tcase(s, tc);
    return s;
}
