/*
 * soak.c: `make soak`. Starts the daemon (tests/server/harness.c), then N clients (default
 * 32) send it requests for SOAK_SECONDS (default 120): both built-in models at several
 * sizes, binary and JSON bodies, loss-only and gradient requests, and 10% malformed requests
 * interleaved. Every good response is compared bit for bit with the core's answer computed
 * in-process (tests/server/cases.c); every malformed one must get a 4xx with a JSON error.
 * The daemon's RSS and open fds are read from /proc/PID every 0.5 s: RSS growth compares the
 * peak of the first quarter after the warm-up (seconds/5, 2 to 20 s, and until the clients
 * had 40 answers each, at most 60 s; the measured part after it lasts seconds - warm-up)
 * with the peak of the last quarter (a single sample moves with what is in flight at that
 * instant); open fds at the start (idle) with those after the clients have gone. Prints a
 * readable summary and one "SOAK {json}" line; exits 0 on a pass: zero 5xx, zero wrong
 * answers, RSS growth under 10% after the warm-up, no fd growth, and the daemon exits 0 on
 * SIGTERM.
 *
 *   soak [--daemon PATH] [--seconds N] [--clients N] [--json FILE] [-- daemon args...]
 */
#include "../server/harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* The workload                                                                         */

static const yt_spec specs[] = {
    /* yolov3-tiny */
    {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 1, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 2, .seed = 701},
    {.num_anchors = 6, .B = 4, .H0 = 4, .W0 = 4, .C = 5, .out_dtype = YL_F16, .truth = YT_DENSE4,
     .truth_dtype = YL_F16, .T = 6, .seed = 702},
    {.num_anchors = 6, .B = 2, .H0 = 8, .W0 = 8, .C = 20, .out_dtype = -1, .truth = YT_BOXES,
     .truth_dtype = YL_F64, .T = 10, .seed = 703},
    /* yolov3 */
    {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 5, .seed = 704},
    {.num_anchors = 9, .B = 3, .H0 = 3, .W0 = 2, .C = 4, .out_dtype = YL_F16, .out5d = true,
     .truth = YT_DENSE5, .truth_dtype = YL_BF16, .T = 4, .seed = 705},
    {.num_anchors = 9, .B = 1, .H0 = 8, .W0 = 8, .C = 20, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 12, .seed = 706},
};
#define N_SPECS (int)(sizeof specs / sizeof specs[0])

/* binary/JSON input x loss-only/everything (with gradients) x binary/JSON outputs */
#define N_VARIANTS 4
/* the core's answer for each case, by output name (computed once, before the clients) */
static const char *const out_names[] = {"loss", "loss_terms", "layer_terms", "image_terms",
                                        "stats", "grad_0", "grad_1", "grad_2"};
typedef struct {
    float *v[8];
    size_t n[8];
    int ndim[8];
    int64_t shape[8][YL_MAX_DIMS];
} expected;
static expected expect[16];

typedef struct {
    const yt_case *c;
    const expected *e;
    bool loss_only;
    uint8_t *body;
    size_t len, header_len;
    char path[64];
} good_req;

typedef struct {
    const char *what;
    const char *path;
    const void *body;
    size_t len;
    const char *headers[4];
} bad_req;

static good_req goods[N_SPECS * N_VARIANTS];
static int n_goods;
static bad_req bads[16];
static int n_bads;
static char *bad_bufs[16];
static int n_bad_bufs;

static void build_workload(yt_case *cases)
{
    for (int i = 0; i < N_SPECS; i++) {
        yt_case_make(&cases[i], &specs[i]);
        for (int k = 0; k < 5 + cases[i].L; k++)
            expect[i].v[k] = yt_expected(&cases[i], out_names[k], &expect[i].n[k],
                                         &expect[i].ndim[k], expect[i].shape[k]);
        for (int v = 0; v < N_VARIANTS; v++) {
            good_req *g = &goods[n_goods++];
            yt_send s = {.input_mode = v < 2 ? 0 : 1, .output_binary = -1,
                         .binary_data_output = v == 0 || v == 3};
            g->loss_only = v % 2 == 0;
            if (g->loss_only)
                s.outputs[0] = "loss";
            g->c = &cases[i];
            g->e = &expect[i];
            g->body = yt_request_body(&cases[i], &s, &g->len, &g->header_len);
            snprintf(g->path, sizeof g->path, "/v2/models/%s/infer",
                     cases[i].L == 3 ? "yolov3" : "yolov3-tiny");
        }
    }
    /* malformed requests, each answered 4xx */
    static const char trunc_json[] = "{\"inputs\": [{\"name\": \"output_0\", \"shape\": [1,";
    static const char bad_dtype[] =
        "{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"INT8\", \"shape\": [1,18,1,1], "
        "\"data\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]}]}";
    static const char bad_shape[] =
        "{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP32\", \"shape\": [1,2], "
        "\"data\": [1]}]}";
    static const char no_inputs[] = "{\"id\": \"x\"}";
    static const char unknown_key[] = "{\"inputs\": [], \"bogus\": 1}";
    static const char not_gzip[] = "this is not gzip at all";
    static const char nan_json[] =
        "{\"inputs\": [{\"name\": \"output_0\", \"datatype\": \"FP32\", \"shape\": [1,18,1,1], "
        "\"data\": [1e999,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18]}]}";
    bads[n_bads++] = (bad_req){"truncated JSON", "/v2/models/yolov3/infer", trunc_json,
                               sizeof trunc_json - 1, {NULL}};
    bads[n_bads++] = (bad_req){"bad datatype", "/v2/models/yolov3-tiny/infer", bad_dtype,
                               sizeof bad_dtype - 1, {NULL}};
    bads[n_bads++] = (bad_req){"shape/data mismatch", "/v2/models/yolov3/infer", bad_shape,
                               sizeof bad_shape - 1, {NULL}};
    bads[n_bads++] = (bad_req){"no inputs", "/v2/models/yolov3/infer", no_inputs,
                               sizeof no_inputs - 1, {NULL}};
    bads[n_bads++] = (bad_req){"unknown key", "/v2/models/yolov3/infer", unknown_key,
                               sizeof unknown_key - 1, {NULL}};
    bads[n_bads++] = (bad_req){"unknown model", "/v2/models/nope/infer", no_inputs,
                               sizeof no_inputs - 1, {NULL}};
    bads[n_bads++] = (bad_req){"not gzip", "/v2/models/yolov3/infer", not_gzip,
                               sizeof not_gzip - 1, {"Content-Encoding: gzip", NULL}};
    bads[n_bads++] = (bad_req){"overflowing number", "/v2/models/yolov3-tiny/infer", nan_json,
                               sizeof nan_json - 1, {NULL}};
    /* a binary request cut short: its blobs end before the body does */
    const good_req *g = &goods[N_VARIANTS * 3]; /* yolov3, binary, loss only */
    char *ih = malloc(64);
    snprintf(ih, 64, "Inference-Header-Content-Length: %zu", g->header_len);
    bad_bufs[n_bad_bufs++] = ih;
    bads[n_bads++] = (bad_req){"truncated binary", g->path, g->body, g->len - 7, {ih, NULL}};
    /* a header length past the end of the body */
    char *ih2 = malloc(64);
    snprintf(ih2, 64, "Inference-Header-Content-Length: %zu", g->len + 100);
    bad_bufs[n_bad_bufs++] = ih2;
    bads[n_bads++] = (bad_req){"header length past the body", g->path, g->body, g->len,
                               {ih2, NULL}};
    /* JSON nested too deep */
    size_t depth = 5000;
    char *deep = malloc(2 * depth + 32);
    int k = sprintf(deep, "{\"inputs\": ");
    for (size_t i = 0; i < depth; i++)
        deep[k++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    bad_bufs[n_bad_bufs++] = deep;
    bads[n_bads++] = (bad_req){"JSON too deep", "/v2/models/yolov3/infer", deep, (size_t)k,
                               {NULL}};
}

/* ------------------------------------------------------------------------------------ */
/* Clients                                                                              */

typedef struct {
    char *p;
    size_t len, cap;
} growbuf;

static size_t on_data(char *data, size_t size, size_t n, void *ud)
{
    growbuf *b = ud;
    size_t k = size * n;
    if (b->len + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + k + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, k);
    b->len += k;
    b->p[b->len] = '\0';
    return k;
}

#define MAX_STATUS 600
#define WARM_ANSWERS 40 /* per client, before the warm-up may end */
#define WARM_MAX_S 60.0 /* the warm-up ends by then whatever was answered */
typedef struct {
    int id;
    unsigned port;
    uint64_t seed;
    uint64_t requests, good, bad, wrong, transport;
    uint64_t by_status[MAX_STATUS];
    double *lat_ms;
    size_t nlat, caplat;
    char why[512];
} client;

static atomic_bool stop_flag;
static atomic_ullong answered; /* requests done, by every client: the warm-up's measure */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void note_wrong(client *cl, const char *fmt, const char *a, const char *b)
{
    cl->wrong++;
    if (!cl->why[0])
        snprintf(cl->why, sizeof cl->why, fmt, a, b);
}

/* yt_compare_output without Check (it may not be called outside a test). 0 or -1. */
static int compare(const expected *e, int k, const yt_outputs *o, char *err, size_t errlen)
{
    const char *name = out_names[k];
    const yt_output *y = yt_find(o, name);
    if (!y) {
        snprintf(err, errlen, "output %s missing", name);
        return -1;
    }
    if (strcmp(y->datatype, "FP32") != 0 || y->ndim != e->ndim[k] || y->n != e->n[k]) {
        snprintf(err, errlen, "output %s: %s, %d dims, %zu values; want FP32, %d, %zu", name,
                 y->datatype, y->ndim, y->n, e->ndim[k], e->n[k]);
        return -1;
    }
    for (int d = 0; d < y->ndim; d++)
        if (y->shape[d] != e->shape[k][d]) {
            snprintf(err, errlen, "output %s: dim %d is %lld, want %lld", name, d,
                     (long long)y->shape[d], (long long)e->shape[k][d]);
            return -1;
        }
    if (memcmp(y->v, e->v[k], e->n[k] * sizeof(float)) != 0) {
        snprintf(err, errlen, "output %s: values differ from the core's", name);
        return -1;
    }
    return 0;
}

static void *client_main(void *arg)
{
    client *cl = arg;
    CURL *h = curl_easy_init();
    growbuf body = {0}, headers = {0};
    char url[128];
    while (!atomic_load(&stop_flag)) {
        bool malformed = rng(&cl->seed) % 10 == 0;
        const char *path, *what;
        const void *data;
        size_t len;
        struct curl_slist *hl = curl_slist_append(NULL, "Expect:");
        const good_req *g = NULL;
        char ih[64];
        if (malformed) {
            const bad_req *b = &bads[rng(&cl->seed) % (uint64_t)n_bads];
            path = b->path;
            data = b->body;
            len = b->len;
            what = b->what;
            for (int i = 0; b->headers[i]; i++)
                hl = curl_slist_append(hl, b->headers[i]);
        } else {
            g = &goods[rng(&cl->seed) % (uint64_t)n_goods];
            path = g->path;
            data = g->body;
            len = g->len;
            what = "good";
            if (g->header_len) {
                snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", g->header_len);
                hl = curl_slist_append(hl, ih);
            }
        }
        snprintf(url, sizeof url, "http://127.0.0.1:%u%s", cl->port, path);
        body.len = headers.len = 0;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &headers);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
        double t0 = now_s();
        CURLcode rc = curl_easy_perform(h);
        double ms = (now_s() - t0) * 1e3;
        curl_slist_free_all(hl);
        cl->requests++;
        atomic_fetch_add(&answered, 1);
        if (cl->nlat == cl->caplat) {
            cl->caplat = cl->caplat ? 2 * cl->caplat : 4096;
            cl->lat_ms = realloc(cl->lat_ms, cl->caplat * sizeof *cl->lat_ms);
        }
        cl->lat_ms[cl->nlat++] = ms;
        if (rc != CURLE_OK) {
            cl->transport++;
            if (!cl->why[0])
                snprintf(cl->why, sizeof cl->why, "%s request: %s", what, curl_easy_strerror(rc));
            continue;
        }
        long st = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
        cl->by_status[st > 0 && st < MAX_STATUS ? st : 0]++;
        if (!body.p)
            on_data("", 1, 0, &body);
        yt_resp r = {.status = st, .body = body.p, .len = body.len, .headers = headers.p};
        if (malformed) {
            cl->bad++;
            char msg[256];
            if (st < 400 || st > 499 || !yt_error_message(&r, msg, sizeof msg)[0]) {
                char s[16];
                snprintf(s, sizeof s, "%ld", st);
                note_wrong(cl, "malformed request (%s) answered %s (want a 4xx JSON error)", what,
                           s);
            }
            continue;
        }
        cl->good++;
        if (st != 200) {
            char s[300], msg[256];
            snprintf(s, sizeof s, "%ld %s", st, yt_error_message(&r, msg, sizeof msg));
            note_wrong(cl, "good request to %s answered %s", path, s);
            continue;
        }
        yt_outputs o;
        char err[256];
        if (yt_parse_outputs(&r, &o, err, sizeof err) != 0) {
            note_wrong(cl, "%s: %s", path, err);
            continue;
        }
        int n = g->loss_only ? 1 : 5 + g->c->L;
        bool ok = o.n == n;
        if (!ok)
            note_wrong(cl, "%s: %s", path, "wrong number of outputs");
        for (int i = 0; ok && i < n; i++)
            if (compare(g->e, i, &o, err, sizeof err) != 0) {
                note_wrong(cl, "%s: %s", path, err);
                ok = false;
            }
        yt_outputs_free(&o);
    }
    free(body.p);
    free(headers.p);
    curl_easy_cleanup(h);
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* The daemon's process                                                                 */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void nap(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static double seconds = 120;
static int nclients = 32;
static const char *json_path;
static const char *extra[16];
static int nextra;
static bool soak_pass;
static int soak(void);

/* tests/server/cases.c uses Check's asserts, which work only inside a test: the soak runs as
 * one test, in this process (CK_NOFORK). */
START_TEST(soak_test)
{
    soak_pass = soak() == 0;
}
END_TEST

int main(int argc, char **argv)
{
    const char *env = getenv("SOAK_SECONDS");
    if (env && *env)
        seconds = atof(env);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--daemon") && i + 1 < argc)
            setenv("YL_DAEMON", argv[++i], 1);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            nclients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json_path = argv[++i];
        else if (!strcmp(argv[i], "--")) {
            for (i++; i < argc && nextra < 15; i++)
                extra[nextra++] = argv[i];
        } else {
            fprintf(stderr, "usage: soak [--daemon PATH] [--seconds N] [--clients N] "
                            "[--json FILE] [-- daemon args]\n");
            return 2;
        }
    }
    if (seconds <= 0 || nclients <= 0 || nclients > 1024) {
        fprintf(stderr, "soak: bad --seconds or --clients\n");
        return 2;
    }
    Suite *su = suite_create("soak");
    TCase *tc = tcase_create("soak");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, soak_test);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_SILENT);
    srunner_free(sr);
    return soak_pass ? 0 : 1;
}

static int soak(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    yt_case cases[N_SPECS];
    build_workload(cases);

    yt_daemon d;
    if (yt_daemon_start(&d, extra, false) != 0) {
        fprintf(stderr, "soak: cannot start the daemon (YL_DAEMON=%s)\n", getenv("YL_DAEMON"));
        return 1;
    }
    long rss_start = yt_rss_kb(d.pid);
    int fds_start = yt_open_fds(d.pid);
    double warmup = seconds / 5 < 2 ? 2 : seconds / 5 > 20 ? 20 : seconds / 5;
    if (warmup > seconds)
        warmup = seconds;
    printf("soak: %d clients for %.0f s against %s (pid %d, port %u); warm-up %.0f s\n",
           nclients, seconds, getenv("YL_DAEMON") ? getenv("YL_DAEMON") : "build/yololossd",
           (int)d.pid, d.port, warmup);
    fflush(stdout);

    client *cls = calloc((size_t)nclients, sizeof *cls);
    pthread_t *th = calloc((size_t)nclients, sizeof *th);
    double t0 = now_s();
    for (int i = 0; i < nclients; i++) {
        cls[i].id = i;
        cls[i].port = d.port;
        cls[i].seed = 0x50a4u + (uint64_t)i * 7919u;
        pthread_create(&th[i], NULL, client_main, &cls[i]);
    }
    long rss_warm = -1, rss_last = -1, rss_max = rss_start;
    int fds_warm = -1, fds_max = fds_start;
    /* The warm-up ends once its seconds have passed AND the clients have had WARM_ANSWERS
     * answers each (at most WARM_MAX_S): the heap grows towards its working size with the
     * requests served, not with time, and a loaded machine serves few in a 2 s warm-up (its
     * first quarter then sat below the plateau: +16.7% "growth" in a 10 s run that a 60 s
     * run showed flat). The measured part after it lasts seconds - warmup as before. */
    unsigned long long warm_answers = (unsigned long long)WARM_ANSWERS * (unsigned)nclients;
    double warm_end = -1, measured = seconds - warmup;
    unsigned long long warm_done = 0;
    for (;;) {
        double t = now_s() - t0;
        if (warm_end < 0 && t >= warmup &&
            (atomic_load(&answered) >= warm_answers || t >= WARM_MAX_S))
        {
            warm_end = t;
            warm_done = atomic_load(&answered);
        }
        if (warm_end >= 0 && t >= warm_end + measured)
            break;
        long r = yt_rss_kb(d.pid);
        int f = yt_open_fds(d.pid);
        if (r > rss_max)
            rss_max = r;
        if (f > fds_max)
            fds_max = f;
        /* RSS moves with what is in flight at the sampling instant: compare the peaks of
         * the first and the last quarter after the warm-up (a leak raises the second) */
        double quarter = measured / 4, u = warm_end >= 0 ? t - warm_end : -1;
        if (u >= 0 && u < quarter && r > rss_warm) {
            rss_warm = r;
            fds_warm = f;
        }
        if (u >= measured - quarter && r > rss_last)
            rss_last = r;
        double left = warm_end >= 0 ? warm_end + measured - t : 0.5;
        nap(left < 0.5 ? left : 0.5);
    }
    long rss_end = rss_last > 0 ? rss_last : yt_rss_kb(d.pid);
    if (rss_warm < 0)
        rss_warm = rss_end;
    atomic_store(&stop_flag, true);
    for (int i = 0; i < nclients; i++)
        pthread_join(th[i], NULL);
    double elapsed = now_s() - t0;
    /* the clients have closed their connections: wait (bounded) for the daemon to close its
     * ends, then compare with the idle count at the start */
    int fds_end = yt_open_fds(d.pid);
    for (int i = 0; i < 100 && fds_end > fds_start; i++) {
        nap(0.05);
        fds_end = yt_open_fds(d.pid);
    }
    long rss_idle = yt_rss_kb(d.pid);
    int exit_code = yt_daemon_stop(&d);

    /* totals */
    uint64_t req = 0, good = 0, bad = 0, wrong = 0, transport = 0, by[MAX_STATUS] = {0};
    size_t nlat = 0;
    for (int i = 0; i < nclients; i++) {
        req += cls[i].requests;
        good += cls[i].good;
        bad += cls[i].bad;
        wrong += cls[i].wrong;
        transport += cls[i].transport;
        nlat += cls[i].nlat;
        for (int s = 0; s < MAX_STATUS; s++)
            by[s] += cls[i].by_status[s];
    }
    double *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (int i = 0; i < nclients; i++) {
        memcpy(lat + k, cls[i].lat_ms, cls[i].nlat * sizeof *lat);
        k += cls[i].nlat;
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    double p50 = nlat ? lat[(size_t)(0.50 * (double)(nlat - 1))] : 0;
    double p99 = nlat ? lat[(size_t)(0.99 * (double)(nlat - 1))] : 0;
    double pmax = nlat ? lat[nlat - 1] : 0;
    uint64_t n5xx = 0;
    for (int s = 500; s < MAX_STATUS; s++)
        n5xx += by[s];
    double growth = rss_warm > 0 ? (double)(rss_end - rss_warm) / (double)rss_warm : 0;
    bool pass_5xx = n5xx == 0, pass_wrong = wrong == 0 && transport == 0,
         pass_rss = growth < 0.10, pass_fds = fds_end <= fds_start, pass_exit = exit_code == 0;
    bool pass = pass_5xx && pass_wrong && pass_rss && pass_fds && pass_exit && good > 0;

    char status_txt[512] = "", status_json[512] = "";
    size_t tl = 0, jl = 0;
    for (int s = 0; s < MAX_STATUS; s++) {
        if (!by[s])
            continue;
        tl += (size_t)snprintf(status_txt + tl, sizeof status_txt - tl, "%s%d: %llu",
                               tl ? ", " : "", s, (unsigned long long)by[s]);
        jl += (size_t)snprintf(status_json + jl, sizeof status_json - jl, "%s\"%d\": %llu",
                               jl ? ", " : "", s, (unsigned long long)by[s]);
    }
    printf("\nsoak summary (%.1f s, %d clients)\n", elapsed, nclients);
    printf("  requests     %llu (%.0f/s): %llu good, %llu malformed\n", (unsigned long long)req,
           (double)req / elapsed, (unsigned long long)good, (unsigned long long)bad);
    printf("  statuses     %s\n", status_txt);
    printf("  5xx          %llu %s\n", (unsigned long long)n5xx, pass_5xx ? "ok" : "FAIL");
    printf("  wrong        %llu, transport errors %llu %s\n", (unsigned long long)wrong,
           (unsigned long long)transport, pass_wrong ? "ok" : "FAIL");
    printf("  latency      p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", p50, p99, pmax);
    printf("  warm-up      %.1f s, %llu answers\n", warm_end, warm_done);
    printf("  RSS          start %ld kB, after warm-up %ld kB, end %ld kB (%+.1f%% after "
           "warm-up; peaks of the first and last quarter) %s; max %ld kB, idle after %ld kB\n",
           rss_start, rss_warm, rss_end, 100 * growth, pass_rss ? "ok" : "FAIL", rss_max,
           rss_idle);
    printf("  open fds     start %d, under load %d (max %d), end %d %s\n", fds_start, fds_warm,
           fds_max, fds_end, pass_fds ? "ok" : "FAIL");
    printf("  daemon exit  %d on SIGTERM %s\n", exit_code, pass_exit ? "ok" : "FAIL");
    for (int i = 0; i < nclients; i++)
        if (cls[i].why[0]) {
            printf("  first problem (client %d): %s\n", i, cls[i].why);
            break;
        }
    if (!pass_exit)
        yt_daemon_dump(&d);
    printf("  result       %s\n", pass ? "PASS" : "FAIL");

    char json[2048];
    snprintf(json, sizeof json,
             "{\"seconds\": %.1f, \"clients\": %d, \"requests\": %llu, \"good\": %llu, "
             "\"malformed\": %llu, \"by_status\": {%s}, \"5xx\": %llu, \"wrong\": %llu, "
             "\"transport_errors\": %llu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, "
             "\"warmup_s\": %.1f, \"warmup_answers\": %llu, "
             "\"rss_kb\": {\"start\": %ld, \"warm\": %ld, \"end\": %ld, \"max\": %ld, "
             "\"idle_after\": %ld}, \"rss_growth\": %.4f, \"fds\": {\"start\": %d, \"load\": %d, "
             "\"max\": %d, \"end\": %d}, \"exit\": %d, \"pass\": %s}",
             elapsed, nclients, (unsigned long long)req, (unsigned long long)good,
             (unsigned long long)bad, status_json, (unsigned long long)n5xx,
             (unsigned long long)wrong, (unsigned long long)transport, p50, p99, pmax, warm_end,
             warm_done, rss_start,
             rss_warm, rss_end, rss_max, rss_idle, growth, fds_start, fds_warm, fds_max, fds_end,
             exit_code, pass ? "true" : "false");
    printf("SOAK %s\n", json);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (f) {
            fprintf(f, "%s\n", json);
            fclose(f);
        }
    }
    if (pass)
        unlink(d.errlog);
    for (int i = 0; i < nclients; i++)
        free(cls[i].lat_ms);
    free(cls);
    free(th);
    free(lat);
    for (int i = 0; i < n_goods; i++)
        free(goods[i].body);
    for (int i = 0; i < n_bad_bufs; i++)
        free(bad_bufs[i]);
    for (int i = 0; i < N_SPECS; i++) {
        yt_case_free(&cases[i]);
        for (int j = 0; j < 8; j++)
            free(expect[i].v[j]);
    }
    curl_global_cleanup();
    return pass ? 0 : 1;
}
