/*
 * budget.c: the memory budget of admitted requests (--max-memory).
 *
 * Without it, what a request may hold is bounded per request (--max-body, --max-json) but
 * not in sum: --max-inflight bodies, their gradients and their responses could together
 * exceed the machine, and the kernel would kill the daemon. So the large memory a request
 * makes is counted in one process-wide figure, and an allocation that would take it past
 * the budget fails instead; the request then gets a 503 with Retry-After (the client may
 * come back when others are done), never an OOM kill. Counted:
 *   - every block of bufcache.c (request bodies raw and inflated, decoded tensors,
 *     realigned blobs, gradients, per-chunk scratch), live or kept for reuse (kept blocks
 *     are dropped first when a new one would not fit);
 *   - the jansson values of a request body while it is parsed (a JSON body takes about ten
 *     times its size as a tree): jansson's allocator is counted on a pool thread inside
 *     yls_budget_scope_begin/end;
 *   - a response's JSON text and compressed body (infer.c charges them until the response
 *     is freed).
 * Refusals are decided by a compare-and-swap on the one counter, so concurrent requests on
 * the pool threads cannot together pass the budget.
 *
 * ADMISSION. Counting allocations alone would let many bodies in and then fail them all
 * when none finds room for its gradients. So an upload is admitted on its headers only if
 * its body and a reservation of twice its size would fit (http.c): what it decodes into
 * (gradients are FP32, as large as FP32 outputs and twice FP16 ones; JSON numbers take
 * at least two bytes each). That is a promise, counted against later admissions only, and
 * taken as the bytes arrive (upload.c: a client that declares a gigabyte and sends nothing
 * must not hold it, and a stalled upload loses its promise). Its input phase spends the reservation first (a thread-local
 * credit), and gives back what is left; what the estimate missed is taken from the rest
 * of the budget, or refused. Small allocations outside a request's
 * work (error replies, metadata) are never refused: the 503 itself must be sendable.
 */
#include "server.h"

#include <inttypes.h>
#include <jansson.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t max_bytes;       /* 0: no budget (counted all the same) */
static _Atomic uint64_t used;    /* bytes counted now */
static _Atomic uint64_t peak;    /* the most ever counted (statistics, tests) */
static _Atomic uint64_t promised; /* promised to uploads, not counted yet (upload.c) */
static _Thread_local bool hit;   /* this thread was refused since its last yls_budget_hit */
static _Thread_local bool scope; /* counting jansson on this thread */
static _Thread_local uint64_t scope_held;
static _Thread_local uint64_t credit; /* counted already: a request's reservation */

static void note_peak(uint64_t v)
{
    uint64_t p = atomic_load(&peak);
    while (v > p && !atomic_compare_exchange_weak(&peak, &p, v))
        ;
}

bool yls_budget_take(uint64_t n)
{
    uint64_t cur = atomic_load(&used);
    do {
        if (max_bytes && (cur > max_bytes || n > max_bytes - cur)) {
            hit = true;
            return false;
        }
    } while (!atomic_compare_exchange_weak(&used, &cur, cur + n));
    note_peak(cur + n);
    return true;
}

bool yls_budget_promise(uint64_t n)
{
    uint64_t cur = atomic_load(&promised);
    do {
        uint64_t u = atomic_load(&used);
        if (max_bytes && (u > max_bytes || cur > max_bytes - u || n > max_bytes - u - cur))
            return false;
    } while (!atomic_compare_exchange_weak(&promised, &cur, cur + n));
    return true;
}

void yls_budget_unpromise(uint64_t n) { atomic_fetch_sub(&promised, n); }

bool yls_budget_take_block(uint64_t n)
{
    if (credit >= n) {
        credit -= n;
        return true;
    }
    if (!yls_budget_take(n - credit))
        return false;
    credit = 0;
    return true;
}

void yls_budget_credit_begin(uint64_t n) { credit = n; }

uint64_t yls_budget_credit_end(void)
{
    uint64_t left = credit;
    credit = 0;
    return left;
}

void yls_budget_force(uint64_t n) { note_peak(atomic_fetch_add(&used, n) + n); }

void yls_budget_give(uint64_t n) { atomic_fetch_sub(&used, n); }

uint64_t yls_budget_used(void) { return atomic_load(&used); }
uint64_t yls_budget_max(void) { return max_bytes; }
uint64_t yls_budget_peak(void) { return atomic_load(&peak); }

bool yls_budget_hit(void)
{
    bool h = hit;
    hit = false;
    return h;
}

int yls_budget_fail(yls_fail *f, const char *what)
{
    memset(f, 0, sizeof *f);
    return yls_fail_set(f, 503,
                        "over the memory budget: %s would take the daemon past --max-memory "
                        "%" PRIu64 " bytes (%" PRIu64 " in use by other requests); retry later",
                        what, max_bytes, yls_budget_used());
}

/* jansson's allocator: counted (and refusable) only inside a scope. A parse makes millions
 * of small allocations, so the thread takes from the shared counter a MiB at a time into
 * its credit (one compare-and-swap per MiB, not per value) and frees go back to the
 * credit; what is left returns at yls_budget_credit_end. */
#define SCOPE_REFILL ((uint64_t)1 << 20)

static void *counted_malloc(size_t n)
{
    void *p = malloc(n);
    if (!p || !scope)
        return p;
    uint64_t u = malloc_usable_size(p);
    if (credit < u) {
        uint64_t need = u - credit;
        uint64_t grab = need > SCOPE_REFILL ? need : SCOPE_REFILL;
        bool was_hit = hit;
        if (!yls_budget_take(grab)) {
            if (grab == need || !yls_budget_take(need)) {
                free(p);
                return NULL;
            }
            grab = need;
            hit = was_hit; /* a refused refill of a whole MiB is not a refusal */
        }
        credit += grab;
    }
    credit -= u;
    scope_held += u;
    return p;
}

static void counted_free(void *p)
{
    if (p && scope) {
        uint64_t u = malloc_usable_size(p);
        if (u > scope_held)
            u = scope_held; /* allocated before the scope: not counted */
        scope_held -= u;
        credit += u;
    }
    free(p);
}

void yls_budget_scope_begin(void)
{
    scope = true;
    scope_held = 0;
}

void yls_budget_scope_end(void)
{
    credit += scope_held; /* what the scope left allocated is no longer counted */
    scope_held = 0;
    scope = false;
}

void yls_budget_init(uint64_t max)
{
    max_bytes = max;
    json_set_alloc_funcs(counted_malloc, counted_free);
}

/* A "Key:  123 kB" line of /proc/meminfo, in bytes; 0 if absent. */
static uint64_t meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t v = 0;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':') {
            v = strtoull(line + k + 1, NULL, 10) * 1024;
            break;
        }
    fclose(f);
    return v;
}

/* The cgroup (v2) memory limit of the process, 0 if none: a container's limit is what the
 * kernel enforces, whatever the machine has. */
static uint64_t cgroup_limit(void)
{
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (!f)
        return 0;
    char buf[64] = "";
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || buf[0] < '0' || buf[0] > '9')
        return 0; /* "max" */
    return strtoull(buf, NULL, 10);
}

uint64_t yls_budget_default(void)
{
    uint64_t avail = meminfo("MemAvailable");
    if (!avail)
        avail = meminfo("MemTotal");
    uint64_t cg = cgroup_limit();
    if (cg && (!avail || cg < avail))
        avail = cg;
    if (!avail)
        return 0; /* unknown: no budget */
    uint64_t b = avail / 4 * 3; /* the rest: the daemon itself, the page cache, others */
    return b < (64ull << 20) ? (64ull << 20) : b;
}
