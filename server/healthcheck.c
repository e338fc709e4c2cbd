/*
 * healthcheck.c: `yololossd --healthcheck [URL]`, a tiny HTTP client for container health
 * checks (the image has no curl): GET URL (default YLS_HEALTHCHECK_URL) over a plain socket,
 * exit status 0 when the answer is HTTP 200, 1 otherwise (refused, timed out, other status,
 * bad URL), everything within YLS_HEALTHCHECK_TIMEOUT seconds. http:// only.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define YLS_HEALTHCHECK_URL "http://127.0.0.1:8000/v2/health/ready"
#define YLS_HEALTHCHECK_TIMEOUT 3


static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Wait for events on fd until the deadline: 0, or -1 (timeout or error). */
static int wait_fd(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)ms_left(deadline));
        if (n > 0)
            return 0;
        if (n == 0 || errno != EINTR)
            return -1;
    }
}

/* http://HOST[:PORT][/PATH] into its parts. 0 or -1. */
static int parse_url(const char *url, char *host, size_t hlen, char *port, size_t plen,
                     const char **path)
{
    if (strncmp(url, "http://", 7))
        return -1;
    const char *h = url + 7, *end = h + strcspn(h, "/?#");
    const char *hend = end, *p = NULL;
    if (*h == '[') { /* [v6]:port */
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close)
            return -1;
        if (close + 1 < end && close[1] == ':')
            p = close + 2;
        else if (close + 1 != end)
            return -1;
        h++;
        hend = close;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        if (colon) {
            p = colon + 1;
            hend = colon;
        }
    }
    if (hend == h || (size_t)(hend - h) >= hlen)
        return -1;
    memcpy(host, h, (size_t)(hend - h));
    host[hend - h] = '\0';
    if (p) {
        if (p == end || (size_t)(end - p) >= plen || strspn(p, "0123456789") < (size_t)(end - p))
            return -1;
        memcpy(port, p, (size_t)(end - p));
        port[end - p] = '\0';
    } else {
        snprintf(port, plen, "80");
    }
    *path = *end == '/' ? end : "/";
    return 0;
}

int yls_healthcheck(const char *url)
{
    if (!url)
        url = YLS_HEALTHCHECK_URL;
    char host[256], port[8];
    const char *path;
    int fd = -1, ok = 0;
    struct addrinfo *ai = NULL;
    const char *why = "?";
    char req[2048], buf[64];
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += YLS_HEALTHCHECK_TIMEOUT;
    if (parse_url(url, host, sizeof host, port, sizeof port, &path)) {
        why = "not an http://HOST[:PORT]/PATH URL";
        goto cleanup;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai) {
        why = gai_strerror(gai);
        goto cleanup;
    }
    why = "cannot connect";
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        int err = 0;
        socklen_t elen = sizeof err;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 ||
            (errno == EINPROGRESS && wait_fd(fd, POLLOUT, &deadline) == 0 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0))
            break;
        why = err ? strerror(err) : errno == EINPROGRESS ? "timed out" : strerror(errno);
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        goto cleanup;
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: " YLS_NAME
                       "-healthcheck\r\nConnection: close\r\n\r\n",
                       path, host, port);
    if (len < 0 || (size_t)len >= sizeof req) {
        why = "URL too long";
        goto cleanup;
    }
    for (int sent = 0; sent < len;) {
        if (wait_fd(fd, POLLOUT, &deadline)) {
            why = "timed out sending";
            goto cleanup;
        }
        ssize_t n = send(fd, req + sent, (size_t)(len - sent), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            why = strerror(errno);
            goto cleanup;
        }
        sent += n > 0 ? (int)n : 0;
    }
    size_t got = 0;
    while (got < 12) { /* "HTTP/1.1 200" */
        if (wait_fd(fd, POLLIN, &deadline)) {
            why = "timed out waiting for the answer";
            goto cleanup;
        }
        ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (n == 0) {
            why = "connection closed without an answer";
            goto cleanup;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            why = strerror(errno);
            goto cleanup;
        }
        got += n > 0 ? (size_t)n : 0;
    }
    buf[got] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    ok = !strncmp(buf, "HTTP/1.", 7) && !strncmp(buf + 8, " 200", 4) &&
         (buf[12] == ' ' || buf[12] == '\0');
    why = buf;
cleanup:
    if (fd >= 0)
        close(fd);
    if (ai)
        freeaddrinfo(ai);
    if (!ok)
        fprintf(stderr, YLS_NAME " --healthcheck %s: %s\n", url, why);
    return ok ? 0 : 1;
}
