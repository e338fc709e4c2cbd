/*
 * upload.c: what an infer request's body may hold of the memory budget while it arrives.
 *
 * An upload is admitted on its headers only if its body and twice its size (what it
 * decodes into: budget.c, ADMISSION) fit; admitting on allocations alone let a burst of
 * bodies in and then failed them all, none finding room for its gradients. But holding
 * that memory for bytes that have not come let a client that declares a gigabyte and sends
 * nothing hold it: 22 such idle connections took a 17 GB budget and every other request got
 * 503 until --timeout. So admission is a *promise* (budget.c: counted against later
 * admissions, not against allocations), and memory is taken only as the bytes arrive: the
 * body's buffer grows (doubling, then straight to its Content-Length, so that the copies
 * add up to at most the body once and the peak stays within the promise) and the
 * reservation grows by twice each chunk, each taken from the request's promise first.
 * A promise is kept only by an upload that sends: when a new upload does not fit, the
 * promises of uploads older than PROMISE_GRACE that average under YLS_MIN_UPLOAD_RATE are
 * dropped (the upload goes on, its memory no longer guaranteed; counted in
 * yololoss_upload_promises_dropped_total). Loop thread only.
 */
#include "server.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PROMISE_GRACE_NS 2000000000ull

static uint64_t promise_total(const yls_request *r)
{
    return r->body_expect <= UINT64_MAX / 3 ? 3 * r->body_expect : UINT64_MAX;
}

/* Keep left bytes of r's promise (never more than it has). */
static void promise_down_to(yls_request *r, uint64_t left)
{
    if (r->promise > left) {
        yls_budget_unpromise(r->promise - left);
        r->promise = left;
    }
}

static bool stalled(const yls_request *r, uint64_t now)
{
    uint64_t age = now - r->t_start;
    return age > PROMISE_GRACE_NS &&
           (double)r->bytes_in < YLS_MIN_UPLOAD_RATE * ((double)age * 1e-9);
}

/* Drop the promises of stalled uploads; whether any was dropped. */
static bool drop_stalled(yls_server *s)
{
    uint64_t now = uv_hrtime();
    bool any = false;
    for (yls_request *u = s->uploads; u; u = u->up_next)
        if (u->promise && stalled(u, now)) {
            promise_down_to(u, 0);
            s->promises_dropped++;
            any = true;
        }
    return any;
}

int yls_upload_admit(yls_request *r, yls_fail *f)
{
    yls_server *s = r->srv;
    uint64_t need = promise_total(r);
    if (need && !yls_budget_promise(need) && !(drop_stalled(s) && yls_budget_promise(need))) {
        char what[96];
        snprintf(what, sizeof what, "a %" PRIu64 "-byte body and what it decodes into",
                 r->body_expect);
        return yls_budget_fail(f, what);
    }
    r->promise = need;
    r->up_prev = NULL;
    r->up_next = s->uploads;
    if (s->uploads)
        s->uploads->up_prev = r;
    s->uploads = r;
    r->uploading = true;
    s->uploading++;
    return 0;
}

void yls_upload_end(yls_request *r)
{
    if (!r->uploading)
        return;
    yls_server *s = r->srv;
    promise_down_to(r, 0);
    if (r->up_prev)
        r->up_prev->up_next = r->up_next;
    else
        s->uploads = r->up_next;
    if (r->up_next)
        r->up_next->up_prev = r->up_prev;
    r->up_next = r->up_prev = NULL;
    r->uploading = false;
    s->uploading--;
}

int yls_body_append(yls_request *r, const char *data, size_t size)
{
    yls_body *b = &r->body;
    size_t cap = b->cap;
    if (b->len + size > b->cap) {
        uint64_t top = r->body_expect ? r->body_expect : r->body_limit;
        uint64_t next = (uint64_t)b->cap * 2;
        if (r->body_expect && next >= top / 2)
            next = top; /* the last step comes early: old + new + reservation <= 3 x body */
        if (next > top)
            next = top;
        if (next < b->len + size)
            next = b->len + size;
        cap = (size_t)next;
    }
    if (r->uploading) {
        /* what this chunk makes the upload hold at its peak (the old buffer and the new one
         * during the copy) comes out of its promise first */
        uint64_t peak = b->cap + (cap != b->cap ? cap : 0) + r->reserve + 2 * (uint64_t)size;
        uint64_t total = promise_total(r);
        promise_down_to(r, total > peak ? total - peak : 0);
        if (!yls_budget_take(2 * (uint64_t)size)) {
            promise_down_to(r, 0); /* it fails: what it was promised is free again */
            return yls_budget_fail(&r->early, "the request body and what it decodes into");
        }
        r->reserve += 2 * (uint64_t)size;
    }
    if (cap != b->cap) {
        yls_budget_hit();
        uint8_t *nb = yls_big_realloc(b->base, b->pad + cap + 1);
        if (!nb) {
            if (r->uploading)
                promise_down_to(r, 0);
            if (yls_budget_hit())
                return yls_budget_fail(&r->early, "the request body");
            return yls_fail_set(&r->early, 503, "out of memory for the request body; retry later");
        }
        b->base = nb;
        b->data = nb + b->pad;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, size);
    b->len += size;
    return 0;
}
