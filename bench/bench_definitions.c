/* bench_definitions: each loss definition's loss + gradient on the standard workload beside
 * keras-yolo3's, in the same run, on the same outputs and the same boxes (in each
 * definition's own ground-truth form). Rounds alternate the definitions, so background load
 * hits all alike; x_keras is the median of per-round ratios to keras-yolo3's time. One JSON
 * line per definition; no thresholds.
 *
 *   build/bench_definitions [--batch 16] [--size 416] [--classes 80] [--boxes 8]
 *                           [--reps 9] [--threads 1]
 *
 * Standard workload: B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes per image,
 * logits from N(0, 1) with a fixed seed, fp32 outputs and fp32 gradients.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "yololoss.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static double uniform(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

static double normal(void) {
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
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double run(const yl_problem *p, int threads, const yl_grads *g, double *loss) {
    yl_result r;
    yl_error err;
    double t0 = now_s();
    if (yl_compute(p, threads, g, &r, NULL, &err) != YL_OK) {
        fprintf(stderr, "bench_definitions: %s\n", err.msg);
        exit(1);
    }
    *loss = r.loss;
    return now_s() - t0;
}

int main(int argc, char **argv) {
    int batch = 16, size = 416, classes = 80, nboxes = 8, reps = 9, threads = 1;
    for (int a = 1; a + 1 < argc; a += 2) {
        int v = atoi(argv[a + 1]);
        if (!strcmp(argv[a], "--batch"))
            batch = v;
        else if (!strcmp(argv[a], "--size"))
            size = v;
        else if (!strcmp(argv[a], "--classes"))
            classes = v;
        else if (!strcmp(argv[a], "--boxes"))
            nboxes = v;
        else if (!strcmp(argv[a], "--reps"))
            reps = v;
        else if (!strcmp(argv[a], "--threads"))
            threads = v;
        else {
            fprintf(stderr, "bench_definitions: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    if (batch < 1 || size < 32 || size % 32 || classes < 1 || nboxes < 1 || reps < 1 ||
        threads < 1) {
        fprintf(stderr, "bench_definitions: bad arguments\n");
        return 2;
    }
    const int L = 3, ch = 3 * (5 + classes);
    yl_tensor out[3];
    void *grad[3];
    for (int l = 0; l < L; l++) {
        int64_t g = size / (32 >> l), n = (int64_t)batch * g * g * ch;
        float *o = malloc((size_t)n * sizeof(float));
        grad[l] = malloc((size_t)n * sizeof(float));
        if (!o || !grad[l]) {
            fprintf(stderr, "bench_definitions: out of memory\n");
            return 1;
        }
        for (int64_t i = 0; i < n; i++)
            o[i] = (float)normal();
        out[l] = (yl_tensor){.data = o, .dtype = YL_F32, .ndim = 4, .shape = {batch, g, g, ch}};
    }
    /* the same boxes: keras's corners in pixels, darknet's normalised centre and size */
    float *corners = malloc((size_t)(batch * nboxes * 5) * sizeof(float));
    float *centres = malloc((size_t)(batch * nboxes * 5) * sizeof(float));
    for (int i = 0; i < batch * nboxes; i++) {
        double w = 0.05 + 0.5 * uniform(), h = 0.05 + 0.5 * uniform();
        double x = w / 2 + (1 - w) * uniform(), y = h / 2 + (1 - h) * uniform();
        float c = (float)(int)(uniform() * classes);
        float *k = corners + 5 * i, *d = centres + 5 * i;
        k[0] = (float)((x - w / 2) * size), k[1] = (float)((y - h / 2) * size);
        k[2] = (float)((x + w / 2) * size), k[3] = (float)((y + h / 2) * size), k[4] = c;
        d[0] = (float)x, d[1] = (float)y, d[2] = (float)w, d[3] = (float)h, d[4] = c;
    }
    yl_tensor t_corners = {.data = corners, .dtype = YL_F32, .ndim = 3, .shape = {batch, nboxes, 5}};
    yl_tensor t_centres = {.data = centres, .dtype = YL_F32, .ndim = 3, .shape = {batch, nboxes, 5}};
    yl_problem p[YL_NUM_DEFINITIONS];
    yl_error err;
    for (int d = 0; d < YL_NUM_DEFINITIONS; d++) {
        yl_config cfg;
        yl_config_model(&cfg, d, 9);
        if (yl_problem_init(&p[d], &cfg, out, L, d == YL_DEF_KERAS ? &t_corners : &t_centres,
                            NULL, 0, &err) != YL_OK) {
            fprintf(stderr, "bench_definitions: %s: %s\n", yl_definition_name(d), err.msg);
            return 1;
        }
    }
    yl_grads g = {.dtype = YL_F32, .layer = {grad[0], grad[1], grad[2]}};
    double *t = calloc((size_t)(reps * YL_NUM_DEFINITIONS), sizeof *t);
    double *x = calloc((size_t)(reps * YL_NUM_DEFINITIONS), sizeof *x);
    double loss[YL_NUM_DEFINITIONS];
    for (int d = 0; d < YL_NUM_DEFINITIONS; d++) /* warm-up */
        run(&p[d], threads, &g, &loss[d]);
    for (int r = 0; r < reps; r++)
        for (int d = 0; d < YL_NUM_DEFINITIONS; d++)
            t[d * reps + r] = run(&p[d], threads, &g, &loss[d]);
    for (int r = 0; r < reps; r++)
        for (int d = 0; d < YL_NUM_DEFINITIONS; d++)
            x[d * reps + r] = t[d * reps + r] / t[YL_DEF_KERAS * reps + r];
    for (int d = 0; d < YL_NUM_DEFINITIONS; d++)
        printf("{\"bench\":\"definitions\",\"definition\":\"%s\",\"batch\":%d,\"size\":%d,"
               "\"classes\":%d,\"boxes\":%d,\"threads\":%d,\"grad\":\"FP32\",\"ms\":%.3f,"
               "\"x_keras\":%.3f,\"loss\":%.6g}\n",
               yl_definition_name(d), batch, size, classes, nboxes, threads,
               1e3 * median(t + d * reps, reps), median(x + d * reps, reps), loss[d]);
    return 0;
}
