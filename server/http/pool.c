/*
 * pool.c: work on the libuv pool, counted while it waits for a thread.
 *
 * A request's images run as a few long work items that take images one at a time until
 * none is left (v2/infer.c). Such an item should step aside when other work is queued
 * behind it (another request's parse, its images, an answer), and only then: handing the
 * images back to the loop after every few of them costs a thread wake-up each time, which
 * on a small machine left the pool's threads idle for a fifth of a batch. libuv does not
 * say how much work waits, so every item queued through here is counted from
 * uv_queue_work until its work starts (or it is cancelled).
 *
 * A pool thread may also need the loop before its work item ends: a request's parse goes
 * on into its images on the same thread and asks the loop, through a message, to queue
 * helpers beside it. Handing the images to the loop at the end of the parse instead let
 * that thread go idle first; the kernel then often woke the image threads on the loop's
 * CPU, sharing one core for milliseconds while the other stayed idle (seen with perf sched
 * on the 2-core machine: the second thread started 1 to 4 ms late, or not at all).
 */
#include "server.h"

static void pool_work(uv_work_t *req)
{
    yls_work *w = req->data;
    atomic_fetch_sub_explicit(&w->srv->pool_waiting, 1, memory_order_relaxed);
    w->work(w);
}

static void pool_after(uv_work_t *req, int status)
{
    yls_work *w = req->data;
    if (status == UV_ECANCELED) /* never started */
        atomic_fetch_sub_explicit(&w->srv->pool_waiting, 1, memory_order_relaxed);
    w->after(w, status);
}

int yls_pool_queue(yls_server *s, yls_work *w, void (*work)(yls_work *),
                   void (*after)(yls_work *, int status))
{
    w->srv = s;
    w->work = work;
    w->after = after;
    w->req.data = w;
    atomic_fetch_add_explicit(&s->pool_waiting, 1, memory_order_relaxed);
    int rc = uv_queue_work(&s->loop, &w->req, pool_work, pool_after);
    if (rc)
        atomic_fetch_sub_explicit(&s->pool_waiting, 1, memory_order_relaxed);
    return rc;
}

int yls_pool_cancel(yls_work *w) { return uv_cancel((uv_req_t *)&w->req); }

unsigned yls_pool_waiting(const yls_server *s)
{
    return atomic_load_explicit(&s->pool_waiting, memory_order_relaxed);
}

static void on_msgs(uv_async_t *a)
{
    yls_server *s = a->data;
    uv_mutex_lock(&s->pool_mu);
    yls_loop_msg *m = s->pool_msgs;
    s->pool_msgs = NULL;
    for (yls_loop_msg *k = m; k; k = k->next)
        k->pending = false;
    uv_mutex_unlock(&s->pool_mu);
    /* oldest first: the list is pushed at its head */
    yls_loop_msg *rev = NULL;
    while (m) {
        yls_loop_msg *next = m->next;
        m->next = rev;
        rev = m;
        m = next;
    }
    while (rev) {
        yls_loop_msg *next = rev->next; /* cb may free its message */
        rev->cb(rev);
        rev = next;
    }
}

void yls_pool_tell(yls_server *s, yls_loop_msg *m)
{
    uv_mutex_lock(&s->pool_mu);
    if (!m->pending) {
        m->pending = true;
        m->next = s->pool_msgs;
        s->pool_msgs = m;
    }
    uv_mutex_unlock(&s->pool_mu);
    uv_async_send(&s->pool_async);
}

bool yls_pool_untell(yls_server *s, yls_loop_msg *m)
{
    uv_mutex_lock(&s->pool_mu);
    bool was = m->pending;
    if (was) {
        yls_loop_msg **pp = &s->pool_msgs;
        while (*pp != m)
            pp = &(*pp)->next;
        *pp = m->next;
        m->pending = false;
    }
    uv_mutex_unlock(&s->pool_mu);
    return was;
}

int yls_pool_open(yls_server *s)
{
    if (uv_mutex_init(&s->pool_mu))
        return -1;
    if (uv_async_init(&s->loop, &s->pool_async, on_msgs)) {
        uv_mutex_destroy(&s->pool_mu);
        return -1;
    }
    s->pool_async.data = s;
    uv_unref((uv_handle_t *)&s->pool_async);
    s->pool_open = true;
    return 0;
}

static void pool_closed(uv_handle_t *h)
{
    yls_server *s = h->data;
    uv_mutex_destroy(&s->pool_mu);
}

void yls_pool_close(yls_server *s)
{
    if (!s->pool_open)
        return;
    s->pool_open = false;
    uv_close((uv_handle_t *)&s->pool_async, pool_closed);
}
