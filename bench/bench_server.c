/* bench_server: yololossd end to end on the core's standard workload, against the core
 * in-process on the same batch in the same run. One JSON line per configuration; no
 * thresholds, the numbers speak.
 *
 *   build/bench_server [--daemon build/yololossd] [--threads N] [--requests 20]
 *                      [--batch 16] [--size 416] [--classes 80] [--json-batch 2]
 *                      [--eval-only 1]
 *
 * Standard workload (issue "core"): B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes
 * per image, logits from N(0, 1) with a fixed seed, fp32. Configurations: the binary
 * protocol, loss only (loss, loss_terms, stats) and loss + gradient (binary grad_0..2), with
 * 1, 2 and 4 concurrent clients (keep-alive connections), each sending --requests requests;
 * then the JSON protocol (loss only, a smaller batch) for request-JSON throughput.
 * Reported: images/s, request MB/s, p50/p99 latency, and in-process ms for the same batch
 * and thread count (yl_compute, median of 9), and their ratio. Last, "server_eval": the same
 * loss-only batch recorded at a step with and without parameter eval (a SQLite history),
 * p50 of each and the difference per image (--eval-only 1 runs just that).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "yololoss.h"

/* In-process: median ms of yl_compute on the same batch. */
static double inprocess_ms(const workload *w, int threads, bool grads)
{
    yl_tensor out[3], boxes;
    yl_problem p;
    yl_error err;
    workload_problem(w, out, &boxes, &p);
    float *g[3];
    yl_grads gs = {.dtype = YL_F32};
    for (int l = 0; l < 3; l++)
        gs.layer[l] = g[l] = malloc(w->out_n[l] * sizeof(float));
    double t[9];
    yl_result r;
    yl_compute(&p, threads, grads ? &gs : NULL, &r, NULL, &err);
    for (int i = 0; i < 9; i++) {
        double t0 = now_s();
        yl_compute(&p, threads, grads ? &gs : NULL, &r, NULL, &err);
        t[i] = (now_s() - t0) * 1e3;
    }
    for (int l = 0; l < 3; l++)
        free(g[l]);
    return median(t, 9);
}

/* params: more request parameters ("\"run\":\"x\",..."), or "". */
static buf make_request_with(const workload *w, bool binary, bool grads, const char *params,
                             size_t *header_len)
{
    buf h = {0};
    putf(&h, "{\"inputs\":[");
    for (int l = 0; l < 4; l++) {
        bool bx = l == 3;
        const float *v = bx ? w->boxes : w->out[l];
        size_t n = bx ? (size_t)w->B * (size_t)w->T * 5 : w->out_n[l];
        if (bx)
            putf(&h, "%s{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[%d,%d,5]", ",", w->B,
                 w->T);
        else
            putf(&h, "%s{\"name\":\"output_%d\",\"datatype\":\"FP32\",\"shape\":[%d,%lld,%lld,%d]",
                 l ? "," : "", l, w->B, (long long)w->grid[l], (long long)w->grid[l],
                 3 * (5 + w->C));
        if (binary) {
            putf(&h, ",\"parameters\":{\"binary_data_size\":%zu}}", n * sizeof(float));
        } else {
            putf(&h, ",\"data\":[");
            for (size_t i = 0; i < n; i++)
                putf(&h, "%s%.9g", i ? "," : "", (double)v[i]);
            putf(&h, "]}");
        }
    }
    putf(&h, "],\"outputs\":[{\"name\":\"loss\"},{\"name\":\"loss_terms\"},{\"name\":\"stats\"}");
    if (grads)
        putf(&h, ",{\"name\":\"grad_0\"},{\"name\":\"grad_1\"},{\"name\":\"grad_2\"}");
    putf(&h, "],\"parameters\":{\"binary_data_output\":%s%s%s}}", binary ? "true" : "false",
         *params ? "," : "", params);
    *header_len = h.len;
    if (binary) {
        for (int l = 0; l < 3; l++)
            put(&h, w->out[l], w->out_n[l] * sizeof(float));
        put(&h, w->boxes, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
    }
    return h;
}

static buf make_request(const workload *w, bool binary, bool grads, size_t *header_len)
{
    return make_request_with(w, binary, grads, "", header_len);
}

typedef struct {
    unsigned port;
    const buf *req;
    size_t header_len;
    bool binary;
    int n;
    double *lat;
    size_t resp_bytes;
    int failures;
} client;

static size_t sink(char *d, size_t s, size_t n, void *ud)
{
    (void)d;
    *(size_t *)ud += s * n;
    return s * n;
}

static void *run_client(void *arg)
{
    client *c = arg;
    CURL *h = curl_easy_init();
    char url[128], ih[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v2/models/yolov3/infer", c->port);
    snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", c->header_len);
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    if (c->binary)
        hl = curl_slist_append(hl, ih);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->req->p);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->req->len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->resp_bytes);
    /* large client buffers: measure the server, not libcurl's 64 KiB default chunks */
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 1L << 20);
    for (int i = 0; i < c->n; i++) {
        double t0 = now_s();
        long status = 0;
        if (curl_easy_perform(h) != CURLE_OK ||
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
            c->failures++;
        c->lat[i] = (now_s() - t0) * 1e3;
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* The loopback floor: the same bytes through a TCP connection on 127.0.0.1 and back, with
 * nothing else done to them (what any HTTP server pays at least). */

typedef struct {
    int listen_fd;
    size_t in, out;
} echo_job;

static void *echo_peer(void *arg)
{
    echo_job *j = arg;
    int fd = accept(j->listen_fd, NULL, NULL);
    char *b = malloc(1 << 20);
    size_t got = 0;
    while (got < j->in) {
        ssize_t k = recv(fd, b, 1 << 20, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    memset(b, 0, 1 << 20);
    size_t sent = 0;
    while (sent < j->out) {
        size_t n = j->out - sent < (1 << 20) ? j->out - sent : (1 << 20);
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k <= 0)
            break;
        sent += (size_t)k;
    }
    free(b);
    close(fd);
    return NULL;
}

static double loopback_ms(size_t in, size_t out)
{
    double t[5];
    char *b = calloc(1, 1 << 20);
    for (int rep = 0; rep < 5; rep++) {
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t al = sizeof a;
        bind(ls, (struct sockaddr *)&a, sizeof a);
        listen(ls, 1);
        getsockname(ls, (struct sockaddr *)&a, &al);
        echo_job j = {ls, in, out};
        pthread_t th;
        pthread_create(&th, NULL, echo_peer, &j);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        double t0 = now_s();
        connect(fd, (struct sockaddr *)&a, sizeof a);
        size_t sent = 0, got = 0;
        while (sent < in) {
            size_t n = in - sent < (1 << 20) ? in - sent : (1 << 20);
            ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
            if (k <= 0)
                break;
            sent += (size_t)k;
        }
        while (got < out) {
            ssize_t k = recv(fd, b, 1 << 20, 0);
            if (k <= 0)
                break;
            got += (size_t)k;
        }
        t[rep] = (now_s() - t0) * 1e3;
        close(fd);
        pthread_join(th, NULL);
        close(ls);
    }
    free(b);
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

static double run_config(const char *protocol, const char *mode, const workload *w, unsigned port,
                       int threads, int clients, int requests, const buf *req, size_t header_len,
                       bool binary, double inproc_ms)
{
    client c[8];
    pthread_t th[8];
    double t0 = now_s();
    for (int i = 0; i < clients; i++) {
        c[i] = (client){port, req, header_len, binary, requests, calloc((size_t)requests, sizeof(double)), 0, 0};
        pthread_create(&th[i], NULL, run_client, &c[i]);
    }
    int failures = 0, n = 0;
    double *all = calloc((size_t)(clients * requests), sizeof(double));
    for (int i = 0; i < clients; i++) {
        pthread_join(th[i], NULL);
        failures += c[i].failures;
        for (int k = 0; k < requests; k++)
            all[n++] = c[i].lat[k];
        free(c[i].lat);
    }
    double wall = now_s() - t0;
    qsort(all, (size_t)n, sizeof all[0], cmp_double);
    double p50 = all[n / 2], p99 = all[(int)(0.99 * (n - 1) + 0.5)];
    double images = (double)w->B * n / wall, mbs = (double)req->len * n / wall / 1e6;
    double resp_mb = (double)c[0].resp_bytes / requests / 1e6;
    double floor_ms = loopback_ms(req->len, c[0].resp_bytes / (size_t)requests);
    printf("{\"bench\":\"server\",\"protocol\":\"%s\",\"mode\":\"%s\",\"threads\":%d,\"clients\":%d,"
           "\"batch\":%d,\"size\":%d,\"classes\":%d,\"requests\":%d,\"failures\":%d,"
           "\"request_mb\":%.2f,\"response_mb\":%.2f,\"images_per_s\":%.1f,\"request_mb_per_s\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"inprocess_ms\":%.3f,\"p50_x_inprocess\":%.2f,"
           "\"inprocess_images_per_s\":%.1f,\"loopback_floor_ms\":%.3f,"
           "\"p50_x_floor_plus_inprocess\":%.2f}\n",
           protocol, mode, threads, clients, w->B, w->size, w->C, n, failures,
           (double)req->len / 1e6, resp_mb, images, mbs, p50, p99, inproc_ms, p50 / inproc_ms,
           (double)w->B / inproc_ms * 1e3, floor_ms, p50 / (floor_ms + inproc_ms));
    fflush(stdout);
    free(all);
    return p50;
}

/* What parameter eval adds to a recorded request: the same batch recorded at one step
 * (run, step, image_offset) with and without eval (decode + COCO records + their rows in
 * the history), on one client, against a daemon with a SQLite history. */
static void eval_overhead(const char *daemon, const workload *w, int threads, int requests)
{
    char hist[] = "/tmp/bench_eval_history_XXXXXX";
    int fd = mkstemp(hist);
    if (fd < 0)
        die("mkstemp: %s", strerror(errno));
    close(fd);
    const char *args[] = {"--history", hist, NULL};
    unsigned port;
    pid_t pid = start_daemon(daemon, threads, args, &port);
    double p50[2], inproc = inprocess_ms(w, threads, false);
    for (int e = 0; e < 2; e++) {
        size_t hl;
        buf req = make_request_with(w, true, false,
                                    e ? "\"run\":\"bench-eval\",\"step\":1,\"image_offset\":0,"
                                        "\"eval\":true"
                                      : "\"run\":\"bench-rec\",\"step\":1,\"image_offset\":0",
                                    &hl);
        run_config("binary", e ? "loss+record+eval" : "loss+record", w, port, threads, 1, 2, &req,
                   hl, true, inproc); /* warm-up */
        p50[e] = run_config("binary", e ? "loss+record+eval" : "loss+record", w, port, threads, 1,
                            requests, &req, hl, true, inproc);
        free(req.p);
    }
    printf("{\"bench\":\"server_eval\",\"batch\":%d,\"size\":%d,\"classes\":%d,"
           "\"threads\":%d,\"record_p50_ms\":%.3f,\"record_eval_p50_ms\":%.3f,"
           "\"eval_ms_per_image\":%.4f}\n",
           w->B, w->size, w->C, threads, p50[0], p50[1], (p50[1] - p50[0]) / w->B);
    fflush(stdout);
    stop_daemon(pid);
    unlink(hist);
}

int main(int argc, char **argv)
{
    bench_name = "bench_server";
    const char *daemon = "build/yololossd";
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), requests = 20, B = 16, size = 416, C = 80,
        json_batch = 2, eval_only = 0;
    const option opts[] = {
        {"--eval-only", &eval_only, NULL},
        {"--daemon", NULL, &daemon},
        {"--threads", &threads, NULL},
        {"--requests", &requests, NULL},
        {"--batch", &B, NULL},
        {"--size", &size, NULL},
        {"--classes", &C, NULL},
        {"--json-batch", &json_batch, NULL},
        {NULL, NULL, NULL},
    };
    const char *bad = parse_options(argc, argv, opts);
    if (bad) {
        fprintf(stderr, "bench_server: unknown option %s\n", bad);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    signal(SIGPIPE, SIG_IGN);
    workload w;
    make_workload(&w, B, size, C);
    if (eval_only) {
        eval_overhead(daemon, &w, threads, requests);
        curl_global_cleanup();
        return 0;
    }
    unsigned port;
    static const char *const max_json[] = {"--max-json", "1G", NULL};
    pid_t pid = start_daemon(daemon, threads, max_json, &port);
    for (int g = 0; g < 2; g++) {
        bool grads = g == 1;
        size_t hl;
        buf req = make_request(&w, true, grads, &hl);
        double inproc = inprocess_ms(&w, threads, grads);
        run_config("binary", grads ? "loss+grad" : "loss", &w, port, threads, 1, 2, &req, hl, true,
                   inproc); /* warm-up, also printed */
        for (int clients = 1; clients <= 4; clients *= 2)
            run_config("binary", grads ? "loss+grad" : "loss", &w, port, threads, clients,
                       requests, &req, hl, true, inproc);
        free(req.p);
    }
    workload wj;
    reseed();
    make_workload(&wj, json_batch, size, C);
    size_t hl;
    buf req = make_request(&wj, false, false, &hl);
    double inproc = inprocess_ms(&wj, threads, false);
    for (int clients = 1; clients <= 2; clients *= 2)
        run_config("json", "loss", &wj, port, threads, clients, requests / 4 > 2 ? requests / 4 : 2,
                   &req, hl, false, inproc);
    free(req.p);
    bool clean_exit = stop_daemon(pid);
    eval_overhead(daemon, &w, threads, requests);
    curl_global_cleanup();
    return clean_exit ? 0 : 1;
}
