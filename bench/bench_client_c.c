/* bench_client_c: the C client library (clients/c) end to end on the standard workload,
 * each way its tensors can travel, beside the core in-process measured in the same run.
 * One JSON line per mode, then a summary line; no thresholds, the numbers speak.
 *
 *   build/bench_client_c [--daemon build/yololossd] [--threads 2] [--requests 8]
 *                        [--batch 16] [--size 416] [--classes 80]
 *
 * Workload (bench_wire's): B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes per
 * image, fp32 logits from N(0, 1) with a fixed seed; loss + gradient, the gradient handed
 * back dense (what a caller gets). Modes: ylc_options.tensors x transport, dense/wire,
 * compact/wire, compact/shm (the default on loopback), dense/shm. Unlike bench_wire's shm
 * mode, the client copies the caller's tensors into its region and scatters the compact
 * gradient back inside the timed call: this is what a user of the library pays. Every
 * mode's loss and gradient are checked equal, bit for bit, to the dense/wire answer.
 * Gradients go into buffers reused across calls (req.grad_into), as the in-process run's
 * do; "fresh_ms_median" is the same mode with a new result buffer per call (the default),
 * which adds the page faults of 58 MB.
 * The daemon runs on loopback with --threads N, the in-process core with N threads, each
 * in-process run timed right before each request so both see the same load.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "yololoss.h"
#include "yololoss_client.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

static double normal(void)
{
    double u = uniform(), v = uniform();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_client_c: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* yololossd on 127.0.0.1, a free port; its URL into url. */
static pid_t start_daemon(const char *bin, int threads, char *url, size_t len)
{
    char log[] = "/tmp/bench-client-c-XXXXXX", th[16];
    int fd = mkstemp(log);
    if (fd < 0)
        die("mkstemp: %s", strerror(errno));
    snprintf(th, sizeof th, "%d", threads);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY); /* the access log */
        if (devnull >= 0)
            dup2(devnull, 1);
        execl(bin, bin, "--host", "127.0.0.1", "--port", "0", "--threads", th, (char *)NULL);
        _exit(127);
    }
    close(fd);
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "listening on ");
            if (p) {
                p += strlen("listening on ");
                p[strcspn(p, " \r\n")] = '\0';
                snprintf(url, len, "%s", p);
                fclose(f);
                unlink(log);
                return pid;
            }
        }
        if (f)
            fclose(f);
        usleep(25000);
    }
    die("%s did not start (see %s)", bin, log);
}

int main(int argc, char **argv)
{
    const char *daemon = "build/yololossd";
    int threads = 2, requests = 8, B = 16, size = 416, C = 80;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--daemon"))
            daemon = argv[i + 1];
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--requests"))
            requests = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--size"))
            size = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--classes"))
            C = atoi(argv[i + 1]);
        else
            die("unknown option %s", argv[i]);
    }
    if (threads < 1 || requests < 1 || requests > 1000 || B < 1 || size < 32 || size % 32 ||
        C < 1)
        die("bad option value");

    /* the workload */
    const int T = 8;
    float *out[3];
    size_t out_n[3];
    int64_t grid[3];
    for (int l = 0; l < 3; l++) {
        grid[l] = size / 32 << l;
        out_n[l] = (size_t)B * (size_t)(grid[l] * grid[l]) * (size_t)(3 * (5 + C));
        out[l] = malloc(out_n[l] * sizeof(float));
        if (!out[l])
            die("out of memory");
        for (size_t i = 0; i < out_n[l]; i++)
            out[l][i] = (float)normal();
    }
    float *boxes = calloc((size_t)B * T * 5, sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *r = boxes + ((size_t)b * T + (size_t)t) * 5;
            double bw = 10 + uniform() * size * 0.5, bh = 10 + uniform() * size * 0.5;
            r[0] = (float)floor(uniform() * (size - bw));
            r[1] = (float)floor(uniform() * (size - bh));
            r[2] = (float)(r[0] + floor(bw));
            r[3] = (float)(r[1] + floor(bh));
            r[4] = (float)(next_u64() % (uint64_t)C);
        }

    /* in-process */
    yl_config cfg;
    yl_config_default(&cfg, 9);
    yl_tensor c_out[3], c_boxes = {boxes, YL_F32, 3, {B, T, 5}};
    ylc_tensor t_out[3], t_boxes = {boxes, YLC_F32, 3, {B, T, 5}};
    for (int l = 0; l < 3; l++) {
        c_out[l] = (yl_tensor){out[l], YL_F32, 4, {B, grid[l], grid[l], 3 * (5 + C)}};
        t_out[l] = (ylc_tensor){out[l], YLC_F32, 4, {B, grid[l], grid[l], 3 * (5 + C)}};
    }
    yl_problem p;
    yl_error e;
    if (yl_problem_init(&p, &cfg, c_out, 3, &c_boxes, NULL, 0, &e) != YL_OK)
        die("%s", e.msg);
    yl_grads g = {.dtype = YL_F32};
    void *into[3];
    for (int l = 0; l < 3; l++) {
        g.layer[l] = malloc(out_n[l] * sizeof(float));
        into[l] = malloc(out_n[l] * sizeof(float));
    }

    char url[128];
    pid_t pid = start_daemon(daemon, threads, url, sizeof url);
    static const struct { const char *name; int tensors, transport; } modes[] = {
        {"dense/wire", YLC_TENSORS_DENSE, YLC_TRANSPORT_WIRE},
        {"compact/wire", YLC_TENSORS_COMPACT, YLC_TRANSPORT_WIRE},
        {"compact/shm", YLC_TENSORS_COMPACT, YLC_TRANSPORT_SHM},
        {"dense/shm", YLC_TENSORS_DENSE, YLC_TRANSPORT_SHM},
    };
    enum { NMODES = sizeof modes / sizeof modes[0] };
    double med[NMODES], inproc_med = 0, loss0 = 0;
    float *ref_grads[3] = {0};
    int64_t sent[NMODES], received[NMODES];
    for (int m = 0; m < NMODES; m++) {
        ylc_client *c;
        ylc_error err;
        ylc_options o = {.url = url, .model = "yolov3", .timeout = 120,
                         .tensors = modes[m].tensors, .transport = modes[m].transport};
        if (ylc_client_new(&c, &o, &err))
            die("%s", err.msg);
        ylc_request req = {.outputs = t_out, .n_outputs = 3, .boxes = &t_boxes, .grads = 1};
        double ms[1000], ip[1000], fresh[1000];
        for (int i = -1; i < requests; i++) { /* fresh buffers; i = -1: warm-up */
            ylc_result res;
            double t0 = now_s();
            if (ylc_compute(c, &req, &res, &err))
                die("%s: HTTP %d: %s", modes[m].name, err.status, err.msg);
            if (i >= 0)
                fresh[i] = (now_s() - t0) * 1e3;
            ylc_result_free(&res);
        }
        for (int l = 0; l < 3; l++)
            req.grad_into[l] = into[l];
        for (int i = -1; i < requests; i++) { /* i = -1: warm-up (registration, caches) */
            yl_result r;
            double t0 = now_s();
            if (yl_compute(&p, threads, &g, &r, NULL, &e) != YL_OK)
                die("%s", e.msg);
            double t1 = now_s();
            ylc_result res;
            if (ylc_compute(c, &req, &res, &err))
                die("%s: HTTP %d: %s", modes[m].name, err.status, err.msg);
            double t2 = now_s();
            if (i >= 0) {
                ip[i] = (t1 - t0) * 1e3;
                ms[i] = (t2 - t1) * 1e3;
            }
            if (m == 0 && i == -1) {
                loss0 = res.loss;
                for (int l = 0; l < 3; l++) {
                    ref_grads[l] = malloc(out_n[l] * sizeof(float));
                    memcpy(ref_grads[l], res.grads[l], out_n[l] * sizeof(float));
                }
            } else if (res.loss != loss0 || res.compact != (modes[m].tensors == YLC_TENSORS_COMPACT) ||
                       res.shm != (modes[m].transport == YLC_TRANSPORT_SHM)) {
                die("%s: not the dense/wire answer (or not sent as asked)", modes[m].name);
            } else {
                for (int l = 0; l < 3; l++)
                    if (memcmp(res.grads[l], ref_grads[l], out_n[l] * sizeof(float)))
                        die("%s: grad_%d differs from the dense/wire one", modes[m].name, l);
            }
            sent[m] = res.bytes_sent;
            received[m] = res.bytes_received;
            ylc_result_free(&res);
        }
        med[m] = median(ms, requests);
        double fresh_med = median(fresh, requests);
        double ipm = median(ip, requests);
        inproc_med += ipm / NMODES;
        printf("{\"bench\":\"client_c\",\"mode\":\"%s\",\"batch\":%d,\"size\":%d,\"classes\":%d,"
               "\"threads\":%d,\"requests\":%d,\"ms_median\":%.3f,\"inprocess_ms_median\":%.3f,"
               "\"ratio_to_inprocess\":%.2f,\"fresh_ms_median\":%.3f,\"bytes_sent\":%lld,"
               "\"bytes_received\":%lld}\n",
               modes[m].name, B, size, C, threads, requests, med[m], ipm, med[m] / ipm,
               fresh_med, (long long)sent[m], (long long)received[m]);
        fflush(stdout);
        ylc_client_free(c);
    }
    printf("{\"bench\":\"client_c_summary\",\"inprocess_ms\":%.3f,\"dense_wire_ms\":%.3f,"
           "\"compact_wire_ms\":%.3f,\"compact_shm_ms\":%.3f,\"dense_shm_ms\":%.3f,"
           "\"compact_bytes_fraction\":%.4f,\"identical\":true}\n",
           inproc_med, med[0], med[1], med[2], med[3],
           (double)(sent[1] + received[1]) / (double)(sent[0] + received[0]));
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    for (int l = 0; l < 3; l++) {
        free(out[l]);
        free(g.layer[l]);
        free(ref_grads[l]);
        free(into[l]);
    }
    free(boxes);
    return 0;
}
