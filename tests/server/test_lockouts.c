/*
 * test_lockouts.c: what one client can do to every other client through the transport and
 * the daemon's resources: request framing (two Content-Lengths), the listening socket
 * (--host :: takes IPv4 too), the per-address count (IPv6 clients by prefix), uploads that
 * never send their bodies, answers read too slowly, descriptors.
 * Waits are bounded; nothing asserts on durations.
 */
#include "harness.h"

#include "server.h" /* peers.c, linked in: its keys are checked without a network */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Two Content-Length headers that disagree: 400 (a proxy in front may have framed the body
 * by the other one); one value repeated is taken. */
START_TEST(two_content_lengths_refused)
{
    const char *req = "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\n"
                      "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}";
    int fd = yt_raw_connect(yt_main.port);
    ck_assert(yt_raw_send(fd, req, strlen(req)));
    char h[2048], b[2048];
    int st = yt_raw_response(fd, h, sizeof h, b, sizeof b);
    close(fd);
    ck_assert_msg(st == 400, "got %d for two Content-Lengths:\n%s%s", st, h, b);
    ck_assert_msg(strstr(b, "Content-Length"), "%s", b);
    /* the same value twice is one length */
    req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
    fd = yt_raw_connect(yt_main.port);
    ck_assert(yt_raw_send(fd, req, strlen(req)));
    st = yt_raw_response(fd, h, sizeof h, b, sizeof b);
    close(fd);
    ck_assert_msg(st == 200, "got %d:\n%s", st, h);
}
END_TEST

/* --host :: listens on every address, IPv4 included, as --help says. */
START_TEST(host_any_is_dual_stack)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    if (probe < 0) {
        fprintf(stderr, "host_any_is_dual_stack: skipped, no IPv6 here (%s)\n", strerror(errno));
        return;
    }
    close(probe);
    yt_daemon d;
    const char *args[] = {"--host", "::", "--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp resp;
    long st = yt_get(&d, "/v2/health/live", &resp); /* the harness connects to 127.0.0.1 */
    ck_assert_msg(st == 200, "IPv4 on --host ::: %ld (%s)", st, resp.error);
    yt_resp_free(&resp);
    /* and IPv6 */
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)d.port)};
    sa.sin6_addr = in6addr_loopback;
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "[::1]: %s",
                  strerror(errno));
    const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";
    ck_assert(yt_raw_send(fd, req, strlen(req)));
    char h[1024], b[256];
    ck_assert_int_eq(yt_raw_response(fd, h, sizeof h, b, sizeof b), 200);
    close(fd);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
}
END_TEST

static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    ck_assert_int_eq(inet_pton(AF_INET6, text, &sa.sin6_addr), 1);
    return sa;
}

/* The per-address count: the addresses of one /64 are one client (each would otherwise have
 * its own quota); --ipv6-prefix 128 counts each address; an IPv4 client of a dual-stack
 * socket is its IPv4 address. peers.c itself, without a network. */
START_TEST(ipv6_clients_counted_by_prefix)
{
    struct sockaddr_in6 a = v6("2001:db8:1:2::10"), b = v6("2001:db8:1:2:ffff::99"),
                        other = v6("2001:db8:1:3::10");
    struct sockaddr_in6 m1 = v6("::ffff:192.0.2.1"), m2 = v6("::ffff:192.0.2.2");
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.1", &v4.sin_addr);
    yls_peer_ipv6_prefix(64);
    yls_peer_opened((struct sockaddr *)&a);
    yls_peer_opened((struct sockaddr *)&a);
    ck_assert(!yls_peer_admit((struct sockaddr *)&b, 2)); /* same /64: its quota is used */
    ck_assert(yls_peer_admit((struct sockaddr *)&b, 3));
    ck_assert(yls_peer_admit((struct sockaddr *)&other, 2)); /* the next /64 */
    yls_peer_opened((struct sockaddr *)&m1);
    ck_assert(!yls_peer_admit((struct sockaddr *)&v4, 1)); /* ::ffff:192.0.2.1 is 192.0.2.1 */
    ck_assert(yls_peer_admit((struct sockaddr *)&m2, 1));  /* not all of IPv4 in one key */
    yls_peer_closed((struct sockaddr *)&m1);
    yls_peer_closed((struct sockaddr *)&b); /* b's key is a's */
    ck_assert(yls_peer_admit((struct sockaddr *)&a, 2));
    yls_peer_closed((struct sockaddr *)&a);
    /* per address */
    yls_peer_ipv6_prefix(128);
    yls_peer_opened((struct sockaddr *)&a);
    ck_assert(yls_peer_admit((struct sockaddr *)&b, 1));
    ck_assert(!yls_peer_admit((struct sockaddr *)&a, 1));
    yls_peer_closed((struct sockaddr *)&a);
    /* an odd prefix: /60 keeps the top 4 bits of the 8th byte */
    yls_peer_ipv6_prefix(60);
    struct sockaddr_in6 c = v6("2001:db8:1:20::1"), e = v6("2001:db8:1:2f::1"),
                        g = v6("2001:db8:1:30::1");
    yls_peer_opened((struct sockaddr *)&c);
    ck_assert(!yls_peer_admit((struct sockaddr *)&e, 1));
    ck_assert(yls_peer_admit((struct sockaddr *)&g, 1));
    yls_peer_closed((struct sockaddr *)&c);
}
END_TEST

static const yt_spec small_spec = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2,
                                   .out_dtype = YL_F32, .truth = YT_BOXES,
                                   .truth_dtype = YL_F32, .T = 2, .seed = 3};

/* Send an infer request's headers declaring len body bytes (with Expect: 100-continue when
 * expect), no body; the socket. */
static int headers_only(unsigned port, unsigned long len, bool expect)
{
    int fd = yt_raw_connect(port);
    char head[320];
    snprintf(head, sizeof head,
             "POST /v2/models/yolov3/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %lu\r\n"
             "Inference-Header-Content-Length: 100\r\n%s\r\n",
             len, expect ? "Expect: 100-continue\r\n" : "");
    ck_assert(yt_raw_send(fd, head, strlen(head)));
    return fd;
}

/* Headers that declare a large body, and no body: nothing is held for bytes that have not
 * come, and a promise of memory is kept only by an upload that sends. Held up front (the
 * body and twice its size), the first of these took a 96 MiB budget, the others got 503,
 * and so did every other request until --timeout. Now each holds a first buffer, an upload
 * that sent nothing for 2 s loses its promise to the next one, a small request is answered
 * meanwhile, and a real upload of the same size is still admitted ("100 Continue"). The
 * naps are the 2 s grace (the behaviour under test), nothing is timed. */
START_TEST(headers_only_uploads_hold_nothing)
{
    yt_daemon d;
    const char *args[] = {"--threads", "1", "--max-memory", "96M", "--timeout", "120", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_case small;
    yt_case_make(&small, &small_spec);
    yt_send s = {.input_mode = 0, .output_binary = -1, .binary_data_output = true};
    enum { N = 3 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = headers_only(d.port, 30000000, false);
        double up = yt_metric_wait(&d, "yololoss_uploading_requests", i + 1);
        ck_assert_msg(up == i + 1, "%.0f of %d headers-only uploads admitted", up, i + 1);
        yt_nap_ms(2500);
    }
    double used = yt_metric(&d, "yololoss_memory_used_bytes");
    ck_assert_msg(used < 4e6, "%.0f bytes of the budget held by %d bodies not sent", used, N);
    ck_assert_int_ge(yt_metric(&d, "yololoss_upload_promises_dropped_total"), N - 1);
    yt_resp r;
    char msg[512];
    long st = yt_infer(&d, &small, &s, &r);
    ck_assert_msg(st == 200, "a small request beside %d headers-only uploads: %ld %s", N, st,
                  yt_error_message(&r, msg, sizeof msg));
    yt_resp_free(&r);
    int big = headers_only(d.port, 30000000, true);
    char h[2048], b[2048];
    int first = yt_raw_response(big, h, sizeof h, b, sizeof b);
    ck_assert_msg(first == 100, "an upload beside %d stalled ones: %d %s", N, first, b);
    close(big);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ck_assert_int_eq(yt_metric_wait(&d, "yololoss_uploading_requests", 0), 0);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    yt_case_free(&small);
}
END_TEST

Suite *yt_suite_lockouts(void)
{
    Suite *s = suite_create("lockouts");
    TCase *tc = tcase_create("transport");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, two_content_lengths_refused);
    tcase_add_test(tc, host_any_is_dual_stack);
    tcase_add_test(tc, ipv6_clients_counted_by_prefix);
    suite_add_tcase(s, tc);
    tc = tcase_create("resources");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, headers_only_uploads_hold_nothing);
    suite_add_tcase(s, tc);
    return s;
}
