/* yl_compute: the whole batch on C11 threads, for tools and benchmarks. Servers with their
 * own pool call yl_image and yl_reduce directly. Images are handed out one at a time from
 * an atomic counter; results land in per-image slots and are reduced in image order. */
#include <stdatomic.h>
#include <stdlib.h>

/* C11 threads, except under ThreadSanitizer: glibc's thrd_create calls its internal
 * pthread_create directly, which TSan does not intercept, and the first access from such a
 * thread crashes. Starting the same workers through pthreads is what TSan understands. */
#if defined(__SANITIZE_THREAD__)
#include <pthread.h>
typedef pthread_t worker_thread;
#else
#include <threads.h>
typedef thrd_t worker_thread;
#endif

#include "internal.h"

typedef struct {
    const yl_problem *p;
    const yl_grads *grads;
    yl_image_result *images;
    int *status;
    yl_error *errors;
    atomic_llong next;
} batch_job;

typedef struct {
    batch_job *job;
    void *scratch;
} worker;

static int run_worker(void *arg) {
    worker *w = arg;
    batch_job *job = w->job;
    for (;;) {
        long long b = atomic_fetch_add(&job->next, 1);
        if (b >= job->p->batch)
            return 0;
        job->status[b] = yl_image(job->p, b, w->scratch, job->grads, &job->images[b],
                                  &job->errors[b]);
    }
}

#if defined(__SANITIZE_THREAD__)
static void *run_worker_pthread(void *arg) {
    run_worker(arg);
    return NULL;
}

static int start_worker(worker_thread *t, worker *w) {
    return pthread_create(t, NULL, run_worker_pthread, w) == 0;
}

static void join_worker(worker_thread t) { pthread_join(t, NULL); }
#else
static int start_worker(worker_thread *t, worker *w) {
    return thrd_create(t, run_worker, w) == thrd_success;
}

static void join_worker(worker_thread t) { thrd_join(t, NULL); }
#endif

int yl_compute(const yl_problem *p, int nthreads, const yl_grads *grads, yl_result *r,
               double *image_terms, yl_error *err) {
    int64_t B = p->batch;
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > B)
        nthreads = (int)B;
    int rc = YL_ENOMEM;
    batch_job job = {.p = p, .grads = grads};
    atomic_init(&job.next, 0);
    worker *workers = calloc((size_t)nthreads, sizeof *workers);
    worker_thread *threads = calloc((size_t)nthreads, sizeof *threads);
    job.images = calloc((size_t)B, sizeof *job.images);
    job.status = calloc((size_t)B, sizeof *job.status);
    job.errors = calloc((size_t)B, sizeof *job.errors);
    int started = 0;
    if (!workers || !threads || !job.images || !job.status || !job.errors)
        goto out;
    for (int t = 0; t < nthreads; t++) {
        workers[t].job = &job;
        workers[t].scratch = malloc(p->scratch_size ? p->scratch_size : 1);
        if (!workers[t].scratch)
            goto out;
    }
    /* worker 0 runs on the calling thread */
    for (started = 1; started < nthreads; started++)
        if (!start_worker(&threads[started], &workers[started]))
            break; /* fewer threads, same result */
    run_worker(&workers[0]);
    for (int t = 1; t < started; t++)
        join_worker(threads[t]);
    for (int64_t b = 0; b < B; b++)
        if (job.status[b] != YL_OK) {
            if (err)
                *err = job.errors[b];
            rc = job.status[b];
            goto out;
        }
    yl_reduce(p, job.images, r);
    if (image_terms)
        for (int64_t b = 0; b < B; b++)
            yl_image_terms(&job.images[b], image_terms + 4 * b);
    rc = YL_OK;
out:
    if (rc == YL_ENOMEM && err)
        yl__fail(err, YL_ENOMEM, "", -1, -1, "out of memory for %lld images", (long long)B);
    for (int t = 0; workers && t < nthreads; t++)
        free(workers[t].scratch);
    free(job.errors);
    free(job.status);
    free(job.images);
    free(threads);
    free(workers);
    return rc;
}
