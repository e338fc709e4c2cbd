/* bench_wire: what the wire costs on the standard workload, dense vs compact tensors vs shared
 * memory, over loopback and over links limited to 10 and 1 Gbit, beside the core in-process
 * measured in the same run. One JSON line per configuration, then one summary line per link;
 * no thresholds, the numbers speak.
 *
 *   build/bench_wire [--daemon build/yololossd] [--threads N] [--requests 8]
 *                    [--links 10gbit,1gbit] [--batch 16] [--size 416] [--classes 80]
 *                    [--modes dense,compact,shm] [--versus OTHER_DAEMON]
 *
 * Standard workload: B = 16, 416x416 (grids 13, 26, 52), 80 classes, 8 boxes per image,
 * logits from N(0, 1) with a fixed seed, fp32 (bench_server's). Modes, each loss only and
 * loss + gradient:
 *   dense    output_l as binary tensors; gradients grad_l back as binary
 *   compact  output_l_box/_rows/_index (rows chosen by docs/protocol.md's rule from the
 *            boxes: all 3 anchors of each box's cell, per layer), built from the dense
 *            tensors by the client inside the timed loop; grad_l_obj/_rows back
 *   shm      Triton's system shared memory: the dense tensors in a registered region, the
 *            gradients written into another; only the JSON header crosses the socket.
 *            The client's tensors are taken to live in the region already (a client that
 *            allocates them there); copy_ms says what copying them in would add.
 * The same process plays the client (libcurl, one keep-alive connection, Expect off),
 * encoding the requests as the clients do; bench/bench_wire.py runs the same workload
 * through the Python client (with --inprocess-helper below for the workload and the
 * in-process time).
 *
 * --modes runs a subset (the summary line needs all three); --links none: loopback only.
 * --versus compares two builds of the daemon under the same load: both run, and each
 * shared-memory request goes to one then the other (who goes first alternates), each right
 * after its own in-process run; one "wire_versus" line per daemon, link and loss / loss +
 * gradient. (Runs of a whole benchmark one after the other, on a machine whose load
 * changes from second to second, differed by more than the change being measured.)
 *
 * Links: "loopback" is the host's loopback. For each of --links, when run as root, the
 * benchmark re-runs itself inside a private network namespace (`unshare -n`) whose loopback
 * is limited with `tc qdisc add dev lo root tbf rate RATE` and starts its own daemon there:
 * daemon and client both inside. Both directions share the one limited interface, as
 * request and response follow each other that costs nothing. Not root: a line saying so.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"
#include "yololoss.h"

/* The core in-process on the same batch, gradients into buffers (the same thread count as
 * the daemon's): timed right before each request, so that both see the same load. */
typedef struct {
    yl_problem p;
    yl_grads g;
    int threads;
} inproc;

static void inproc_init(inproc *ip, const workload *w, int threads)
{
    static yl_tensor out[3], boxes; /* the problem borrows them */
    workload_problem(w, out, &boxes, &ip->p);
    ip->g = (yl_grads){.dtype = YL_F32};
    for (int l = 0; l < 3; l++)
        ip->g.layer[l] = malloc(w->out_n[l] * sizeof(float));
    ip->threads = threads;
}

static double inproc_ms(const inproc *ip, bool grads)
{
    yl_result r;
    yl_error err;
    double t0 = now_s();
    if (yl_compute(&ip->p, ip->threads, grads ? &ip->g : NULL, &r, NULL, &err) != YL_OK)
        die("%s", err.msg);
    return (now_s() - t0) * 1e3;
}

/* ------------------------------------------------------------------------------------ */
/* Request bodies                                                                          */

static void outputs_json(buf *h, bool grads, const char *const *grad_names, const char *shm_out,
                         const size_t *shm_off, const size_t *shm_size)
{
    putf(h, "],\"outputs\":[{\"name\":\"loss\",\"parameters\":{\"binary_data\":false}},"
            "{\"name\":\"loss_terms\"},{\"name\":\"stats\"}");
    if (grads)
        for (int k = 0; grad_names[k]; k++) {
            if (shm_out)
                putf(h, ",{\"name\":\"%s\",\"parameters\":{\"shared_memory_region\":\"%s\","
                        "\"shared_memory_offset\":%zu,\"shared_memory_byte_size\":%zu}}",
                     grad_names[k], shm_out, shm_off[k], shm_size[k]);
            else
                putf(h, ",{\"name\":\"%s\"}", grad_names[k]);
        }
    putf(h, "],\"parameters\":{\"binary_data_output\":true}}");
}

static const char *const dense_grads[] = {"grad_0", "grad_1", "grad_2", NULL};
static const char *const compact_grads[] = {"grad_0_obj", "grad_0_rows", "grad_1_obj",
                                            "grad_1_rows", "grad_2_obj", "grad_2_rows", NULL};

static void dense_request(const workload *w, bool grads, buf *b, size_t *header_len)
{
    b->len = 0;
    putf(b, "{\"inputs\":[");
    for (int l = 0; l < 3; l++)
        putf(b, "%s{\"name\":\"output_%d\",\"datatype\":\"FP32\",\"shape\":[%d,%lld,%lld,%d],"
                "\"parameters\":{\"binary_data_size\":%zu}}",
             l ? "," : "", l, w->B, (long long)w->grid[l], (long long)w->grid[l], 3 * (5 + w->C),
             w->out_n[l] * sizeof(float));
    putf(b, ",{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[%d,%d,5],"
            "\"parameters\":{\"binary_data_size\":%zu}}",
         w->B, w->T, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
    outputs_json(b, grads, dense_grads, NULL, NULL, NULL);
    *header_len = b->len;
    for (int l = 0; l < 3; l++)
        put(b, w->out[l], w->out_n[l] * sizeof(float));
    put(b, w->boxes, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The compact request, built from the dense tensors as a client does: the box channels of
 * every anchor, and the rows of docs/protocol.md's anchors (per valid box and layer, the 3
 * anchors of the cell holding its centre, computed as keras does), sorted and unique. */
static void compact_request(const workload *w, bool grads, buf *b, size_t *header_len,
                            int64_t *n_rows)
{
    int C5 = 5 + w->C;
    int64_t *idx[3];
    for (int l = 0; l < 3; l++) {
        int64_t G = w->grid[l];
        idx[l] = malloc((size_t)w->B * (size_t)w->T * 3 * sizeof(int64_t));
        int64_t n = 0;
        for (int bi = 0; bi < w->B; bi++)
            for (int t = 0; t < w->T; t++) {
                const float *r = w->boxes + ((size_t)bi * (size_t)w->T + (size_t)t) * 5;
                if (!(r[2] > r[0]))
                    continue;
                /* keras: centre (min + max) // 2 in float32, divided by the input size and
                 * rounded to float32, times the grid, floored */
                float cx = floorf((r[0] + r[2]) / 2.0f), cy = floorf((r[1] + r[3]) / 2.0f);
                float xn = (float)((double)cx / (32.0 * (double)w->grid[0]));
                float yn = (float)((double)cy / (32.0 * (double)w->grid[0]));
                int64_t i = (int64_t)floor((double)xn * (double)G);
                int64_t j = (int64_t)floor((double)yn * (double)G);
                if (i < 0 || j < 0 || i >= G || j >= G)
                    continue;
                for (int k = 0; k < 3; k++)
                    idx[l][n++] = ((bi * G + j) * G + i) * 3 + k;
            }
        qsort(idx[l], (size_t)n, sizeof(int64_t), cmp_i64);
        int64_t u = 0;
        for (int64_t k = 0; k < n; k++)
            if (u == 0 || idx[l][k] != idx[l][u - 1])
                idx[l][u++] = idx[l][k];
        n_rows[l] = u;
    }
    b->len = 0;
    putf(b, "{\"inputs\":[");
    for (int l = 0; l < 3; l++) {
        int64_t G = w->grid[l], A = (int64_t)w->B * G * G * 3;
        putf(b, "%s{\"name\":\"output_%d_box\",\"datatype\":\"FP32\",\"shape\":[%d,%lld,%lld,3,5],"
                "\"parameters\":{\"binary_data_size\":%lld}}",
             l ? "," : "", l, w->B, (long long)G, (long long)G, (long long)(A * 5 * 4));
        putf(b, ",{\"name\":\"output_%d_rows\",\"datatype\":\"FP32\",\"shape\":[%lld,%d],"
                "\"parameters\":{\"binary_data_size\":%lld}}",
             l, (long long)n_rows[l], C5, (long long)(n_rows[l] * C5 * 4));
        putf(b, ",{\"name\":\"output_%d_index\",\"datatype\":\"INT64\",\"shape\":[%lld],"
                "\"parameters\":{\"binary_data_size\":%lld}}",
             l, (long long)n_rows[l], (long long)(n_rows[l] * 8));
    }
    putf(b, ",{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[%d,%d,5],"
            "\"parameters\":{\"binary_data_size\":%zu}}",
         w->B, w->T, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
    outputs_json(b, grads, compact_grads, NULL, NULL, NULL);
    *header_len = b->len;
    for (int l = 0; l < 3; l++) {
        int64_t G = w->grid[l], A = (int64_t)w->B * G * G * 3;
        reserve(b, (size_t)A * 5 * 4);
        float *box = (float *)(void *)(b->p + b->len);
        const float *src = w->out[l];
        for (int64_t a = 0; a < A; a++)
            memcpy(box + a * 5, src + a * C5, 5 * sizeof(float));
        b->len += (size_t)A * 5 * 4;
        reserve(b, (size_t)(n_rows[l] * C5 * 4));
        for (int64_t k = 0; k < n_rows[l]; k++)
            memcpy(b->p + b->len + (size_t)(k * C5 * 4), src + idx[l][k] * C5,
                   (size_t)C5 * sizeof(float));
        b->len += (size_t)(n_rows[l] * C5 * 4);
        put(b, idx[l], (size_t)n_rows[l] * 8);
        free(idx[l]);
    }
    put(b, w->boxes, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
}

/* ------------------------------------------------------------------------------------ */
/* Shared memory                                                                           */

typedef struct {
    char key[64], name[64];
    size_t size;
    uint8_t *p;
} region;

static void region_make(region *r, const char *tag, size_t size)
{
    snprintf(r->key, sizeof r->key, "/yl-bench-wire-%d-%s", (int)getpid(), tag);
    snprintf(r->name, sizeof r->name, "bench-%d-%s", (int)getpid(), tag);
    int fd = shm_open(r->key, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size))
        die("shm_open %s: %s", r->key, strerror(errno));
    r->p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (r->p == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    r->size = size;
}

static void shm_request(const workload *w, bool grads, const region *in, const region *out,
                        buf *b)
{
    b->len = 0;
    size_t off = 0;
    putf(b, "{\"inputs\":[");
    for (int l = 0; l < 3; l++) {
        size_t n = w->out_n[l] * sizeof(float);
        putf(b, "%s{\"name\":\"output_%d\",\"datatype\":\"FP32\",\"shape\":[%d,%lld,%lld,%d],"
                "\"parameters\":{\"shared_memory_region\":\"%s\",\"shared_memory_offset\":%zu,"
                "\"shared_memory_byte_size\":%zu}}",
             l ? "," : "", l, w->B, (long long)w->grid[l], (long long)w->grid[l], 3 * (5 + w->C),
             in->name, off, n);
        off += n;
    }
    putf(b, ",{\"name\":\"boxes\",\"datatype\":\"FP32\",\"shape\":[%d,%d,5],"
            "\"parameters\":{\"shared_memory_region\":\"%s\",\"shared_memory_offset\":%zu,"
            "\"shared_memory_byte_size\":%zu}}",
         w->B, w->T, in->name, off, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
    size_t goff[3], gsize[3], o = 0;
    for (int l = 0; l < 3; l++) {
        goff[l] = o;
        gsize[l] = w->out_n[l] * sizeof(float);
        o += gsize[l];
    }
    outputs_json(b, grads, dense_grads, out->name, goff, gsize);
}

/* Copy the tensors into the region (what a client whose tensors live elsewhere adds). */
/* The two regions of a workload: one for the inputs (outputs and boxes), one for the
 * gradients. */
static void regions_make(const workload *w, region *in, region *out)
{
    size_t in_bytes = (size_t)w->B * (size_t)w->T * 5 * sizeof(float), g_bytes = 0;
    for (int l = 0; l < 3; l++) {
        in_bytes += w->out_n[l] * sizeof(float);
        g_bytes += w->out_n[l] * sizeof(float);
    }
    region_make(in, "in", in_bytes);
    region_make(out, "out", g_bytes);
}

static void shm_fill(const workload *w, const region *in)
{
    size_t off = 0;
    for (int l = 0; l < 3; l++) {
        memcpy(in->p + off, w->out[l], w->out_n[l] * sizeof(float));
        off += w->out_n[l] * sizeof(float);
    }
    memcpy(in->p + off, w->boxes, (size_t)w->B * (size_t)w->T * 5 * sizeof(float));
}

/* ------------------------------------------------------------------------------------ */
/* HTTP                                                                                    */

typedef struct {
    CURL *h;
    char base[96];
    buf resp;
} conn;

static size_t on_data(char *d, size_t s, size_t n, void *ud)
{
    put(ud, d, s * n);
    return s * n;
}

static void conn_init(conn *c, unsigned port)
{
    memset(c, 0, sizeof *c);
    c->h = curl_easy_init();
    snprintf(c->base, sizeof c->base, "http://127.0.0.1:%u", port);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(c->h, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
    curl_easy_setopt(c->h, CURLOPT_BUFFERSIZE, 1L << 20);
}

/* POST body to path; the status; the response in c->resp. */
static long post(conn *c, const char *path, const buf *body, size_t header_len)
{
    char url[256], ih[96];
    snprintf(url, sizeof url, "%s%s", c->base, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
    if (header_len) {
        snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", header_len);
        hl = curl_slist_append(hl, ih);
    }
    c->resp.len = 0;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body->p);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    long status = 0;
    if (curl_easy_perform(c->h) != CURLE_OK ||
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
        status = 0;
    curl_slist_free_all(hl);
    return status;
}

/* The loss in a response ("loss" asked for as JSON). */
static double response_loss(const conn *c)
{
    const char *p = c->resp.p ? strstr(c->resp.p, "\"name\":\"loss\"") : NULL;
    p = p ? strstr(p, "\"data\":[") : NULL;
    return p ? strtod(p + 8, NULL) : NAN;
}

/* ------------------------------------------------------------------------------------ */

typedef struct {
    double p50_ms, min_ms, prep_ms, loss;
    double inproc_ms, x_inproc; /* median in-process ms; median of per-round ratios */
    size_t req_bytes, resp_bytes;
    int n, failures;
} result;

enum { DENSE, COMPACT, SHM };
static const char *const mode_name[] = {"dense", "compact", "shm"};

static result run_mode(conn *c, const workload *w, const inproc *ip, int mode, bool grads, int n,
                       const region *in, const region *out)
{
    result r = {0};
    double lat[64], prep[64], base[64], ratio[64];
    buf body = {0};
    int64_t rows[3];
    for (int i = 0; i < n + 1; i++) { /* the first is a warm-up */
        double t_in = inproc_ms(ip, grads);
        double t0 = now_s();
        size_t hl = 0;
        if (mode == DENSE)
            dense_request(w, grads, &body, &hl);
        else if (mode == COMPACT)
            compact_request(w, grads, &body, &hl, rows);
        else
            shm_request(w, grads, in, out, &body);
        double t1 = now_s();
        long st = post(c, "/v2/models/yolov3/infer", &body, hl);
        double t2 = now_s();
        if (st != 200) {
            r.failures++;
            fprintf(stderr, "bench_wire: %s: HTTP %ld %.300s\n", mode_name[mode], st,
                    c->resp.p ? c->resp.p : "");
        }
        if (i == 0)
            continue;
        /* a dense request's body is the client's tensors: building it is not client work */
        prep[i - 1] = mode == DENSE ? 0 : (t1 - t0) * 1e3;
        lat[i - 1] = (t2 - t0) * 1e3 - (mode == DENSE ? (t1 - t0) * 1e3 : 0);
        base[i - 1] = t_in;
        ratio[i - 1] = lat[i - 1] / t_in;
        r.req_bytes = body.len;
        r.resp_bytes = c->resp.len;
    }
    r.loss = response_loss(c);
    r.n = n;
    r.prep_ms = median(prep, n);
    r.min_ms = lat[0];
    for (int i = 1; i < n; i++)
        r.min_ms = lat[i] < r.min_ms ? lat[i] : r.min_ms;
    r.p50_ms = median(lat, n);
    r.inproc_ms = median(base, n);
    r.x_inproc = median(ratio, n);
    free(body.p);
    return r;
}

static const char *modes = "dense,compact,shm";

/* Whether mode m is among --modes (a comma-separated list). */
static bool mode_wanted(int m)
{
    size_t n = strlen(mode_name[m]);
    for (const char *p = modes; (p = strstr(p, mode_name[m])); p += n)
        if ((p == modes || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

static void run_link(const char *link, const char *daemon, int threads, int requests, int B,
                     int size, int C)
{
    workload w;
    reseed();
    make_workload(&w, B, size, C);
    unsigned port;
    static const char *const history_none[] = {"--history", "none", NULL};
    pid_t pid = start_daemon(daemon, threads, history_none, &port);
    conn c;
    conn_init(&c, port);

    /* shared memory: one region for the inputs, one for the gradients */
    region in, out;
    regions_make(&w, &in, &out);
    double tc0 = now_s();
    shm_fill(&w, &in);
    double copy_ms = (now_s() - tc0) * 1e3;
    region *rs[2] = {&in, &out};
    for (int k = 0; k < 2; k++) {
        buf reg = {0};
        putf(&reg, "{\"key\":\"%s\",\"offset\":0,\"byte_size\":%zu}", rs[k]->key, rs[k]->size);
        char path[160];
        snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/register", rs[k]->name);
        long st = post(&c, path, &reg, 0);
        if (st != 200)
            die("register %s: HTTP %ld %s", rs[k]->name, st, c.resp.p ? c.resp.p : "");
        free(reg.p);
    }
    /* copy_ms again, warm (the first copy faults the region's pages in) */
    double copies[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        shm_fill(&w, &in);
        copies[i] = (now_s() - t0) * 1e3;
    }
    copy_ms = median(copies, 5);

    bool slow = !strcmp(link, "1gbit");
    result res[3][2] = {{{0}}};
    bool all_modes = true;
    inproc ip;
    inproc_init(&ip, &w, threads);
    for (int g = 0; g < 2; g++) {
        for (int m = 0; m < 3; m++) {
            if (!mode_wanted(m)) {
                all_modes = false;
                continue;
            }
            /* the fast modes are cheap: more rounds make their medians steadier */
            int n = m != DENSE ? (3 * requests > 60 ? 60 : 3 * requests)
                    : slow     ? (requests > 3 ? 3 : requests)
                               : requests;
            res[m][g] = run_mode(&c, &w, &ip, m, g, n, &in, &out);
            const result *r = &res[m][g];
            printf("{\"bench\":\"wire\",\"link\":\"%s\",\"mode\":\"%s\",\"gradient\":%s,"
                   "\"threads\":%d,\"batch\":%d,\"size\":%d,\"classes\":%d,\"requests\":%d,"
                   "\"failures\":%d,\"p50_ms\":%.3f,\"min_ms\":%.3f,\"client_prep_ms\":%.3f,"
                   "\"request_bytes\":%zu,\"response_bytes\":%zu,\"inprocess_ms\":%.3f,"
                   "\"x_inprocess\":%.2f,\"loss\":%.9g",
                   link, mode_name[m], g ? "true" : "false", threads, B, size, C, r->n,
                   r->failures, r->p50_ms, r->min_ms, r->prep_ms, r->req_bytes, r->resp_bytes,
                   r->inproc_ms, r->x_inproc, r->loss);
            if (m == SHM)
                printf(",\"copy_in_ms\":%.3f,\"p50_plus_copy_x_inprocess\":%.2f", copy_ms,
                       (r->p50_ms + copy_ms) / r->inproc_ms);
            printf("}\n");
            fflush(stdout);
        }
    }
    if (all_modes) { /* the summary compares the three */
        const result *d = &res[DENSE][1], *k = &res[COMPACT][1], *s = &res[SHM][1];
        bool same = res[DENSE][0].loss == res[COMPACT][0].loss && d->loss == k->loss &&
                    d->loss == s->loss && res[SHM][0].loss == d->loss;
        printf("{\"bench\":\"wire_summary\",\"link\":\"%s\",\"threads\":%d,"
               "\"compact_speedup_loss_grad\":%.2f,\"compact_speedup_loss\":%.2f,"
               "\"compact_bytes_fraction_loss_grad\":%.4f,\"compact_bytes_fraction_loss\":%.4f,"
               "\"shm_loss_grad_x_inprocess\":%.2f,\"shm_loss_x_inprocess\":%.2f,"
               "\"shm_loss_grad_plus_copy_x_inprocess\":%.2f,\"losses_equal\":%s}\n",
               link, threads, d->p50_ms / k->p50_ms, res[DENSE][0].p50_ms / res[COMPACT][0].p50_ms,
               (double)(k->req_bytes + k->resp_bytes) / (double)(d->req_bytes + d->resp_bytes),
               (double)(res[COMPACT][0].req_bytes + res[COMPACT][0].resp_bytes) /
                   (double)(res[DENSE][0].req_bytes + res[DENSE][0].resp_bytes),
               s->x_inproc, res[SHM][0].x_inproc, (s->p50_ms + copy_ms) / s->inproc_ms,
               same ? "true" : "false");
        fflush(stdout);
    }

    curl_easy_cleanup(c.h);
    free(c.resp.p);
    munmap(in.p, in.size);
    munmap(out.p, out.size);
    shm_unlink(in.key);
    shm_unlink(out.key);
    stop_daemon(pid);
    for (int l = 0; l < 3; l++) {
        free(w.out[l]);
        free(ip.g.layer[l]);
    }
    free(w.boxes);
}

/* --versus: the shared-memory requests alternated between two daemons (paths[0], paths[1]),
 * each beside its own in-process run, under the same load. */
static void run_versus(const char *link, const char *const paths[2], int threads, int requests,
                       int B, int size, int C)
{
    workload w;
    reseed();
    make_workload(&w, B, size, C);
    static const char *const history_none[] = {"--history", "none", NULL};
    pid_t pid[2];
    conn c[2];
    for (int k = 0; k < 2; k++) {
        unsigned port;
        pid[k] = start_daemon(paths[k], threads, history_none, &port);
        conn_init(&c[k], port);
    }
    region in, out;
    regions_make(&w, &in, &out);
    shm_fill(&w, &in);
    const region *rs[2] = {&in, &out};
    for (int k = 0; k < 2; k++) /* the same regions registered with both */
        for (int j = 0; j < 2; j++) {
            buf reg = {0};
            putf(&reg, "{\"key\":\"%s\",\"offset\":0,\"byte_size\":%zu}", rs[j]->key, rs[j]->size);
            char path[160];
            snprintf(path, sizeof path, "/v2/systemsharedmemory/region/%s/register", rs[j]->name);
            long st = post(&c[k], path, &reg, 0);
            if (st != 200)
                die("register %s with %s: HTTP %ld", rs[j]->name, paths[k], st);
            free(reg.p);
        }
    inproc ip;
    inproc_init(&ip, &w, threads);
    int n = 3 * requests > 60 ? 60 : 3 * requests;
    for (int g = 0; g < 2; g++) {
        double lat[2][60], base[2][60], ratio[2][60], loss[2] = {NAN, NAN};
        int failures[2] = {0, 0};
        buf body = {0};
        shm_request(&w, g, &in, &out, &body);
        for (int i = 0; i < n + 1; i++) /* the first round is a warm-up */
            for (int kk = 0; kk < 2; kk++) {
                int k = (i + kk) % 2;
                double t_in = inproc_ms(&ip, g);
                double t0 = now_s();
                long st = post(&c[k], "/v2/models/yolov3/infer", &body, 0);
                double t1 = now_s();
                if (st != 200)
                    failures[k]++;
                loss[k] = response_loss(&c[k]);
                if (i == 0)
                    continue;
                lat[k][i - 1] = (t1 - t0) * 1e3;
                base[k][i - 1] = t_in;
                ratio[k][i - 1] = lat[k][i - 1] / t_in;
            }
        for (int k = 0; k < 2; k++) {
            double lo = lat[k][0];
            for (int i = 1; i < n; i++)
                lo = lat[k][i] < lo ? lat[k][i] : lo;
            printf("{\"bench\":\"wire_versus\",\"link\":\"%s\",\"daemon\":\"%s\",\"mode\":\"shm\","
                   "\"gradient\":%s,\"threads\":%d,\"batch\":%d,\"size\":%d,\"classes\":%d,"
                   "\"requests\":%d,\"failures\":%d,\"p50_ms\":%.3f,\"min_ms\":%.3f,"
                   "\"inprocess_ms\":%.3f,\"x_inprocess\":%.2f,\"loss\":%.9g}\n",
                   link, paths[k], g ? "true" : "false", threads, B, size, C, n, failures[k],
                   median(lat[k], n), lo, median(base[k], n), median(ratio[k], n), loss[k]);
        }
        fflush(stdout);
        free(body.p);
    }
    for (int k = 0; k < 2; k++) {
        curl_easy_cleanup(c[k].h);
        free(c[k].resp.p);
        stop_daemon(pid[k]);
    }
    munmap(in.p, in.size);
    munmap(out.p, out.size);
    shm_unlink(in.key);
    shm_unlink(out.key);
    for (int l = 0; l < 3; l++) {
        free(w.out[l]);
        free(ip.g.layer[l]);
    }
    free(w.boxes);
}

/* --inprocess-helper DIR (for bench_wire.py, the Python client's run): write the workload's
 * tensors to DIR (out_<l>.f32, boxes.f32, raw little-endian), print "ready", then for each
 * line on stdin ("0" loss, "1" loss + gradient) time the core in-process once and print
 * the milliseconds: the same batch, the same thread count, right beside each request. */
static int inprocess_helper(const char *dir, int threads, int B, int size, int C)
{
    workload w;
    make_workload(&w, B, size, C);
    for (int l = 0; l <= 3; l++) {
        char path[512];
        snprintf(path, sizeof path, l < 3 ? "%s/out_%d.f32" : "%s/boxes.f32", dir, l);
        FILE *f = fopen(path, "wb");
        size_t n = l < 3 ? w.out_n[l] : (size_t)B * (size_t)w.T * 5;
        if (!f || fwrite(l < 3 ? w.out[l] : w.boxes, sizeof(float), n, f) != n || fclose(f))
            die("cannot write %s", path);
    }
    inproc ip;
    inproc_init(&ip, &w, threads);
    printf("ready %d\n", w.T);
    fflush(stdout);
    char line[16];
    while (fgets(line, sizeof line, stdin)) {
        printf("%.6f\n", inproc_ms(&ip, line[0] == '1'));
        fflush(stdout);
    }
    return 0;
}

/* Inside a fresh network namespace: bring lo up and limit it to rate. */
static void limit_loopback(const char *rate)
{
    /* burst: 4 ms at the rate (at least 512 KiB, above a GSO packet); queue up to 200 ms */
    double bits = strtod(rate, NULL) * (strstr(rate, "gbit") ? 1e9 : strstr(rate, "mbit") ? 1e6 : 1);
    long burst = (long)(bits / 8 * 0.004);
    if (burst < 512 * 1024)
        burst = 512 * 1024;
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "ip link set lo up && tc qdisc add dev lo root tbf rate %s burst %ld latency 200ms",
             rate, burst);
    if (system(cmd) != 0)
        die("cannot limit the loopback: %s", cmd);
}

int main(int argc, char **argv)
{
    bench_name = "bench_wire";
    const char *daemon = "build/yololossd", *links = "10gbit,1gbit", *inside = NULL,
               *helper = NULL, *versus = NULL;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), requests = 8, B = 16, size = 416, C = 80;
    const option opts[] = {
        {"--daemon", NULL, &daemon},
        {"--threads", &threads, NULL},
        {"--requests", &requests, NULL},
        {"--links", NULL, &links},
        {"--inside", NULL, &inside},
        {"--inprocess-helper", NULL, &helper},
        {"--batch", &B, NULL},
        {"--size", &size, NULL},
        {"--classes", &C, NULL},
        {"--modes", NULL, &modes},
        {"--versus", NULL, &versus},
        {NULL, NULL, NULL},
    };
    const char *bad = parse_options(argc, argv, opts);
    if (bad)
        die("unknown option %s", bad);
    if (requests < 1 || requests > 60)
        die("--requests must be 1..60");
    if (helper)
        return inprocess_helper(helper, threads, B, size, C);
    curl_global_init(CURL_GLOBAL_ALL);
    if (inside) {
        limit_loopback(inside);
        if (versus)
            run_versus(inside, (const char *const[]){daemon, versus}, threads, requests, B,
                       size, C);
        else
            run_link(inside, daemon, threads, requests, B, size, C);
        return 0;
    }
    if (versus)
        run_versus("loopback", (const char *const[]){daemon, versus}, threads, requests, B,
                   size, C);
    else
        run_link("loopback", daemon, threads, requests, B, size, C);
    char *list = strdup(links), *save = NULL;
    for (char *rate = strtok_r(list, ",", &save); rate; rate = strtok_r(NULL, ",", &save)) {
        if (!*rate || !strcmp(rate, "none"))
            continue;
        if (geteuid() != 0) {
            printf("{\"bench\":\"wire\",\"link\":\"%s\",\"skipped\":\"needs root (unshare -n, "
                   "tc)\"}\n", rate);
            continue;
        }
        char rq[16], th[16], bs[16], sz[16], cl[16];
        snprintf(rq, sizeof rq, "%d", requests);
        snprintf(th, sizeof th, "%d", threads);
        snprintf(bs, sizeof bs, "%d", B);
        snprintf(sz, sizeof sz, "%d", size);
        snprintf(cl, sizeof cl, "%d", C);
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execlp("unshare", "unshare", "-n", argv[0], "--inside", rate, "--daemon", daemon,
                   "--threads", th, "--requests", rq, "--batch", bs, "--size", sz, "--classes",
                   cl, "--modes", modes, versus ? "--versus" : (char *)NULL, versus,
                   (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            printf("{\"bench\":\"wire\",\"link\":\"%s\",\"skipped\":\"the namespace run failed "
                   "(status %d)\"}\n", rate, st);
    }
    free(list);
    curl_global_cleanup();
    return 0;
}
