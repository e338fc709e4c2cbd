/*
 * harness.c: starting and stopping the daemon, and HTTP with libcurl.
 */
#include <dirent.h>
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

yt_daemon yt_main, yt_small;

void yt_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void yt_temp_history(char *path, size_t len, const char *tag)
{
    static int n;
    snprintf(path, len, "/tmp/yololossd-test-%s-%d-%d.sqlite", tag, (int)getpid(), n++);
    unlink(path);
}

void yt_remove_history(const char *path)
{
    char p[300];
    const char *ext[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        unlink(p);
    }
}

void yt_token_file(char *path, const char *token)
{
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, token, strlen(token)), (ssize_t)strlen(token));
    close(fd);
}

/* ------------------------------------------------------------------------------------ */
/* Daemons                                                                              */

int yt_daemon_start(yt_daemon *d, const char *const *args, bool keep_stdout)
{
    static int counter;
    memset(d, 0, sizeof *d);
    const char *path = getenv("YL_DAEMON");
    if (!path || !*path)
        path = "build/yololossd";
    snprintf(d->errlog, sizeof d->errlog, "/tmp/yololossd-test-%d-%d.err", (int)getpid(),
             counter);
    if (keep_stdout)
        snprintf(d->outlog, sizeof d->outlog, "/tmp/yololossd-test-%d-%d.out", (int)getpid(),
                 counter);
    counter++;
    /* --history none unless args say otherwise (the last flag wins) */
    const char *argv[32] = {path, "--host", "127.0.0.1", "--port", "0", "--history", "none"};
    int argc = 7;
    for (int i = 0; args && args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    /* a log left by an earlier run whose test process had this pid (pids wrap at 32768 on a
     * busy machine, and a failed test keeps its logs) must not be read for this daemon's
     * "listening on" line (its port is long gone): the child creates it anew */
    unlink(d->errlog);
    if (keep_stdout)
        unlink(d->outlog); /* the same for the access log */
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int e = open(d->errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int o = open(keep_stdout ? d->outlog : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (e < 0 || o < 0)
            _exit(126);
        dup2(e, 2);
        dup2(o, 1);
        execv(path, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    /* wait for "listening on http://ADDR:PORT" (no time limit but the daemon's life); ADDR
     * is 127.0.0.1 unless args gave another --host ([::] for IPv6) */
    for (;;) {
        FILE *f = fopen(d->errlog, "r");
        if (f) {
            char line[512];
            while (fgets(line, sizeof line, f)) {
                const char *p = strstr(line, "listening on http://");
                const char *colon = p ? strrchr(p, ':') : NULL;
                if (colon && colon > p + strlen("listening on http")) {
                    d->port = (unsigned)atoi(colon + 1);
                    fclose(f);
                    return d->port ? 0 : -1;
                }
            }
            fclose(f);
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "the daemon exited before listening:\n");
            yt_daemon_dump(d);
            d->pid = 0;
            return -1;
        }
        yt_nap_ms(5);
    }
}

static int exit_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int yt_daemon_wait(yt_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    int st;
    while (waitpid(d->pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    d->pid = 0;
    return exit_status(st);
}

int yt_daemon_stop(yt_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    return yt_daemon_wait(d);
}

const char *yt_daemon_state(const yt_daemon *d, char *buf, size_t len)
{
    int st;
    pid_t w = d->pid > 0 ? waitpid(d->pid, &st, WNOHANG) : -1;
    if (w == 0)
        snprintf(buf, len, "the daemon (pid %d) is running", (int)d->pid);
    else if (w == d->pid) {
        snprintf(buf, len, "the daemon (pid %d) is gone: exit status %d; its stderr is %s",
                 (int)d->pid, exit_status(st), d->errlog);
    } else
        snprintf(buf, len, "no daemon");
    return buf;
}

void yt_daemon_dump(const yt_daemon *d)
{
    FILE *f = fopen(d->errlog, "r");
    if (!f)
        return;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fclose(f);
}

/* ------------------------------------------------------------------------------------ */
/* Gates                                                                                */

void yt_gate_init(yt_gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
}

void yt_gate_wait_started(yt_gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->started)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void yt_gate_release(yt_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->released = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ------------------------------------------------------------------------------------ */
/* HTTP                                                                                 */

typedef struct {
    char *p;
    size_t len, cap;
} growbuf;

static size_t grow_append(growbuf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static size_t on_data(char *data, size_t size, size_t n, void *ud)
{
    return grow_append(ud, data, size * n);
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    const yt_req *req = ud;
    yt_gate *g = req->gate;
    pthread_mutex_lock(&g->mu);
    if (!g->started) {
        g->started = true;
        pthread_cond_broadcast(&g->cv);
    }
    while (!g->released)
        pthread_cond_wait(&g->cv, &g->mu);
    size_t left = req->len - g->pos, k = size * n < left ? size * n : left;
    memcpy(buf, (const char *)req->body + g->pos, k);
    g->pos += k;
    pthread_mutex_unlock(&g->mu);
    return k;
}

long yt_http(const yt_daemon *d, const yt_req *req, yt_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(resp->error, sizeof resp->error, "curl_easy_init failed");
        return 0;
    }
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", d->port, req->path);
    growbuf body = {0}, headers = {0};
    struct curl_slist *hl = NULL;
    for (int i = 0; i < 8 && req->headers[i]; i++)
        hl = curl_slist_append(hl, req->headers[i]);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
    if (req->body || req->gate) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
        if (req->gate) {
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h, CURLOPT_READDATA, req);
            curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 3600000L);
            hl = curl_slist_append(hl, "Expect: 100-continue");
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
        }
    }
    if (req->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->method && !strcmp(req->method, "HEAD"))
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    CURLcode rc = curl_easy_perform(h);
    if (req->gate) {
        /* a request answered or failed before its body was asked for (refused on its
         * headers, connection lost) never reaches on_read: its waiter must not wait forever,
         * it finds the status in resp */
        pthread_mutex_lock(&req->gate->mu);
        req->gate->started = true;
        pthread_cond_broadcast(&req->gate->cv);
        pthread_mutex_unlock(&req->gate->mu);
    }
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    } else {
        snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(rc));
        resp->status = 0;
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    if (!body.p)
        grow_append(&body, "", 0);
    resp->body = body.p;
    resp->len = body.len;
    resp->headers = headers.p;
    return resp->status;
}

long yt_get(const yt_daemon *d, const char *path, yt_resp *resp)
{
    yt_req req = {.path = path};
    return yt_http(d, &req, resp);
}

const char *yt_header(const yt_resp *r, const char *name, char *buf, size_t len)
{
    if (!r->headers)
        return NULL;
    size_t n = strlen(name);
    const char *p = r->headers;
    const char *found = NULL;
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            eol = p + strlen(p);
        if ((size_t)(eol - p) > n && !strncasecmp(p, name, n) && p[n] == ':')
            found = p; /* the last one wins: the final response after a 100 Continue */
        if (strncmp(p, "HTTP/", 5) == 0)
            found = NULL; /* a new response starts */
        p = *eol ? eol + 2 : eol;
    }
    if (!found)
        return NULL;
    const char *v = found + n + 1;
    while (*v == ' ')
        v++;
    const char *eol = strstr(v, "\r\n");
    size_t vl = eol ? (size_t)(eol - v) : strlen(v);
    if (vl >= len)
        vl = len - 1;
    memcpy(buf, v, vl);
    buf[vl] = '\0';
    return buf;
}

void yt_resp_free(yt_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

const char *yt_error_message(const yt_resp *r, char *buf, size_t len)
{
    buf[0] = '\0';
    json_t *j = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    const char *e = json_string_value(json_object_get(j, "error"));
    if (e)
        snprintf(buf, len, "%s", e);
    json_decref(j);
    return buf;
}

/* ------------------------------------------------------------------------------------ */
/* The daemon's process and its history API, shared by the fault, monitor, history and
 * soak tests.                                                                           */

/* A "Key: N kB" line of /proc/<pid>/status; -1 when there is none. */
static long status_kb(pid_t pid, const char *key)
{
    char p[64], line[256], fmt[32];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    snprintf(fmt, sizeof fmt, "%s: %%ld kB", key);
    FILE *f = fopen(p, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &kb) == 1)
            break;
    fclose(f);
    return kb;
}

long yt_rss_kb(pid_t pid) { return status_kb(pid, "VmRSS"); }

long yt_hwm_kb(pid_t pid) { return status_kb(pid, "VmHWM"); }

int yt_open_fds(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(p);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

json_t *yt_get_json(const yt_daemon *d, const char *path)
{
    yt_resp r;
    ck_assert_msg(yt_get(d, path, &r) == 200, "GET %s: %ld %s", path, r.status, r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    yt_resp_free(&r);
    return j;
}

json_t *yt_run_points(const yt_daemon *d, const char *run)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/runs/%s/steps", run);
    json_t *j = yt_get_json(d, path);
    json_t *pts = json_incref(json_object_get(j, "points"));
    json_decref(j);
    ck_assert(json_is_array(pts));
    return pts;
}

/* ------------------------------------------------------------------------------------ */
/* Event streams on raw sockets (libcurl would buffer them).                             */

bool yt_read_until(int fd, char *buf, size_t len, size_t *have, const char *needle)
{
    for (int idle = 0; idle < 100;) { /* 100 reads that time out after 100 ms */
        buf[*have] = '\0';
        if (strstr(buf, needle))
            return true;
        if (*have + 1 >= len)
            return false;
        ssize_t n = recv(fd, buf + *have, len - 1 - *have, 0);
        if (n > 0)
            *have += (size_t)n;
        else if (n == 0)
            return false;
        else
            idle++;
    }
    buf[*have] = '\0';
    return strstr(buf, needle) != NULL;
}

int yt_stream_open(const yt_daemon *d, const char *path, const char *header, char *buf,
                   size_t len, size_t *have, int *status)
{
    *have = 0;
    *status = 0;
    buf[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        int e = errno;
        close(fd);
        errno = e; /* for the caller's message */
        return -1;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n", path,
                     header ? header : "", header ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (yt_read_until(fd, buf, len, have, "\r\n\r\n"))
        sscanf(buf, "HTTP/1.1 %d", status);
    return fd;
}

/* ------------------------------------------------------------------------------------ */
/* Requests held in flight by a client that does not read                                 */

int yt_hold_send(const yt_daemon *d, const char *path, const void *body, size_t len,
                 size_t header_len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int small = 4096; /* before connect: the window stays small */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n"
                     "Inference-Header-Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     path, len, header_len);
    const char *parts[2] = {head, body};
    size_t sizes[2] = {(size_t)n, len};
    for (int i = 0; i < 2; i++)
        for (size_t off = 0; off < sizes[i];) {
            ssize_t k = send(fd, parts[i] + off, sizes[i] - off, MSG_NOSIGNAL);
            if (k <= 0) {
                close(fd);
                return -1;
            }
            off += (size_t)k;
        }
    return fd;
}

bool yt_hold_answering(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 60000) == 1;
}

long yt_hold_finish(int fd, yt_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    growbuf all = {0};
    char buf[65536];
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            break;
        if (grow_append(&all, buf, (size_t)k) != (size_t)k)
            break;
    }
    close(fd);
    char *end = all.p ? strstr(all.p, "\r\n\r\n") : NULL;
    if (!end) {
        free(all.p);
        snprintf(resp->error, sizeof resp->error, "no response");
        return 0;
    }
    size_t hl = (size_t)(end - all.p) + 4;
    resp->headers = malloc(hl + 1);
    memcpy(resp->headers, all.p, hl);
    resp->headers[hl] = '\0';
    resp->len = all.len - hl;
    resp->body = malloc(resp->len + 1);
    memcpy(resp->body, all.p + hl, resp->len);
    resp->body[resp->len] = '\0';
    free(all.p);
    int st = 0;
    sscanf(resp->headers, "HTTP/1.%*d %d", &st);
    resp->status = st;
    return st;
}

double yt_metric(const yt_daemon *d, const char *name)
{
    yt_resp r;
    double v = -1;
    if (yt_get(d, "/metrics", &r) == 200 && r.body) {
        size_t n = strlen(name);
        for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
            if (!strncmp(p, name, n) && p[n] == ' ') {
                v = strtod(p + n + 1, NULL);
                break;
            }
    }
    yt_resp_free(&r);
    return v;
}

double yt_metric_wait(const yt_daemon *d, const char *name, double want)
{
    double v = yt_metric(d, name);
    for (int i = 0; i < 3000 && v != want; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        v = yt_metric(d, name);
    }
    return v;
}

/* ------------------------------------------------------------------------------------ */
/* Raw HTTP                                                                             */

int yt_raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to %u: %s", port,
                  strerror(errno));
    struct timeval tv = {20, 0}; /* a bound on every read: a hang fails, it does not block */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

bool yt_raw_send(int fd, const void *p, size_t n)
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
int yt_raw_response(int fd, char *head, size_t hcap, char *body, size_t bcap)
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
