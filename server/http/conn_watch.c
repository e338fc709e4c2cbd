/*
 * conn_watch.c: watching the socket of a connection libmicrohttpd does not read.
 *
 * A suspended request (its work on the pool) and an event stream (waiting for points) both
 * sit on a connection that libmicrohttpd leaves alone, so a client that leaves is noticed
 * only when something is written, if ever. Both watch the socket in the loop instead: the
 * callback runs when it is readable or hung up, and yls_conn_peer_gone tells end-of-file or
 * an error (the client left) from bytes (a pipelined request, or bytes a stream's client
 * should not send), which are left unread for libmicrohttpd.
 */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

uv_poll_t *yls_conn_watch(yls_server *s, struct MHD_Connection *conn, int events,
                          uv_poll_cb cb, void *data)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    uv_poll_t *p = ci ? malloc(sizeof *p) : NULL;
    if (!p)
        return NULL; /* unwatched: noticed when something is written, as without a watch */
    if (uv_poll_init_socket(&s->loop, p, ci->connect_fd) != 0) {
        free(p); /* not initialised: nothing to close */
        return NULL;
    }
    p->data = data;
    uv_poll_start(p, events, cb);
    return p;
}

static void watch_closed(uv_handle_t *h) { free(h); }

void yls_conn_unwatch(uv_poll_t **p)
{
    if (!*p)
        return;
    (*p)->data = NULL; /* a callback already queued finds no owner */
    uv_close((uv_handle_t *)*p, watch_closed);
    *p = NULL;
}

bool yls_conn_peer_gone(uv_poll_t *p, int status, int events)
{
    if (status < 0 || (events & UV_DISCONNECT))
        return true;
    int fd = -1;
    uv_fileno((uv_handle_t *)p, &fd);
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}
