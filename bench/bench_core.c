/* bench_core: the core on the standard workload, with the memcpy floor measured in the same
 * run. One JSON line per configuration; no thresholds here, the numbers speak. memcpy, a
 * read-only pass, the 1-thread and the N-thread runs are timed in rounds, back to back;
 * x_memcpy (compute time / memcpy time of the same bytes: the inputs, plus the gradient
 * with gradients), x_readonly (compute time / one vectorised read of the inputs, the real
 * floor: every input byte must be read once) and speedup_vs_1_thread are medians of
 * per-round ratios, so background load affects both sides of each ratio alike. The
 * *_min fields are the fastest round of each (min_x_memcpy, min_x_readonly,
 * min_speedup: ratios of those): on a shared machine the least disturbed run is the best
 * estimate of what the code costs. readonly_threads_ms and readonly_speedup (N-thread
 * lines): the read-only pass split across the same N threads, timed in the same rounds;
 * its speed-up is what the memory system allows a pass that only reads.
 *
 *   build/bench_core [--batch 16] [--size 416] [--classes 80] [--boxes 8] [--reps 15]
 *                    [--threads N (default: all cores)] [--dtype FP32]
 *                    [--kernel auto|scalar]
 *
 * Standard workload (issue "core"): B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes
 * per image, logits from N(0, 1) with a fixed seed, fp32. Each time is the median of --reps
 * runs after one warm-up run.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "yololoss.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

static double normal(void) { /* Box-Muller */
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* One timed memcpy of the same bytes: the floor for touching them once. */
typedef struct {
    unsigned char *src, *dst;
    size_t bytes;
} copy_floor;

static double time_memcpy(copy_floor *f) {
    double t0 = now_s();
    memcpy(f->dst, f->src, f->bytes);
    double t = now_s() - t0;
    f->src[f->bytes / 2] ^= f->dst[f->bytes / 3]; /* keep the copy observable */
    return t;
}

/* One read-only pass over the problem's own inputs (the raw outputs and the boxes, the
 * bytes the core must read): a sum of 64-bit words, which gcc vectorises; the sum is kept
 * so the pass cannot be optimised away. */
static volatile uint64_t readonly_sink;

static uint64_t sum_words(const void *data, size_t bytes) {
    const unsigned char *p = data;
    uint64_t acc = 0;
    for (size_t i = 0; i < bytes / 8; i++) {
        uint64_t w;
        memcpy(&w, p + 8 * i, 8);
        acc += w;
    }
    return acc;
}

static double time_readonly(const yl_problem *p) {
    double t0 = now_s();
    uint64_t acc = 0;
    for (int l = 0; l < p->num_layers; l++)
        acc += sum_words(p->output[l].data,
                         (size_t)(p->batch * p->layer_elems[l]) * yl_dtype_size(p->output[l].dtype));
    acc += sum_words(p->boxes.data, (size_t)(p->batch * p->boxes.shape[1] * 5) *
                                        yl_dtype_size(p->boxes.dtype));
    readonly_sink = acc;
    return now_s() - t0;
}

/* The same read-only pass split across `threads` threads (pthreads): what the memory
 * system gives several cores at once. Its speed-up over the 1-thread pass bounds what any
 * memory-bound loss can gain from threads on this machine. */
typedef struct {
    const yl_problem *p;
    int part, parts;
    uint64_t acc;
} readonly_part;

static void *run_readonly_part(void *arg) {
    readonly_part *r = arg;
    const yl_problem *p = r->p;
    for (int l = 0; l < p->num_layers; l++) {
        size_t bytes = (size_t)(p->batch * p->layer_elems[l]) * yl_dtype_size(p->output[l].dtype);
        size_t words = bytes / 8, lo = words * (size_t)r->part / (size_t)r->parts,
               hi = words * (size_t)(r->part + 1) / (size_t)r->parts;
        r->acc += sum_words((const unsigned char *)p->output[l].data + 8 * lo, 8 * (hi - lo));
    }
    return NULL;
}

static double time_readonly_threads(const yl_problem *p, int threads) {
    readonly_part parts[64];
    pthread_t tid[64];
    if (threads > 64)
        threads = 64;
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        parts[t] = (readonly_part){p, t, threads, 0};
        if (t > 0 && pthread_create(&tid[t], NULL, run_readonly_part, &parts[t]) != 0) {
            fprintf(stderr, "bench_core: cannot start a thread\n");
            exit(1);
        }
    }
    run_readonly_part(&parts[0]);
    uint64_t acc = parts[0].acc;
    for (int t = 1; t < threads; t++) {
        pthread_join(tid[t], NULL);
        acc += parts[t].acc;
    }
    readonly_sink = acc;
    return now_s() - t0;
}

static double time_compute(const yl_problem *p, int threads, const yl_grads *grads,
                           double *loss) {
    yl_result r;
    yl_error err;
    double t0 = now_s();
    if (yl_compute(p, threads, grads, &r, NULL, &err) != YL_OK) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        exit(1);
    }
    double t = now_s() - t0;
    *loss = r.loss;
    return t;
}

/* memcpy, the read-only pass, 1 thread and N threads timed in alternation, so background
 * load (this is often a shared VM) hits all alike; ratios are medians of the per-round
 * ratios. An untimed memcpy of the floor buffers before each timed pass over the inputs
 * evicts them from the caches, so no pass starts warmer than another. */
typedef struct {
    double compute_s[2], memcpy_s, readonly_s, x_memcpy[2], x_readonly[2], speedup, loss;
    double readonly_n_s, readonly_speedup; /* the read-only pass on N threads */
    double min_compute_s[2], min_memcpy_s, min_readonly_s;
} measurement;

static measurement measure(const yl_problem *p, int threads, const yl_grads *grads,
                           copy_floor *f, int reps) {
    double *t1 = calloc((size_t)reps, sizeof *t1), *tn = calloc((size_t)reps, sizeof *tn);
    double *tm = calloc((size_t)reps, sizeof *tm), *r1 = calloc((size_t)reps, sizeof *r1);
    double *rn = calloc((size_t)reps, sizeof *rn), *sp = calloc((size_t)reps, sizeof *sp);
    double *tr = calloc((size_t)reps, sizeof *tr), *q1 = calloc((size_t)reps, sizeof *q1);
    double *qn = calloc((size_t)reps, sizeof *qn);
    double *trn = calloc((size_t)reps, sizeof *trn), *spr = calloc((size_t)reps, sizeof *spr);
    measurement m;
    memset(&m, 0, sizeof m);
    time_compute(p, 1, grads, &m.loss); /* warm-up: pages, caches */
    time_compute(p, threads, grads, &m.loss);
    time_memcpy(f);
    time_readonly(p);
    for (int r = 0; r < reps; r++) {
        tm[r] = time_memcpy(f);
        tr[r] = time_readonly(p);
        time_memcpy(f);
        t1[r] = time_compute(p, 1, grads, &m.loss);
        time_memcpy(f);
        tn[r] = time_compute(p, threads, grads, &m.loss);
        time_memcpy(f);
        trn[r] = time_readonly_threads(p, threads);
        spr[r] = tr[r] / trn[r];
        r1[r] = t1[r] / tm[r];
        rn[r] = tn[r] / tm[r];
        q1[r] = t1[r] / tr[r];
        qn[r] = tn[r] / tr[r];
        sp[r] = t1[r] / tn[r];
    }
    m.min_compute_s[0] = m.min_compute_s[1] = m.min_memcpy_s = m.min_readonly_s = 1e300;
    for (int r = 0; r < reps; r++) {
        m.min_compute_s[0] = t1[r] < m.min_compute_s[0] ? t1[r] : m.min_compute_s[0];
        m.min_compute_s[1] = tn[r] < m.min_compute_s[1] ? tn[r] : m.min_compute_s[1];
        m.min_memcpy_s = tm[r] < m.min_memcpy_s ? tm[r] : m.min_memcpy_s;
        m.min_readonly_s = tr[r] < m.min_readonly_s ? tr[r] : m.min_readonly_s;
    }
    m.compute_s[0] = median(t1, reps);
    m.compute_s[1] = median(tn, reps);
    m.memcpy_s = median(tm, reps);
    m.readonly_s = median(tr, reps);
    m.x_memcpy[0] = median(r1, reps);
    m.x_memcpy[1] = median(rn, reps);
    m.x_readonly[0] = median(q1, reps);
    m.x_readonly[1] = median(qn, reps);
    m.speedup = median(sp, reps);
    m.readonly_n_s = median(trn, reps);
    m.readonly_speedup = median(spr, reps);
    free(trn);
    free(spr);
    free(t1);
    free(tn);
    free(tm);
    free(r1);
    free(rn);
    free(sp);
    free(tr);
    free(q1);
    free(qn);
    return m;
}

static copy_floor make_floor(size_t bytes) {
    copy_floor f = {malloc(bytes), malloc(bytes), bytes};
    if (!f.src || !f.dst) {
        fprintf(stderr, "bench_core: out of memory\n");
        exit(1);
    }
    memset(f.src, 1, bytes);
    memset(f.dst, 2, bytes);
    return f;
}

int main(int argc, char **argv) {
    int batch = 16, size = 416, classes = 80, nboxes = 8, reps = 15, dtype = YL_F32;
    int kernel = YL_KERNEL_AUTO;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int a = 1; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--batch"))
            batch = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--size"))
            size = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--classes"))
            classes = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--boxes"))
            nboxes = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--reps"))
            reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--threads"))
            threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--dtype"))
            dtype = yl_dtype_from_name(argv[a + 1]);
        else if (!strcmp(argv[a], "--kernel"))
            kernel = !strcmp(argv[a + 1], "scalar") ? YL_KERNEL_SCALAR : YL_KERNEL_AUTO;
        else {
            fprintf(stderr, "bench_core: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (batch < 1 || size < 32 || size % 32 || classes < 1 || nboxes < 1 || reps < 1 ||
        threads < 1 || dtype < 0) {
        fprintf(stderr, "bench_core: bad arguments\n");
        return 2;
    }
    const int L = 3;
    size_t esize = yl_dtype_size(dtype);
    yl_tensor out[3];
    float *grad[3];
    yl_grads grads = {.dtype = YL_F32};
    size_t in_bytes = 0, grad_bytes = 0;
    for (int l = 0; l < L; l++) {
        int64_t g = (size / 32) << l;
        int64_t n = batch * g * g * 3 * (5 + classes);
        unsigned char *data = malloc((size_t)n * esize);
        grads.layer[l] = grad[l] = malloc((size_t)n * sizeof(float));
        if (!data || !grad[l]) {
            fprintf(stderr, "bench_core: out of memory\n");
            return 1;
        }
        for (int64_t i = 0; i < n; i++) {
            double v = normal();
            if (dtype == YL_F32) {
                float f = (float)v;
                memcpy(data + 4 * i, &f, 4);
            } else if (dtype == YL_F64) {
                memcpy(data + 8 * i, &v, 8);
            } else {
                uint16_t h = dtype == YL_F16 ? yl_double_to_half(v) : yl_double_to_bf16(v);
                memcpy(data + 2 * i, &h, 2);
            }
        }
        out[l] = (yl_tensor){.data = data, .dtype = dtype, .ndim = 4,
                             .shape = {batch, g, g, 3 * (5 + classes)}};
        in_bytes += (size_t)n * esize;
        grad_bytes += (size_t)n * sizeof(float);
    }
    float *bx = malloc((size_t)batch * nboxes * 5 * sizeof(float));
    for (int i = 0; i < batch * nboxes; i++) {
        double w = 8 + uniform() * (size / 2.0), h = 8 + uniform() * (size / 2.0);
        double x0 = uniform() * (size - w), y0 = uniform() * (size - h);
        float row[5] = {(float)x0, (float)y0, (float)(x0 + w), (float)(y0 + h),
                        (float)(next_u64() % (uint64_t)classes)};
        memcpy(bx + 5 * i, row, sizeof row);
    }
    in_bytes += (size_t)batch * nboxes * 5 * sizeof(float);
    yl_tensor boxes = {.data = bx, .dtype = YL_F32, .ndim = 3, .shape = {batch, nboxes, 5}};
    yl_config cfg;
    yl_config_default(&cfg, 9);
    yl_problem p;
    yl_error err;
    if (yl_problem_init(&p, &cfg, out, L, &boxes, NULL, 0, &err) != YL_OK) {
        fprintf(stderr, "bench_core: %s\n", err.msg);
        return 1;
    }
    p.kernel = kernel;

    copy_floor floor_in = make_floor(in_bytes), floor_in_grad = make_floor(in_bytes + grad_bytes);
    for (int with_grad = 0; with_grad <= 1; with_grad++) {
        copy_floor *f = with_grad ? &floor_in_grad : &floor_in;
        measurement m = measure(&p, threads, with_grad ? &grads : NULL, f, reps);
        for (int c = 0; c < (threads > 1 ? 2 : 1); c++) {
            printf("{\"bench\":\"core\",\"mode\":\"%s\",\"kernel\":\"%s\",\"dtype\":\"%s\","
                   "\"threads\":%d,"
                   "\"batch\":%d,\"size\":%d,\"classes\":%d,\"boxes\":%d,"
                   "\"ms_per_batch\":%.3f,\"images_per_s\":%.1f,\"memcpy_bytes\":%zu,"
                   "\"memcpy_ms\":%.3f,\"x_memcpy\":%.3f,\"readonly_bytes\":%zu,"
                   "\"readonly_ms\":%.3f,\"x_readonly\":%.3f,\"speedup_vs_1_thread\":%.3f,"
                   "\"min_ms_per_batch\":%.3f,\"min_memcpy_ms\":%.3f,\"min_readonly_ms\":%.3f,"
                   "\"min_x_memcpy\":%.3f,\"min_x_readonly\":%.3f,\"min_speedup\":%.3f,"
                   "\"readonly_threads_ms\":%.3f,\"readonly_speedup\":%.3f,"
                   "\"loss\":%.9g}\n",
                   with_grad ? "loss+grad" : "loss", yl_kernel_name(&p), yl_dtype_name(dtype),
                   c ? threads : 1,
                   batch, size, classes, nboxes, m.compute_s[c] * 1e3, batch / m.compute_s[c],
                   f->bytes, m.memcpy_s * 1e3, m.x_memcpy[c], in_bytes, m.readonly_s * 1e3,
                   m.x_readonly[c], c ? m.speedup : 1.0, m.min_compute_s[c] * 1e3,
                   m.min_memcpy_s * 1e3, m.min_readonly_s * 1e3,
                   m.min_compute_s[c] / m.min_memcpy_s, m.min_compute_s[c] / m.min_readonly_s,
                   c ? m.min_compute_s[0] / m.min_compute_s[1] : 1.0,
                   (c ? m.readonly_n_s : m.readonly_s) * 1e3, c ? m.readonly_speedup : 1.0,
                   m.loss);
            fflush(stdout);
        }
    }
    free(floor_in.src);
    free(floor_in.dst);
    free(floor_in_grad.src);
    free(floor_in_grad.dst);
    for (int l = 0; l < L; l++) {
        free((void *)out[l].data);
        free(grad[l]);
    }
    free(bx);
    return 0;
}
