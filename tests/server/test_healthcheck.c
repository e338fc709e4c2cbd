/*
 * test_healthcheck.c: `yololossd --healthcheck [URL]`, the client mode of the container's
 * HEALTHCHECK: exit 0 on HTTP 200 only; 1 on another status, a refused connection, a bad
 * URL, or a server that accepts and never answers (after its 3 s limit; the test waits for
 * it to end by itself, bounded, and asserts no upper bound on the time).
 */
#include "harness.h"

#include <arpa/inet.h>
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

/* yololossd --healthcheck [url]: its exit status (stderr to /dev/null). */
static int healthcheck(const char *url)
{
    const char *path = getenv("YL_DAEMON");
    if (!path || !*path)
        path = "build/yololossd";
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(path, path, "--healthcheck", url, (char *)NULL);
        _exit(127);
    }
    /* it must end on its own (a healthcheck that hangs would hang the container's checks):
     * a bounded wait, generous for a loaded machine, instead of a duration asserted */
    int st;
    pid_t w = 0;
    for (int i = 0; i < 6000 && (w = waitpid(pid, &st, WNOHANG)) == 0; i++)
        yt_nap_ms(10);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        ck_abort_msg("yololossd --healthcheck %s still running after 60 s", url);
    }
    ck_assert_int_eq(w, pid);
    ck_assert(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A listening socket on 127.0.0.1 that never answers; its port in *port. */
static int silent_listener(unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

START_TEST(healthcheck_exit_status)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/health/ready", yt_main.port);
    ck_assert_int_eq(healthcheck(url), 0);
    snprintf(url, sizeof url, "http://localhost:%u/v2/health/live", yt_main.port);
    ck_assert_int_eq(healthcheck(url), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/no-such-thing", yt_main.port);
    ck_assert_int_eq(healthcheck(url), 1); /* 404 */
    ck_assert_int_eq(healthcheck("ftp://127.0.0.1/"), 1);
    ck_assert_int_eq(healthcheck("http://127.0.0.1:notaport/"), 1);
    /* a closed port: a listener closed at once */
    unsigned port;
    close(silent_listener(&port));
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/health/ready", port);
    ck_assert_int_eq(healthcheck(url), 1);
}
END_TEST

START_TEST(healthcheck_times_out)
{
    unsigned port;
    int fd = silent_listener(&port); /* accepts (the backlog) and never answers */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/health/ready", port);
    double t0 = now_s();
    ck_assert_int_eq(healthcheck(url), 1); /* gave up by itself (bounded wait above) */
    double dt = now_s() - t0;
    ck_assert_msg(dt >= 2.5, "gave up after %.1f s, before its 3 s limit", dt);
    close(fd);
}
END_TEST

Suite *yt_suite_healthcheck(void)
{
    Suite *s = suite_create("healthcheck");
    TCase *tc = tcase_create("healthcheck");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, healthcheck_exit_status);
    tcase_add_test(tc, healthcheck_times_out);
    suite_add_tcase(s, tc);
    return s;
}
