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

#include "bench_common.h"
#include "yololoss.h"
#include "yololoss_client.h"

int main(int argc, char **argv)
{
    bench_name = "bench_client_c";
    const char *daemon = "build/yololossd";
    int threads = 2, requests = 8, B = 16, size = 416, C = 80;
    const option opts[] = {
        {"--daemon", NULL, &daemon},
        {"--threads", &threads, NULL},
        {"--requests", &requests, NULL},
        {"--batch", &B, NULL},
        {"--size", &size, NULL},
        {"--classes", &C, NULL},
        {NULL, NULL, NULL},
    };
    const char *bad = parse_options(argc, argv, opts);
    if (bad)
        die("unknown option %s", bad);
    if (threads < 1 || requests < 1 || requests > 1000 || B < 1 || size < 32 || size % 32 ||
        C < 1)
        die("bad option value");

    workload w;
    make_workload(&w, B, size, C);

    /* in-process */
    yl_tensor c_out[3], c_boxes;
    ylc_tensor t_out[3], t_boxes = {w.boxes, YLC_F32, 3, {B, w.T, 5}};
    for (int l = 0; l < 3; l++)
        t_out[l] = (ylc_tensor){w.out[l], YLC_F32, 4, {B, w.grid[l], w.grid[l], 3 * (5 + C)}};
    yl_problem p;
    yl_error e;
    workload_problem(&w, c_out, &c_boxes, &p);
    yl_grads g = {.dtype = YL_F32};
    void *into[3];
    for (int l = 0; l < 3; l++) {
        g.layer[l] = malloc(w.out_n[l] * sizeof(float));
        into[l] = malloc(w.out_n[l] * sizeof(float));
    }

    unsigned port;
    pid_t pid = start_daemon(daemon, threads, NULL, &port);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
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
                    ref_grads[l] = malloc(w.out_n[l] * sizeof(float));
                    memcpy(ref_grads[l], res.grads[l], w.out_n[l] * sizeof(float));
                }
            } else if (res.loss != loss0 || res.compact != (modes[m].tensors == YLC_TENSORS_COMPACT) ||
                       res.shm != (modes[m].transport == YLC_TRANSPORT_SHM)) {
                die("%s: not the dense/wire answer (or not sent as asked)", modes[m].name);
            } else {
                for (int l = 0; l < 3; l++)
                    if (memcmp(res.grads[l], ref_grads[l], w.out_n[l] * sizeof(float)))
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
    stop_daemon(pid);
    for (int l = 0; l < 3; l++) {
        free(g.layer[l]);
        free(ref_grads[l]);
        free(into[l]);
    }
    free_workload(&w);
    return 0;
}
