/*
 * history_pg_listen.c: the points other replicas record, live (PostgreSQL only).
 *
 * Replicas share one database but each serves its own event streams. history_pg.c sends,
 * inside the transaction that records a point, NOTIFY yololoss_points with the payload
 * "<origin> <point JSON>" (PostgreSQL delivers it at COMMIT, so only committed points are
 * heard of; the origin is this process's random id, so a replica skips its own points,
 * which it published already). Here a thread holds one more connection that LISTENs on
 * the channel, and hands every other replica's point to the loop thread (uv_async).
 *
 * GAPS. While the listening connection is down, notifications are lost. When it is back
 * (reconnected every second), the loop thread is told (on_gap): the daemon then ends
 * every event stream, and each client reconnects with its Last-Event-ID and gets what it
 * missed replayed from the history (sse.c).
 */
#include "history.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct msg {
    struct msg *next;
    bool gap;
    char json[];
} msg;

struct yls_pg_listener {
    char *target;
    PGconn *conn; /* the listener thread's after start */
    pthread_t thread;
    bool started;
    int wake[2]; /* a pipe: the loop thread wakes the listener to quit */
    pthread_mutex_t mu;
    msg *head, **tail; /* heard, for the loop thread */
    bool quit;
    uv_async_t async;
    void (*on_point)(void *arg, const char *json);
    void (*on_gap)(void *arg);
    void *arg;
};

static pthread_once_t origin_once = PTHREAD_ONCE_INIT;
static char origin[48];

static void origin_init(void)
{
    /* unique enough among replicas: host id of the process, its pid, the clock, a random */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &r, sizeof r) != (ssize_t)sizeof r)
            r = 0;
        close(fd);
    }
    snprintf(origin, sizeof origin, "%lx-%d-%lx-%x", gethostid() & 0xffffffffL, (int)getpid(),
             (long)ts.tv_nsec, r);
}

const char *yls_pg_origin(void)
{
    pthread_once(&origin_once, origin_init);
    return origin;
}

static void push(yls_pg_listener *l, bool gap, const char *json)
{
    size_t len = json ? strlen(json) : 0;
    msg *m = malloc(sizeof *m + len + 1);
    if (!m)
        return; /* the point is not shown live; the page's next reload has it */
    m->next = NULL;
    m->gap = gap;
    memcpy(m->json, json ? json : "", len + 1);
    pthread_mutex_lock(&l->mu);
    *l->tail = m;
    l->tail = &m->next;
    pthread_mutex_unlock(&l->mu);
    uv_async_send(&l->async);
}

static void quiet_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

/* A new connection that LISTENs, or NULL (with the reason in err). */
static PGconn *listen_conn(const char *target, char *err, size_t errlen)
{
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"5", YLS_NAME, target, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeReceiver(c, quiet_notice, NULL);
        PGresult *res = PQexec(c, "LISTEN " YLS_PG_CHANNEL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (ok)
            return c;
    }
    snprintf(err, errlen, "%s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
}

/* Wait up to ms for the wake pipe (or the connection's socket, fd >= 0): true to quit. */
static bool wait_for(yls_pg_listener *l, int fd, int ms)
{
    struct pollfd p[2] = {{.fd = l->wake[0], .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    int rc = poll(p, fd >= 0 ? 2 : 1, ms);
    (void)rc;
    pthread_mutex_lock(&l->mu);
    bool quit = l->quit;
    pthread_mutex_unlock(&l->mu);
    return quit;
}

static void *listen_main(void *arg)
{
    yls_pg_listener *l = arg;
    PGconn *c = l->conn;
    bool missed = c == NULL; /* not listening: points may go by unheard */
    size_t olen = strlen(yls_pg_origin());
    for (;;) {
        if (!c) {
            char err[256];
            c = listen_conn(l->target, err, sizeof err);
            if (!c) {
                missed = true;
                if (wait_for(l, -1, 1000))
                    break;
                continue;
            }
            if (missed)
                push(l, true, NULL);
            missed = false;
        }
        if (wait_for(l, PQsocket(c), -1))
            break;
        /* a server that closes the connection may first send its FATAL message, which
         * PQconsumeInput takes without failing: the status tells */
        if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK || PQsocket(c) < 0) {
            fprintf(stderr, YLS_NAME ": history: the listening connection broke: %s",
                    PQerrorMessage(c));
            PQfinish(c);
            c = NULL;
            missed = true;
            continue;
        }
        PGnotify *n;
        while ((n = PQnotifies(c))) {
            const char *p = n->extra;
            if (strncmp(p, yls_pg_origin(), olen) != 0 || p[olen] != ' ') {
                const char *json = strchr(p, ' ');
                if (json)
                    push(l, false, json + 1);
            }
            PQfreemem(n);
        }
    }
    PQfinish(c);
    return NULL;
}

static void on_async(uv_async_t *a)
{
    yls_pg_listener *l = a->data;
    pthread_mutex_lock(&l->mu);
    msg *list = l->head;
    l->head = NULL;
    l->tail = &l->head;
    pthread_mutex_unlock(&l->mu);
    while (list) {
        msg *m = list;
        list = list->next;
        if (m->gap)
            l->on_gap(l->arg);
        else
            l->on_point(l->arg, m->json);
        free(m);
    }
}

static void on_closed(uv_handle_t *h)
{
    yls_pg_listener *l = h->data;
    pthread_mutex_destroy(&l->mu);
    free(l->target);
    free(l);
}

yls_pg_listener *yls_pg_listen_start(const char *target, uv_loop_t *loop,
                                     void (*on_point)(void *arg, const char *json),
                                     void (*on_gap)(void *arg), void *arg)
{
    yls_pg_listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->target = strdup(target);
    if (!l->target || pipe(l->wake)) {
        free(l->target);
        free(l);
        return NULL;
    }
    fcntl(l->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(l->wake[1], F_SETFD, FD_CLOEXEC);
    l->tail = &l->head;
    l->on_point = on_point;
    l->on_gap = on_gap;
    l->arg = arg;
    pthread_mutex_init(&l->mu, NULL);
    uv_async_init(loop, &l->async, on_async);
    l->async.data = l;
    /* the first connection now, so that a replica listens once it serves */
    char err[256];
    l->conn = listen_conn(target, err, sizeof err);
    if (!l->conn)
        fprintf(stderr, YLS_NAME ": history: cannot LISTEN yet (retrying): %s\n", err);
    if (pthread_create(&l->thread, NULL, listen_main, l) == 0)
        l->started = true;
    else
        fprintf(stderr, YLS_NAME ": history: cannot start the listener thread\n");
    return l;
}

void yls_pg_listen_stop(yls_pg_listener *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->quit = true;
    pthread_mutex_unlock(&l->mu);
    if (write(l->wake[1], "q", 1) < 0 && errno != EAGAIN)
        fprintf(stderr, YLS_NAME ": history: cannot wake the listener\n");
    if (l->started)
        pthread_join(l->thread, NULL);
    else
        PQfinish(l->conn);
    close(l->wake[0]);
    close(l->wake[1]);
    while (l->head) { /* heard, never delivered: the daemon is stopping */
        msg *m = l->head;
        l->head = m->next;
        free(m);
    }
    uv_close((uv_handle_t *)&l->async, on_closed);
}
