/*
 * idle.c: a connection between requests, watched for the client's hang-up.
 *
 * A client that sends part of a request's headers and closes delivers the bytes and the
 * end of file together. libmicrohttpd 0.9.75, driven through its epoll fd (edge-triggered),
 * reads the bytes and takes the short read for "drained": the end of file is never read,
 * and the connection is held, in CLOSE-WAIT, until --timeout (forever with --timeout 0).
 * So from the moment a connection opens, and again after each request, until the next
 * request's headers are complete, its socket is watched in the loop for a hang-up
 * (UV_DISCONNECT: the peer shut its side, bytes may still be queued). On one the
 * connection is suspended and resumed, which makes libmicrohttpd read it: it gets the
 * bytes and the end of file and closes it, as it would had it seen the end itself.
 * While a request is under way its own watches take over (suspend.c, http.c: an upload's
 * end, a suspended request's client leaving, an event stream's), one poll per socket.
 *
 * The same span has a deadline: --timeout is libmicrohttpd's *idle* timeout, and a client
 * that trickles its header lines a byte at a time is never idle, so it held its connection
 * for as long as it liked (slowloris). A connection whose next request's headers are not
 * complete --timeout seconds after it opened, or after its last answer, is shut down (the
 * socket, both ways, then suspended and resumed so that libmicrohttpd reads the end and
 * closes it). A kept-alive connection that sends nothing is closed by the idle timeout at
 * the same moment anyway.
 */
#include "server.h"

#include <stdlib.h>
#include <sys/socket.h>

typedef struct {
    yls_server *srv;
    struct MHD_Connection *conn;
    uv_poll_t *watch; /* NULL while a request is under way */
    uv_timer_t deadline; /* runs while watched, when --timeout is set */
} idle_conn;

static idle_conn *idle_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Make libmicrohttpd read the connection now: it finds the end and closes it. */
static void make_it_read(idle_conn *ic)
{
    yls_conn_unwatch(&ic->watch); /* the poll is level-triggered: once is enough */
    uv_timer_stop(&ic->deadline);
    yls_conn_reread(ic->srv, ic->conn);
}

static void on_hangup(uv_poll_t *p, int status, int events)
{
    idle_conn *ic = p->data;
    (void)status;
    (void)events;
    if (ic) /* else: unwatched after the event was queued */
        make_it_read(ic);
}

static void on_deadline(uv_timer_t *t)
{
    idle_conn *ic = t->data;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(ic->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        shutdown(ci->connect_fd, SHUT_RDWR);
    ic->srv->header_timeouts++;
    make_it_read(ic);
}

void yls_idle_open(yls_server *s, struct MHD_Connection *c, void **socket_context)
{
    idle_conn *ic = calloc(1, sizeof *ic);
    if (!ic)
        return; /* unwatched: a hang-up mid-headers waits for --timeout, as it used to */
    ic->srv = s;
    ic->conn = c;
    uv_timer_init(&s->loop, &ic->deadline);
    ic->deadline.data = ic;
    *socket_context = ic;
    yls_idle_resume(c);
}

static void closed(uv_handle_t *h) { free(h->data); }

void yls_idle_close(void **socket_context)
{
    idle_conn *ic = *socket_context;
    if (!ic)
        return;
    yls_conn_unwatch(&ic->watch);
    uv_close((uv_handle_t *)&ic->deadline, closed); /* frees ic */
    *socket_context = NULL;
}

void yls_idle_pause(struct MHD_Connection *c)
{
    idle_conn *ic = idle_of(c);
    if (ic) {
        yls_conn_unwatch(&ic->watch);
        uv_timer_stop(&ic->deadline);
    }
}

void yls_idle_resume(struct MHD_Connection *c)
{
    idle_conn *ic = idle_of(c);
    if (!ic || ic->watch)
        return;
    ic->watch = yls_conn_watch(ic->srv, c, UV_DISCONNECT, on_hangup, ic);
    if (ic->srv->opt.timeout)
        uv_timer_start(&ic->deadline, on_deadline, (uint64_t)ic->srv->opt.timeout * 1000, 0);
}
