/*
 * fake_server.c: the scripted HTTP server of fake_server.h, one thread. Every answer says
 * "Connection: close", so each attempt of a client arrives on a new connection and is
 * counted once.
 */
#define _GNU_SOURCE /* memmem */
#include "fake_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct fake_server {
    int lfd;
    int stop[2]; /* a byte on stop[1] ends the thread */
    pthread_t thread;
    const fake_step *script;
    int n;
    fake_step after;
    pthread_mutex_t mu;
    int requests;
    char url[64];
    const char *v2_body; /* NULL: GET /v2 goes through the script */
    int register_status;
    int registrations;
    int last_shm;
    int last_gzip; /* the last counted request accepted a content coding */
};

static const char ok_body[] =
    "{\"model_name\":\"yolov3\",\"model_version\":\"1\",\"outputs\":["
    "{\"name\":\"loss\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[2.5]},"
    "{\"name\":\"loss_terms\",\"datatype\":\"FP32\",\"shape\":[4],\"data\":[1,0.5,0.75,0.25]},"
    "{\"name\":\"layer_terms\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,0.5,0.75,0.25]},"
    "{\"name\":\"image_terms\",\"datatype\":\"FP32\",\"shape\":[1,4],\"data\":[1,0.5,0.75,0.25]},"
    "{\"name\":\"stats\",\"datatype\":\"FP32\",\"shape\":[1,8],\"data\":[0,0,0,0,0,0,0,0]}]}";

/* Wait until fd is readable; 0 when the server is asked to stop first. */
static int readable(fake_server *f, int fd)
{
    struct pollfd p[2] = {{fd, POLLIN, 0}, {f->stop[0], POLLIN, 0}};
    for (;;) {
        if (poll(p, 2, -1) < 0)
            continue;
        if (p[1].revents)
            return 0;
        if (p[0].revents)
            return 1;
    }
}

/* Read one request (headers and a Content-Length body) into line (its request line) and
 * *shm (whether it mentions shared_memory_region). -1: the peer left or stop. */
static int read_request(fake_server *f, int fd, char *line, size_t linelen, int *shm,
                        int *gzip)
{
    char buf[8192];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len == sizeof buf - 1 || !readable(f, fd))
            return -1;
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0)
            return -1;
        len += (size_t)k;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    long body = 0;
    for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
            body = strtol(h + 17, NULL, 10);
    size_t ll = strcspn(buf, "\r");
    snprintf(line, linelen, "%.*s", (int)(ll < linelen ? ll : linelen - 1), buf);
    *shm = strstr(end, "shared_memory_region") != NULL;
    *end = '\0';
    *gzip = strcasestr(buf, "\r\nAccept-Encoding:") != NULL;
    long have = (long)(len - (size_t)(end + 4 - buf));
    while (have < body) {
        if (!readable(f, fd))
            return -1;
        ssize_t k = recv(fd, buf, sizeof buf - 1, 0);
        if (k <= 0)
            return -1;
        buf[k] = '\0';
        if (memmem(buf, (size_t)k, "shared_memory_region", 20))
            *shm = 1;
        have += k;
    }
    return 0;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void answer(int fd, int status, const char *retry_after, const char *body)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s%s%sConnection: close\r\n\r\n",
                     status, status == 200 ? "OK" : "Unavailable", strlen(body),
                     retry_after ? "Retry-After: " : "", retry_after ? retry_after : "",
                     retry_after ? "\r\n" : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

static void *serve(void *arg)
{
    fake_server *f = arg;
    for (;;) {
        if (!readable(f, f->lfd))
            return NULL;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        char line[256];
        int shm = 0, gzip = 0;
        if (read_request(f, fd, line, sizeof line, &shm, &gzip) != 0) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&f->mu);
        const char *v2_body = f->v2_body;
        int register_status = f->register_status;
        pthread_mutex_unlock(&f->mu);
        if (v2_body && !strcmp(line, "GET /v2 HTTP/1.1")) {
            answer(fd, 200, NULL, v2_body);
            close(fd);
            continue;
        }
        if (v2_body && !strncmp(line, "POST /v2/systemsharedmemory/", 28)) {
            pthread_mutex_lock(&f->mu);
            f->registrations += strstr(line, "/register ") != NULL;
            pthread_mutex_unlock(&f->mu);
            answer(fd, strstr(line, "/register ") ? register_status : 200, NULL,
                   "{\"error\":\"fake: cannot open shared-memory key\"}");
            close(fd);
            continue;
        }
        pthread_mutex_lock(&f->mu);
        int i = f->requests++;
        f->last_shm = shm;
        f->last_gzip = gzip;
        pthread_mutex_unlock(&f->mu);
        const fake_step *s = i < f->n ? &f->script[i] : &f->after;
        if (s->act == FAKE_OK) {
            answer(fd, 200, NULL, ok_body);
        } else if (s->act == FAKE_STATUS) {
            answer(fd, s->status, s->retry_after, "{\"error\":\"fake: retry later\"}");
        } else if (s->act == FAKE_RESET) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        } else if (s->act == FAKE_HANG) {
            char b[256];
            while (readable(f, fd) && recv(fd, b, sizeof b, 0) > 0)
                ;
        }
        close(fd);
    }
}

fake_server *fake_start(const fake_step *script, int n, fake_step after)
{
    fake_server *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->script = script;
    f->n = n;
    f->after = after;
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->lfd, 16) != 0 || getsockname(f->lfd, (struct sockaddr *)&a, &al) != 0 ||
        pipe(f->stop) != 0) {
        if (f->lfd >= 0)
            close(f->lfd);
        free(f);
        return NULL;
    }
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    if (pthread_create(&f->thread, NULL, serve, f) != 0) {
        close(f->lfd);
        close(f->stop[0]);
        close(f->stop[1]);
        free(f);
        return NULL;
    }
    return f;
}

const char *fake_url(const fake_server *f) { return f->url; }

void fake_set_meta(fake_server *f, const char *v2_body, int register_status)
{
    pthread_mutex_lock(&f->mu);
    f->v2_body = v2_body;
    f->register_status = register_status;
    pthread_mutex_unlock(&f->mu);
}

/* A counter the server thread writes, read under its lock. */
static int read_locked(fake_server *f, const int *v)
{
    pthread_mutex_lock(&f->mu);
    int n = *v;
    pthread_mutex_unlock(&f->mu);
    return n;
}

int fake_registrations(fake_server *f) { return read_locked(f, &f->registrations); }

int fake_last_accepted_coding(fake_server *f) { return read_locked(f, &f->last_gzip); }

int fake_last_used_shm(fake_server *f) { return read_locked(f, &f->last_shm); }

int fake_requests(fake_server *f) { return read_locked(f, &f->requests); }

void fake_stop(fake_server *f)
{
    if (!f)
        return;
    if (write(f->stop[1], "x", 1) != 1)
        perror("fake_stop");
    pthread_join(f->thread, NULL);
    close(f->lfd);
    close(f->stop[0]);
    close(f->stop[1]);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void fake_refusing_url(char *buf, unsigned long len)
{
    /* bind a free port and close it without listening: nothing takes it at once */
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int port = 9;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    snprintf(buf, len, "http://127.0.0.1:%d", port);
}
