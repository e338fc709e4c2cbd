/*
 * bufcache.c: large buffers (request bodies, gradients, converted inputs) reused across
 * requests.
 *
 * glibc serves every allocation above 32 MiB with a fresh mmap and unmaps it on free, so
 * each request would fault in and zero its body and gradient pages again: on the standard
 * workload that was a third of the daemon's time. Freed blocks of at least YLS_BIG_MIN bytes
 * are kept instead (at most YLS_BIG_KEEP bytes in all) and handed out again to any request
 * that fits, the smallest that does first. Any thread may allocate and free; one mutex.
 * Blocks carry a header with their capacity, so yls_big_free needs only the pointer.
 * Every block, live or kept, is counted in the memory budget (budget.c): a new block that
 * would pass it first drops the kept ones, then fails.
 */
#include "server.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define YLS_BIG_MIN ((size_t)1 << 20)
#define YLS_BIG_KEEP ((size_t)768 << 20)
#define YLS_BIG_SLOTS 32
#define HEADER 64 /* keeps the data 64-byte aligned */

typedef struct {
    size_t cap; /* usable bytes after the header */
} block;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static block *kept[YLS_BIG_SLOTS];
static int n_kept;
static size_t bytes_kept;

static void *data_of(block *b) { return (char *)b + HEADER; }
static block *block_of(void *p) { return (block *)(void *)((char *)p - HEADER); }

void *yls_big_alloc(size_t n)
{
    if (n > SIZE_MAX - HEADER)
        return NULL;
    if (n >= YLS_BIG_MIN) {
        pthread_mutex_lock(&mu);
        int best = -1;
        for (int i = 0; i < n_kept; i++)
            if (kept[i]->cap >= n && (best < 0 || kept[i]->cap < kept[best]->cap))
                best = i;
        /* do not hand a huge block to a small request */
        if (best >= 0 && kept[best]->cap / 4 <= n) {
            block *b = kept[best];
            kept[best] = kept[--n_kept];
            bytes_kept -= b->cap;
            pthread_mutex_unlock(&mu);
            return data_of(b);
        }
        pthread_mutex_unlock(&mu);
    }
    if (!yls_budget_take_block(n)) {
        /* what is kept for reuse is memory too: give it back, then try again */
        yls_big_trim();
        if (!yls_budget_take_block(n))
            return NULL;
        yls_budget_hit(); /* the first refusal was not final */
    }
    block *b = NULL;
    if (posix_memalign((void **)&b, HEADER, HEADER + (n ? n : 1)) != 0) {
        yls_budget_give(n);
        return NULL;
    }
    b->cap = n;
    return data_of(b);
}

void yls_big_free(void *p)
{
    if (!p)
        return;
    block *b = block_of(p);
    if (b->cap >= YLS_BIG_MIN) {
        pthread_mutex_lock(&mu);
        if (n_kept == YLS_BIG_SLOTS || bytes_kept + b->cap > YLS_BIG_KEEP) {
            /* full: drop the smallest kept block if this one is larger, else this one */
            int small = 0;
            for (int i = 1; i < n_kept; i++)
                if (kept[i]->cap < kept[small]->cap)
                    small = i;
            if (n_kept && kept[small]->cap < b->cap && bytes_kept - kept[small]->cap + b->cap <= YLS_BIG_KEEP) {
                block *old = kept[small];
                bytes_kept -= old->cap;
                kept[small] = b;
                bytes_kept += b->cap;
                b = old;
            }
        } else {
            kept[n_kept++] = b;
            bytes_kept += b->cap;
            b = NULL;
        }
        pthread_mutex_unlock(&mu);
    }
    if (b)
        yls_budget_give(b->cap);
    free(b);
}

void *yls_big_realloc(void *p, size_t n)
{
    if (!p)
        return yls_big_alloc(n);
    block *b = block_of(p);
    if (b->cap >= n)
        return p;
    void *q = yls_big_alloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, b->cap);
    yls_big_free(p);
    return q;
}

void yls_big_trim(void)
{
    pthread_mutex_lock(&mu);
    for (int i = 0; i < n_kept; i++)
        free(kept[i]);
    yls_budget_give(bytes_kept);
    n_kept = 0;
    bytes_kept = 0;
    pthread_mutex_unlock(&mu);
}
