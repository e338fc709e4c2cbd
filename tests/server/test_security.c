/*
 * test_security.c: the daemon's exposure and limits. It listens on 127.0.0.1 unless told
 * otherwise; oversized headers, JSON nested too deep, too many inputs, too many dims and
 * shapes whose element count or byte size overflows are refused with a 4xx and a message;
 * the dashboard serves only its embedded files (no path traversal, raw or percent-encoded).
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A raw request (sent as is: no path normalization); its status, the response in out. */
static int raw_http(unsigned port, const char *req, char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    size_t n = strlen(req), off = 0;
    while (off < n) {
        ssize_t k = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    size_t got = 0;
    for (;;) {
        ssize_t k = recv(fd, out + got, cap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
        if (got == cap - 1)
            break;
    }
    out[got] = '\0';
    close(fd);
    int status = 0;
    sscanf(out, "HTTP/1.%*d %d", &status);
    return status;
}

START_TEST(binds_loopback_by_default)
{
    const char *path = getenv("YL_DAEMON");
    if (!path || !*path)
        path = "build/yololossd";
    char errlog[128];
    snprintf(errlog, sizeof errlog, "/tmp/yololossd-test-bind-%d.err", (int)getpid());
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int e = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int o = open("/dev/null", O_WRONLY);
        dup2(e, 2);
        dup2(o, 1);
        execl(path, path, "--port", "0", "--history", "none", (char *)NULL);
        _exit(127);
    }
    char line[512] = "";
    bool found = false;
    for (int i = 0; i < 2000 && !found; i++) { /* at most 20 s */
        FILE *f = fopen(errlog, "r");
        if (f) {
            while (!found && fgets(line, sizeof line, f))
                found = strstr(line, "listening on ") != NULL;
            fclose(f);
        }
        if (!found) {
            struct timespec ts = {0, 10000000L};
            nanosleep(&ts, NULL);
        }
    }
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    unlink(errlog);
    ck_assert_msg(found, "no \"listening on\" line");
    ck_assert_msg(strstr(line, "listening on http://127.0.0.1:") != NULL, "%s", line);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

START_TEST(no_path_traversal)
{
    static const char *const paths[] = {
        "/../etc/passwd", "/assets/../../etc/passwd", "/assets/../server/http.c",
        "/assets/%2e%2e/%2e%2e/etc/passwd", "/assets/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/assets/..%2f..%2fetc%2fpasswd", "/assets/....//....//etc/passwd",
        "/assets//etc/passwd", "/assets/%00index.html",
        "/assets/app.js/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
        "/assets/\\..\\..\\etc\\passwd", "/assets/embed.py", "/assets/package.json",
    };
    /* (index.html%00.js is index.html: libmicrohttpd decodes the NUL, the name ends there) */
    static char resp[1 << 16];
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char req[512];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                 paths[i]);
        int st = raw_http(yt_main.port, req, resp, sizeof resp);
        ck_assert_msg(st >= 400 && st < 500, "GET %s: status %d", paths[i], st);
        ck_assert_msg(strstr(resp, "root:") == NULL && strstr(resp, "#include") == NULL,
                      "GET %s leaked a file", paths[i]);
    }
    /* the embedded files are there */
    char req[] = "GET /assets/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    ck_assert_int_eq(raw_http(yt_main.port, req, resp, sizeof resp), 200);
}
END_TEST

START_TEST(oversized_headers_refused)
{
    size_t n = 300 * 1024;
    char *req = malloc(n + 256);
    int k = sprintf(req, "GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset(req + k, 'a', n);
    strcpy(req + k + n, "\r\nConnection: close\r\n\r\n");
    static char resp[1 << 16];
    int st = raw_http(yt_main.port, req, resp, sizeof resp);
    free(req);
    /* libmicrohttpd answers 431 (or 413 in older versions) past its 256 KiB per connection,
     * or closes the connection (0) */
    ck_assert_msg(st == 431 || st == 413 || st == 0, "status %d", st);
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
}
END_TEST

/* POST body to yolov3's infer; expect a 400 whose message contains want. */
static void expect_400(const char *body, const char *want)
{
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = body, .len = strlen(body)};
    req.headers[0] = "Expect:";
    yt_resp r;
    long st = yt_http(&yt_main, &req, &r);
    char msg[512];
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(st == 400, "status %ld (%s), want 400 for %.60s", st, msg, body);
    ck_assert_msg(strstr(msg, want) != NULL, "message \"%s\" lacks \"%s\"", msg, want);
    yt_resp_free(&r);
}

START_TEST(json_depth_limited)
{
    size_t depth = 100000;
    char *b = malloc(2 * depth + 32);
    int k = sprintf(b, "{\"inputs\": ");
    memset(b + k, '[', depth);
    memset(b + k + depth, ']', depth);
    strcpy(b + k + 2 * depth, "}");
    expect_400(b, "deep");
    free(b);
}
END_TEST

START_TEST(inputs_dims_elements_limited)
{
    /* too many inputs */
    char *b = malloc(1 << 16);
    int k = sprintf(b, "{\"inputs\": [");
    for (int i = 0; i < 100; i++)
        k += sprintf(b + k, "%s{\"name\": \"output_0\", \"datatype\": \"FP32\", \"shape\": [1], "
                            "\"data\": [1]}", i ? "," : "");
    sprintf(b + k, "]}");
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = b, .len = strlen(b)};
    req.headers[0] = "Expect:";
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 400);
    yt_resp_free(&r);
    free(b);
    /* too many dims */
    expect_400("{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP32\", "
               "\"shape\": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1], \"data\": [1]}]}",
               "dim");
    /* element counts and byte sizes that overflow 64 bits */
    expect_400("{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP32\", "
               "\"shape\": [4294967296,4294967296,16,255], \"data\": [1]}]}",
               "more elements than");
    expect_400("{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP64\", "
               "\"shape\": [2305843009213693952,1,1,1], \"data\": [1]}]}",
               "too large");
    expect_400("{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP32\", "
               "\"shape\": [9223372036854775807,9223372036854775807,1,255], \"data\": [1]}]}",
               "more elements than");
    /* the daemon is fine */
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
}
END_TEST

Suite *yt_suite_security(void)
{
    Suite *s = suite_create("security");
    TCase *tc = tcase_create("security");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, binds_loopback_by_default);
    tcase_add_test(tc, no_path_traversal);
    tcase_add_test(tc, oversized_headers_refused);
    tcase_add_test(tc, json_depth_limited);
    tcase_add_test(tc, inputs_dims_elements_limited);
    suite_add_tcase(s, tc);
    return s;
}
