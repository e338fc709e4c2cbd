/*
 * suspend.c: a request whose answer comes later.
 *
 * Its work runs on the pool or the history thread while libmicrohttpd holds the connection
 * suspended; the answer (reply.c) resumes it, a client that left abandons it. Below both
 * the access handler (http.c) and the reply (reply.c), which call it; it calls neither:
 * waking libmicrohttpd's loop runs the timer callback http.c left in the server.
 *
 * A client that leaves while its request is suspended: libmicrohttpd does not read a
 * suspended connection, so without a watch a client gone during compute is noticed only
 * when the answer is written: its batch is computed, compressed and sent nowhere, holding
 * its in-flight slot all along. A request whose handler set on_gone has its socket polled
 * in the loop while suspended: end-of-file or an error calls on_gone once (the handler stops
 * its work and calls yls_request_abandon); bytes (a pipelined request) end the watch, as
 * they say the client is there. An upload is watched too (http.c), for its end of file.
 */
#include "server.h"

void yls_http_wake(yls_server *s)
{
    if (s->handles_open)
        uv_timer_start(&s->mhd_timer, s->mhd_timer_cb, 0, 0);
}

void yls_conn_reread(yls_server *s, struct MHD_Connection *c)
{
    /* a resumed connection is read: what libmicrohttpd missed (an end of file whose edge
     * it consumed with the last bytes) it finds now */
    MHD_suspend_connection(c);
    MHD_resume_connection(c);
    yls_http_wake(s);
}

void yls_request_unwatch(yls_request *r) { yls_conn_unwatch(&r->watch); }

static void on_watch(uv_poll_t *p, int status, int events)
{
    yls_request *r = p->data;
    if (!r)
        return;
    if (r->uploading) {
        /* the client finished sending (FIN) while its body is still being read: make
         * libmicrohttpd look at the connection again (a resumed connection is read), so
         * that it reads the rest and the end of file, and closes it if the body is short */
        yls_request_unwatch(r);
        yls_conn_reread(r->srv, r->conn);
        return;
    }
    bool gone = yls_conn_peer_gone(p, status, events);
    yls_request_unwatch(r);
    if (gone && !r->gone && r->on_gone) {
        r->gone = true;
        r->on_gone(r);
    }
}

void yls_request_watch(yls_request *r, int events)
{
    r->watch = yls_conn_watch(r->srv, r->conn, events, on_watch, r);
}

void yls_request_suspend(yls_request *r)
{
    r->suspended = true;
    MHD_suspend_connection(r->conn);
    if (r->on_gone)
        yls_request_watch(r, UV_READABLE | UV_DISCONNECT);
}

void yls_request_resume(yls_request *r)
{
    yls_request_unwatch(r);
    r->suspended = false;
    MHD_resume_connection(r->conn);
    yls_http_wake(r->srv);
}

void yls_request_abandon(yls_request *r)
{
    r->gone = true;
    if (r->suspended)
        yls_request_resume(r); /* the access handler then closes the connection */
}
