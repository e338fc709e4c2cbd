/*
 * test_client_c.c: the C client library and the `yololoss` CLI against a live yololossd.
 *
 * main starts two daemons on free ports (YL_DAEMON, default build/yololossd): a plain one
 * and one that wants a bearer token; every test talks to them through ylc_compute or the
 * CLI (YL_CLI, default build/yololoss) and compares the answers with the core called
 * in-process on the same tensors: the server sends the core's doubles as FP32, so the
 * comparison is exact (bits), gradients included.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"
#include "npyfile.h"
#include "ylc_compact.h"
#include "yololoss.h"
#include "yololoss_client.h"

/* ------------------------------------------------------------------------------------ */
/* Daemons                                                                              */

typedef struct {
    pid_t pid;
    char url[64];
    char log[64];
} daemon_t;

static daemon_t plain, guarded;
static char token_path[64];
static const char *cli_path;

static int daemon_start(daemon_t *d, const char *extra1, const char *extra2)
{
    const char *bin = getenv("YL_DAEMON") ? getenv("YL_DAEMON") : "build/yololossd";
    snprintf(d->log, sizeof d->log, "/tmp/ylc-daemon-XXXXXX");
    int fd = mkstemp(d->log);
    if (fd < 0)
        return -1;
    d->pid = fork();
    if (d->pid == 0) {
        dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execl(bin, bin, "--host", "127.0.0.1", "--port", "0", "--threads", "2", extra1, extra2,
              (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fd);
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(d->log, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            char *p = strstr(line, "listening on ");
            if (p) {
                p += strlen("listening on ");
                p[strcspn(p, " \r\n")] = '\0';
                snprintf(d->url, sizeof d->url, "%s", p);
                fclose(f);
                return 0;
            }
        }
        if (f)
            fclose(f);
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            break;
        usleep(25000);
    }
    fprintf(stderr, "yololossd did not start (see %s)\n", d->log);
    return -1;
}

static void daemon_stop(daemon_t *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
    unlink(d->log);
}

/* ------------------------------------------------------------------------------------ */
/* Random batches and the core's answer                                                  */

static uint64_t rng_state;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double normal(void)
{
    double u = uniform() + 1e-12, v = uniform();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

typedef struct {
    int L, C;
    int64_t B, T, H0, W0;
    int out_dtype;      /* YLC_*, -1: a different one per layer */
    int five_d;         /* outputs as [B,H,W,3,5+C] */
    int dense;          /* y_true instead of boxes */
    void *out[3];
    void *boxes;
    float *y_true[3];
    ylc_tensor t_out[3], t_boxes, t_y_true[3];
    yl_tensor c_out[3], c_boxes, c_y_true[3];
    yl_config cfg;
    yl_result res;
    double *image_terms;
    float *grads[3];
} batch_t;

static uint16_t f2bf(double x) { return yl_double_to_bf16(x); }

static void batch_make(batch_t *b, int L, int C, int64_t B, int64_t H0, int out_dtype, int five_d,
                       int dense, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    rng_state = seed * 2654435761u + 1;
    b->L = L;
    b->C = C;
    b->B = B;
    b->T = 4;
    b->H0 = b->W0 = H0;
    b->out_dtype = out_dtype;
    b->five_d = five_d;
    b->dense = dense;
    yl_config_default(&b->cfg, L == 3 ? 9 : 6);
    for (int l = 0; l < L; l++) {
        int64_t h = H0 << l, n = B * h * h * 3 * (5 + C);
        int dt = out_dtype >= 0 ? out_dtype : l % 4;
        size_t es = dt == YLC_F64 ? 8 : dt == YLC_F32 ? 4 : 2;
        b->out[l] = malloc((size_t)n * es);
        for (int64_t i = 0; i < n; i++) {
            double v = normal();
            if (dt == YLC_F32)
                ((float *)b->out[l])[i] = (float)v;
            else if (dt == YLC_F64)
                ((double *)b->out[l])[i] = v;
            else if (dt == YLC_F16)
                ((uint16_t *)b->out[l])[i] = yl_double_to_half(v);
            else
                ((uint16_t *)b->out[l])[i] = f2bf(v);
        }
        ylc_tensor *t = &b->t_out[l];
        t->data = b->out[l];
        t->dtype = dt;
        t->ndim = five_d ? 5 : 4;
        int64_t s5[5] = {B, h, h, 3, 5 + C}, s4[4] = {B, h, h, 3 * (5 + C)};
        memcpy(t->shape, five_d ? s5 : s4, sizeof(int64_t) * (size_t)t->ndim);
        b->c_out[l] = (yl_tensor){t->data, dt, t->ndim, {0}};
        memcpy(b->c_out[l].shape, t->shape, sizeof t->shape);
    }
    double in = 32.0 * (double)H0;
    float *bx = malloc((size_t)(B * b->T * 5) * sizeof(float));
    for (int64_t i = 0; i < B * b->T; i++) {
        float *r = bx + i * 5;
        if (i % b->T == b->T - 1) { /* a padding row */
            memset(r, 0, 5 * sizeof(float));
            continue;
        }
        double w = 4 + uniform() * in * 0.6, h = 4 + uniform() * in * 0.6;
        double x0 = uniform() * (in - w - 1), y0 = uniform() * (in - h - 1);
        r[0] = (float)floor(x0);
        r[1] = (float)floor(y0);
        r[2] = (float)floor(x0 + w);
        r[3] = (float)floor(y0 + h);
        r[4] = (float)(int)(uniform() * C);
    }
    b->boxes = bx;
    b->t_boxes = (ylc_tensor){bx, YLC_F32, 3, {B, b->T, 5}};
    b->c_boxes = (yl_tensor){bx, YL_F32, 3, {B, b->T, 5}};
    if (dense) { /* keras's preprocess_true_boxes, done by the core, as 5-D FP32 */
        yl_problem p;
        yl_error e;
        ck_assert_int_eq(yl_problem_init(&p, &b->cfg, b->c_out, L, &b->c_boxes, NULL, 0, &e), 0);
        for (int l = 0; l < L; l++) {
            int64_t h = H0 << l;
            b->y_true[l] = malloc((size_t)(B * h * h * 3 * (5 + C)) * sizeof(float));
            b->t_y_true[l] = (ylc_tensor){b->y_true[l], YLC_F32, 5, {B, h, h, 3, 5 + C}};
            b->c_y_true[l] = (yl_tensor){b->y_true[l], YL_F32, 5, {B, h, h, 3, 5 + C}};
        }
        ck_assert_int_eq(yl_boxes_to_y_true(&p, b->y_true, &e), 0);
    }
}

/* The core's answer for b with cfg (defaults unless changed by the test). */
static void batch_expect(batch_t *b)
{
    yl_problem p;
    yl_error e;
    int rc = yl_problem_init(&p, &b->cfg, b->c_out, b->L, b->dense ? NULL : &b->c_boxes,
                             b->dense ? b->c_y_true : NULL, b->dense ? b->L : 0, &e);
    ck_assert_msg(rc == 0, "core: %s", e.msg);
    free(b->image_terms);
    b->image_terms = malloc((size_t)b->B * 4 * sizeof(double));
    for (int l = 0; l < b->L; l++) {
        free(b->grads[l]);
        int64_t n = 1;
        for (int d = 0; d < b->c_out[l].ndim; d++)
            n *= b->c_out[l].shape[d];
        b->grads[l] = malloc((size_t)n * sizeof(float));
    }
    yl_grads g = {.dtype = YL_F32};
    for (int l = 0; l < b->L; l++)
        g.layer[l] = b->grads[l];
    rc = yl_compute(&p, 1, &g, &b->res, b->image_terms, &e);
    ck_assert_msg(rc == 0, "core: %s", e.msg);
}

static void batch_free(batch_t *b)
{
    for (int l = 0; l < 3; l++) {
        free(b->out[l]);
        free(b->y_true[l]);
        free(b->grads[l]);
    }
    free(b->boxes);
    free(b->image_terms);
}

static ylc_request batch_request(const batch_t *b, int grads, int json)
{
    ylc_request r;
    memset(&r, 0, sizeof r);
    r.outputs = b->t_out;
    r.n_outputs = b->L;
    if (b->dense) {
        r.y_true = b->t_y_true;
        r.n_y_true = b->L;
    } else {
        r.boxes = &b->t_boxes;
    }
    r.grads = grads;
    r.json = json;
    return r;
}

static int64_t count_of(const ylc_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

#define ASSERT_F32_EQ(got, want, what)                                                    \
    ck_assert_msg((float)(want) == (float)(got) && (double)(float)(got) == (got),            \
                  "%s: got %.9g, want %.9g", what, (double)(got), (double)(float)(want))

/* The CLI prints FP32 values with 9 significant digits: they read back as that float. */
#define ASSERT_PRINTED_F32_EQ(got, want, what)                                            \
    ck_assert_msg((float)(want) == (float)(got), "%s: got %.9g, want %.9g", what,          \
                  (double)(got), (double)(float)(want))

/* r equals the core's answer for b, bit for bit. */
static void check_result(const batch_t *b, const ylc_result *r, int grads)
{
    char what[64];
    ck_assert_int_eq(r->num_layers, b->L);
    ck_assert_int_eq(r->batch, b->B);
    ASSERT_F32_EQ(r->loss, b->res.loss, "loss");
    for (int k = 0; k < 4; k++) {
        snprintf(what, sizeof what, "terms[%d]", k);
        ASSERT_F32_EQ(r->terms[k], b->res.terms[k], what);
    }
    for (int l = 0; l < b->L; l++) {
        for (int k = 0; k < 4; k++) {
            snprintf(what, sizeof what, "layer_terms[%d][%d]", l, k);
            ASSERT_F32_EQ(r->layer_terms[l][k], b->res.layer_terms[l][k], what);
        }
        for (int k = 0; k < YLC_NUM_STATS; k++) {
            snprintf(what, sizeof what, "stats[%d][%s]", l, ylc_stat_name(k));
            ASSERT_F32_EQ(r->stats[l][k], b->res.stats[l][k], what);
        }
    }
    for (int64_t i = 0; i < b->B * 4; i++) {
        snprintf(what, sizeof what, "image_terms[%" PRId64 "]", i);
        ck_assert_msg(r->image_terms[i] == (float)b->image_terms[i], "%s", what);
    }
    for (int l = 0; l < b->L; l++) {
        if (!grads) {
            ck_assert_ptr_null(r->grads[l]);
            continue;
        }
        ck_assert_ptr_nonnull(r->grads[l]);
        ck_assert_int_eq(r->grad_ndim[l], b->t_out[l].ndim);
        for (int d = 0; d < r->grad_ndim[l]; d++)
            ck_assert_int_eq(r->grad_shape[l][d], b->t_out[l].shape[d]);
        int64_t n = count_of(&b->t_out[l]);
        ck_assert_int_eq(r->grad_count[l], n);
        ck_assert_msg(memcmp(r->grads[l], b->grads[l], (size_t)n * sizeof(float)) == 0,
                      "grad_%d differs from the core's", l);
    }
}

static ylc_client *client_for(const daemon_t *d, const char *model, const char *token)
{
    ylc_client *c;
    ylc_error err;
    ylc_options o = {.url = d->url, .model = model, .token = token, .timeout = 20};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    return c;
}

static const char *model_of(const batch_t *b) { return b->L == 3 ? "yolov3" : "yolov3-tiny"; }

/* ------------------------------------------------------------------------------------ */
/* Library                                                                                */

static void roundtrip(int L, int C, int64_t B, int64_t H0, int dt, int five_d, int dense,
                      uint64_t seed)
{
    batch_t b;
    batch_make(&b, L, C, B, H0, dt, five_d, dense, seed);
    batch_expect(&b);
    ylc_client *c = client_for(&plain, model_of(&b), NULL);
    for (int json = 0; json <= 1; json++)
        for (int grads = 0; grads <= 1; grads++) {
            ylc_request req = batch_request(&b, grads, json);
            ylc_result r;
            ylc_error err;
            ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
            ck_assert_str_eq(r.model_name, model_of(&b));
            check_result(&b, &r, grads);
            ylc_result_free(&r);
        }
    ylc_client_free(c);
    batch_free(&b);
}

START_TEST(test_yolov3_f32_boxes) { roundtrip(3, 4, 2, 2, YLC_F32, 0, 0, 1); }
END_TEST

START_TEST(test_tiny_f16_five_d) { roundtrip(2, 3, 3, 2, YLC_F16, 1, 0, 2); }
END_TEST

START_TEST(test_mixed_dtypes_dense_y_true) { roundtrip(3, 2, 2, 1, -1, 0, 1, 3); }
END_TEST

START_TEST(test_bf16_and_f64) {
    roundtrip(2, 5, 2, 3, YLC_BF16, 0, 0, 4);
    roundtrip(2, 5, 2, 3, YLC_F64, 1, 1, 5);
}
END_TEST

START_TEST(test_parameters)
{
    batch_t b;
    batch_make(&b, 2, 3, 2, 2, YLC_F32, 0, 0, 6);
    static const char anchors[] = "5,6,9,11,14,20,22,18,30,35,50,44";
    double v[12];
    const char *p = anchors;
    for (int i = 0; i < 12; i++) {
        char *e;
        v[i] = strtod(p, &e);
        p = e + 1;
    }
    memcpy(b.cfg.anchors, v, sizeof v);
    b.cfg.ignore_thresh = 0.3;
    batch_expect(&b);
    ylc_client *c = client_for(&plain, "yolov3-tiny", NULL);
    ylc_request req = batch_request(&b, 1, 0);
    req.anchors = anchors;
    req.has_ignore_thresh = 1;
    req.ignore_thresh = 0.3;
    req.run = "check \"quoted\" run";
    req.has_step = 1;
    req.step = 42;
    ylc_result r;
    ylc_error err;
    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    check_result(&b, &r, 1);
    ylc_result_free(&r);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

/* Bad input goes to the server, comes back as a 400 naming the problem, and the same
 * client (same connection) keeps working. */
START_TEST(test_bad_input_round_trip)
{
    batch_t b;
    batch_make(&b, 2, 3, 2, 2, YLC_F32, 0, 0, 7);
    batch_expect(&b);
    ylc_client *c = client_for(&plain, "yolov3-tiny", NULL);
    ylc_request req = batch_request(&b, 1, 0);
    ylc_result r;
    ylc_error err;

    float *bx = b.boxes;
    float saved = bx[1 * 5 + 4];
    bx[1 * 5 + 4] = 3; /* class 3 of C = 3 */
    for (int json = 0; json <= 1; json++) {
        req.json = json;
        ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
        ck_assert_int_eq(err.status, 400);
        ck_assert_msg(strstr(err.msg, "boxes[0][1]") && strstr(err.msg, "class id"), "%s",
                      err.msg);
    }
    bx[1 * 5 + 4] = saved;
    req.json = 0;

    float *o1 = b.out[1];
    float keep = o1[17];
    o1[17] = NAN;
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_msg(strstr(err.msg, "output_1") != NULL, "%s", err.msg);
    req.json = 1; /* JSON cannot carry NaN: refused before sending */
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ck_assert_msg(strstr(err.msg, "output_1") != NULL, "%s", err.msg);
    o1[17] = keep;
    req.json = 0;

    req.n_outputs = 1;
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_msg(strstr(err.msg, "output_1") != NULL, "%s", err.msg);
    req.n_outputs = 2;

    req.anchors = "1,2,3";
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_msg(strstr(err.msg, "anchors") != NULL, "%s", err.msg);
    req.anchors = NULL;

    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    check_result(&b, &r, 1);
    ylc_result_free(&r);
    ylc_client_free(c);

    c = client_for(&plain, "yolov9", NULL);
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 404);
    ck_assert_msg(strstr(err.msg, "yolov9") != NULL, "%s", err.msg);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

START_TEST(test_local_refusals_and_no_server)
{
    batch_t b;
    batch_make(&b, 2, 3, 1, 1, YLC_F32, 0, 0, 8);
    ylc_client *c = client_for(&plain, "yolov3-tiny", NULL);
    ylc_request req = batch_request(&b, 0, 0);
    ylc_result r;
    ylc_error err;
    req.y_true = b.t_out;
    req.n_y_true = 2; /* boxes and y_true */
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ylc_client_free(c);

    daemon_t gone = {0};
    fake_refusing_url(gone.url, sizeof gone.url);
    ylc_options o = {.url = gone.url, .model = "yolov3-tiny", .max_attempts = 1};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    req = batch_request(&b, 0, 0);
    ck_assert_int_eq(ylc_compute(c, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ck_assert_msg(strstr(err.msg, "127.0.0.1") != NULL, "%s", err.msg);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

START_TEST(test_token_and_metadata)
{
    batch_t b;
    batch_make(&b, 2, 3, 1, 1, YLC_F32, 0, 0, 9);
    batch_expect(&b);
    ylc_request req = batch_request(&b, 0, 0);
    ylc_result r;
    ylc_error err;
    char *body;

    ylc_client *anon = client_for(&guarded, "yolov3-tiny", NULL);
    ck_assert_int_eq(ylc_get(anon, "/v2/health/ready", &body, &err), 200);
    free(body);
    ck_assert_int_eq(ylc_compute(anon, &req, &r, &err), -1);
    ck_assert_int_eq(err.status, 401);
    ylc_client_free(anon);

    ylc_client *c = client_for(&guarded, "yolov3-tiny", "t0ken");
    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    check_result(&b, &r, 0);
    ylc_result_free(&r);
    ck_assert_int_eq(ylc_get(c, "/v2/models/yolov3-tiny", &body, &err), 200);
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "yolov3-tiny");
    json_decref(j);
    free(body);
    ck_assert_int_eq(ylc_get(c, "/v2/models/nope", &body, &err), 404);
    free(body);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

/* Four processes against a daemon that takes one request at a time (--max-inflight 1):
 * the 503s are retried after Retry-After, and every answer is still right. */
START_TEST(test_overload_retries)
{
    daemon_t busy;
    ck_assert_int_eq(daemon_start(&busy, "--max-inflight", "1"), 0);
    batch_t b;
    batch_make(&b, 2, 20, 8, 8, YLC_F32, 0, 0, 11);
    batch_expect(&b);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            ylc_client *c = client_for(&busy, "yolov3-tiny", NULL);
            ylc_request req = batch_request(&b, 1, 0);
            int bad = 0;
            for (int i = 0; i < 3 && !bad; i++) {
                ylc_result r;
                ylc_error err;
                if (ylc_compute(c, &req, &r, &err) != 0) {
                    fprintf(stderr, "HTTP %d: %s\n", err.status, err.msg);
                    bad = 1;
                } else {
                    bad = r.loss != (double)(float)b.res.loss ||
                          memcmp(r.grads[1], b.grads[1], (size_t)count_of(&b.t_out[1]) * 4);
                }
                ylc_result_free(&r);
            }
            unsigned long n = ylc_client_retries(c);
            if (write(fds[1], &n, sizeof n) != (ssize_t)sizeof n)
                bad = 1;
            ylc_client_free(c);
            _exit(bad);
        }
    }
    unsigned long retries = 0;
    for (int k = 0; k < 4; k++) {
        int st;
        unsigned long n = 0;
        ck_assert_int_eq(waitpid(kids[k], &st, 0), kids[k]);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client process %d failed", k);
        ck_assert_int_eq(read(fds[0], &n, sizeof n), (ssize_t)sizeof n);
        retries += n;
    }
    close(fds[0]);
    close(fds[1]);
    fprintf(stderr, "test_overload_retries: %lu answers 503 retried\n", retries);
    daemon_stop(&busy);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Transports against the daemon: dense or compact tensors, HTTP body or shared memory,   */
/* FP32 or FP64 gradients: every way gives the same bits (and the core's).                */

static void same_result(const ylc_result *a, const ylc_result *b, int L, int64_t B,
                        const int64_t *counts, const char *what)
{
    ck_assert_msg(a->loss == b->loss && !memcmp(a->terms, b->terms, sizeof a->terms) &&
                  !memcmp(a->layer_terms, b->layer_terms, sizeof a->layer_terms) &&
                  !memcmp(a->stats, b->stats, sizeof a->stats), "%s: terms differ", what);
    ck_assert_msg(!memcmp(a->image_terms, b->image_terms, (size_t)B * 4 * sizeof(float)),
                  "%s: image terms differ", what);
    ck_assert_int_eq(a->grad_datatype, b->grad_datatype);
    for (int l = 0; l < L; l++) {
        size_t es = a->grad_datatype == YLC_F64 ? 8 : 4;
        const void *ga = es == 8 ? (const void *)a->grads_f64[l] : (const void *)a->grads[l];
        const void *gb = es == 8 ? (const void *)b->grads_f64[l] : (const void *)b->grads[l];
        ck_assert_msg(ga && gb, "%s: grad_%d missing", what, l);
        ck_assert_int_eq(a->grad_count[l], counts[l]);
        ck_assert_int_eq(b->grad_count[l], counts[l]);
        ck_assert_msg(!memcmp(ga, gb, (size_t)counts[l] * es), "%s: grad_%d differs", what, l);
    }
}

static ylc_client *client_with(const char *url, const char *model, int tensors, int transport)
{
    ylc_client *c;
    ylc_error err;
    ylc_options o = {.url = url, .model = model, .timeout = 30, .tensors = tensors,
                     .transport = transport};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    return c;
}

static void transports_case(int L, int C, int64_t B, int64_t H0, int dt, int five_d, int dense,
                            uint64_t seed)
{
    batch_t b;
    batch_make(&b, L, C, B, H0, dt, five_d, dense, seed);
    batch_expect(&b);
    /* the core's FP64 gradient */
    yl_problem p;
    yl_error e;
    ck_assert_int_eq(yl_problem_init(&p, &b.cfg, b.c_out, L, dense ? NULL : &b.c_boxes,
                                     dense ? b.c_y_true : NULL, dense ? L : 0, &e), 0);
    double *g64[3] = {0};
    int64_t counts[3];
    yl_grads g = {.dtype = YL_F64};
    for (int l = 0; l < L; l++) {
        counts[l] = count_of(&b.t_out[l]);
        g64[l] = malloc((size_t)counts[l] * sizeof(double));
        g.layer[l] = g64[l];
    }
    yl_result r64;
    ck_assert_int_eq(yl_compute(&p, 1, &g, &r64, NULL, &e), 0);

    static const int modes[4][2] = {{YLC_TENSORS_DENSE, YLC_TRANSPORT_WIRE},
                                    {YLC_TENSORS_COMPACT, YLC_TRANSPORT_WIRE},
                                    {YLC_TENSORS_COMPACT, YLC_TRANSPORT_SHM},
                                    {YLC_TENSORS_DENSE, YLC_TRANSPORT_SHM}};
    ylc_client *c[4];
    for (int m = 0; m < 4; m++)
        c[m] = client_with(plain.url, model_of(&b), modes[m][0], modes[m][1]);
    for (int gd = 0; gd < 2; gd++) {
        ylc_result ref, r;
        ylc_error err;
        ylc_request req = batch_request(&b, 1, 0);
        req.grad_datatype = gd ? YLC_F64 : YLC_F32;
        ck_assert_msg(ylc_compute(c[0], &req, &ref, &err) == 0, "HTTP %d: %s", err.status, err.msg);
        ck_assert(!ref.compact && !ref.shm);
        if (gd) {
            for (int l = 0; l < L; l++)
                ck_assert_msg(!memcmp(ref.grads_f64[l], g64[l], (size_t)counts[l] * 8),
                              "FP64 grad_%d differs from the core's double gradient", l);
        } else {
            check_result(&b, &ref, 1);
        }
        for (int m = 1; m < 4; m++) {
            char what[96];
            snprintf(what, sizeof what, "%s %s %s", modes[m][0] == YLC_TENSORS_COMPACT ?
                     "compact" : "dense", modes[m][1] == YLC_TRANSPORT_SHM ? "shm" : "wire",
                     gd ? "FP64" : "FP32");
            ck_assert_msg(ylc_compute(c[m], &req, &r, &err) == 0, "%s: HTTP %d: %s", what,
                          err.status, err.msg);
            ck_assert_int_eq(r.compact, modes[m][0] == YLC_TENSORS_COMPACT);
            ck_assert_int_eq(r.shm, modes[m][1] == YLC_TRANSPORT_SHM);
            same_result(&ref, &r, L, b.B, counts, what);
            /* into the caller's buffers: the same values, left to the caller */
            void *into[3] = {0};
            size_t ges = gd ? 8 : 4;
            for (int l = 0; l < L; l++) {
                into[l] = malloc((size_t)counts[l] * ges);
                memset(into[l], 0x7f, (size_t)counts[l] * ges); /* stale values to overwrite */
                req.grad_into[l] = into[l];
            }
            ylc_result r2;
            ck_assert_msg(ylc_compute(c[m], &req, &r2, &err) == 0, "%s into: HTTP %d: %s", what,
                          err.status, err.msg);
            same_result(&ref, &r2, L, b.B, counts, what);
            for (int l = 0; l < L; l++) {
                ck_assert_ptr_eq(gd ? (void *)r2.grads_f64[l] : (void *)r2.grads[l], into[l]);
                req.grad_into[l] = NULL;
            }
            ylc_result_free(&r2);
            for (int l = 0; l < L; l++)
                free(into[l]); /* not freed twice: ASan would say */
            if (m == 1 && C >= 80) /* compact moves far fewer bytes each way (full size) */
                ck_assert_msg(r.bytes_sent * 8 < ref.bytes_sent &&
                              r.bytes_received * 8 < ref.bytes_received,
                              "compact %" PRId64 "/%" PRId64 " bytes, dense %" PRId64 "/%" PRId64,
                              r.bytes_sent, r.bytes_received, ref.bytes_sent, ref.bytes_received);
            ylc_result_free(&r);
        }
        /* JSON numbers, compact: the same bits */
        req.json = 1;
        ck_assert_msg(ylc_compute(c[1], &req, &r, &err) == 0, "json: HTTP %d: %s", err.status,
                      err.msg);
        ck_assert(r.compact && !r.shm);
        same_result(&ref, &r, L, b.B, counts, "compact json");
        ylc_result_free(&r);
        req.json = 0;
        /* the compact gradient handed over: channel 4 and the rows of the dense one */
        req.grad_layout = YLC_GRAD_COMPACT;
        ck_assert_msg(ylc_compute(c[2], &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
        size_t es = gd ? 8 : 4;
        for (int l = 0; l < L; l++) {
            const ylc_compact_grad *cg = &r.cgrads[l];
            ck_assert_ptr_null(r.grads[l]);
            ck_assert_ptr_null(r.grads_f64[l]);
            ck_assert_int_eq(cg->anchors * cg->row_len, counts[l]);
            const char *dense_g = gd ? (const char *)ref.grads_f64[l] : (const char *)ref.grads[l];
            size_t rb = (size_t)cg->row_len * es;
            for (int64_t a = 0; a < cg->anchors; a++)
                ck_assert(!memcmp((const char *)cg->obj + (size_t)a * es,
                                  dense_g + (size_t)a * rb + 4 * es, es));
            for (int64_t k = 0; k < cg->n_rows; k++)
                ck_assert(!memcmp((const char *)cg->rows + (size_t)k * rb,
                                  dense_g + (size_t)cg->index[k] * rb, rb));
        }
        ylc_result_free(&r);
        ylc_result_free(&ref);
    }
    for (int m = 0; m < 4; m++)
        ylc_client_free(c[m]);
    for (int l = 0; l < L; l++)
        free(g64[l]);
    batch_free(&b);
}

START_TEST(test_transports_yolov3_boxes) { transports_case(3, 4, 2, 2, YLC_F32, 0, 0, 21); }
END_TEST
START_TEST(test_transports_tiny_f16_y_true) { transports_case(2, 3, 3, 2, YLC_F16, 1, 1, 22); }
END_TEST
START_TEST(test_transports_mixed_dtypes) { transports_case(3, 20, 2, 1, -1, 0, 0, 23); }
END_TEST
START_TEST(test_transports_bf16_f64)
{
    transports_case(2, 5, 2, 3, YLC_BF16, 0, 0, 24);
    transports_case(2, 5, 2, 3, YLC_F64, 1, 1, 25);
}
END_TEST
/* the full-size grids, 13/26/52 with C = 80 */
START_TEST(test_transports_full_size) { transports_case(3, 80, 1, 13, YLC_F32, 0, 0, 26); }
END_TEST

/* The default client (auto, auto) on loopback takes compact tensors and shared memory, and
 * leaves nothing registered or in /dev/shm when freed. */
START_TEST(test_auto_uses_compact_shm_and_cleans_up)
{
    batch_t b;
    batch_make(&b, 2, 3, 2, 2, YLC_F32, 0, 0, 31);
    batch_expect(&b);
    ylc_client *c = client_for(&plain, "yolov3-tiny", NULL);
    ylc_request req = batch_request(&b, 1, 0);
    ylc_result r;
    ylc_error err;
    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert(r.compact && r.shm);
    check_result(&b, &r, 1);
    ylc_result_free(&r);
    /* "localhost" is loopback too */
    daemon_t named = plain;
    snprintf(named.url, sizeof named.url, "http://localhost:%s", strrchr(plain.url, ':') + 1);
    ylc_client *c2 = client_for(&named, "yolov3-tiny", NULL);
    ck_assert_msg(ylc_compute(c2, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert(r.compact && r.shm);
    ylc_result_free(&r);
    ylc_client_free(c2);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "ls /dev/shm | grep -q '^yololoss-%ld-'", (long)getpid());
    ck_assert_msg(system(cmd) != 0, "the object was not unlinked after registration");
    char *body;
    ck_assert_int_eq(ylc_get(c, "/v2/systemsharedmemory/status", &body, &err), 200);
    char mine[48];
    snprintf(mine, sizeof mine, "yololoss-%ld-", (long)getpid());
    ck_assert_msg(strstr(body, mine) != NULL, "%s", body);
    free(body);
    ylc_client_free(c);
    c = client_for(&plain, "yolov3-tiny", NULL);
    ck_assert_int_eq(ylc_get(c, "/v2/systemsharedmemory/status", &body, &err), 200);
    ck_assert_msg(strstr(body, mine) == NULL, "still registered after ylc_client_free: %s", body);
    free(body);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

/* Clients of different threads (one each, as the header says) at once, each with its own
 * shared-memory region: every answer right. */
typedef struct {
    batch_t *b;
    int bad;
} thread_job;

static void *thread_calls(void *arg)
{
    thread_job *j = arg;
    ylc_client *c;
    ylc_error err;
    ylc_options o = {.url = plain.url, .model = "yolov3-tiny", .timeout = 30};
    if (ylc_client_new(&c, &o, &err)) {
        j->bad = 1;
        return NULL;
    }
    ylc_request req = batch_request(j->b, 1, 0);
    for (int i = 0; i < 4 && !j->bad; i++) {
        ylc_result r;
        if (ylc_compute(c, &req, &r, &err) != 0 || !r.shm || !r.compact ||
            r.loss != (double)(float)j->b->res.loss ||
            memcmp(r.grads[1], j->b->grads[1], (size_t)count_of(&j->b->t_out[1]) * 4))
            j->bad = 1;
        ylc_result_free(&r);
    }
    ylc_client_free(c);
    return NULL;
}

START_TEST(test_threads_own_clients)
{
    batch_t b;
    batch_make(&b, 2, 6, 2, 3, YLC_F32, 0, 0, 33);
    batch_expect(&b);
    pthread_t t[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){&b, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, thread_calls, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(!jobs[i].bad, "thread %d got a wrong answer or failed", i);
    }
    batch_free(&b);
}
END_TEST

/* A region the daemon forgot (it was unregistered behind the client's back, as by a
 * restart): the client registers a fresh one and the call succeeds. */
START_TEST(test_shm_region_forgotten)
{
    batch_t b;
    batch_make(&b, 2, 3, 1, 2, YLC_F32, 0, 0, 32);
    batch_expect(&b);
    ylc_client *c = client_with(plain.url, "yolov3-tiny", YLC_TENSORS_AUTO, YLC_TRANSPORT_SHM);
    ylc_request req = batch_request(&b, 1, 0);
    ylc_result r;
    ylc_error err;
    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ylc_result_free(&r);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "curl -s -o /dev/null -X POST %s/v2/systemsharedmemory/unregister",
             plain.url);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_msg(ylc_compute(c, &req, &r, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert(r.shm);
    check_result(&b, &r, 1);
    ylc_result_free(&r);
    ylc_client_free(c);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Compact tensors, checked against the core in-process: the client's rows (compact.c)    */
/* must cover every truth anchor (the core fails with YL_ENOROW otherwise), and the      */
/* scattered compact gradient must equal the dense one bit for bit.                       */

static void compact_vs_core(batch_t *b, int grad_dtype)
{
    batch_expect(b); /* the dense answer, FP32 gradients */
    ylc_compact_plan plan;
    ck_assert_int_eq(ylc_compact_plan_make(&plan, b->t_out, b->L, b->dense ? NULL : &b->t_boxes,
                                           b->dense ? b->t_y_true : NULL, b->dense ? b->L : 0), 0);
    yl_compact_layer cl[3];
    void *box[3], *rows[3], *gobj[3], *grows[3], *dense_c[3], *dense_d[3];
    size_t es = grad_dtype == YLC_F64 ? 8 : 4;
    yl_grads gc = {.dtype = grad_dtype == YLC_F64 ? YL_F64 : YL_F32};
    yl_grads gd = {.dtype = gc.dtype};
    for (int l = 0; l < b->L; l++) {
        box[l] = malloc(ylc_compact_box_bytes(&plan, l));
        rows[l] = malloc(ylc_compact_rows_bytes(&plan, l) + 1);
        ylc_compact_fill(&plan, l, box[l], rows[l]);
        cl[l].box = (yl_tensor){box[l], plan.dtype[l], 5, {plan.B, plan.H[l], plan.W[l], 3, 5}};
        cl[l].rows = (yl_tensor){rows[l], plan.dtype[l], 2, {plan.n_rows[l], plan.row_len[l]}};
        cl[l].index = plan.index[l];
        int64_t n = plan.anchors[l] * plan.row_len[l];
        gobj[l] = malloc((size_t)plan.anchors[l] * es);
        grows[l] = malloc((size_t)(plan.n_rows[l] * plan.row_len[l]) * es + 1);
        dense_c[l] = malloc((size_t)n * es);
        dense_d[l] = malloc((size_t)n * es);
        gc.layer[l] = gobj[l];
        gc.rows[l] = grows[l];
        gd.layer[l] = dense_d[l];
        /* fewer rows than anchors: the point of it */
        ck_assert_int_lt(plan.n_rows[l], plan.anchors[l]);
    }
    yl_problem pc, pd;
    yl_error e;
    yl_result rc, rd;
    double *itc = malloc((size_t)b->B * 4 * sizeof(double));
    double *itd = malloc((size_t)b->B * 4 * sizeof(double));
    ck_assert_int_eq(yl_problem_init_compact(&pc, &b->cfg, cl, b->L, b->dense ? NULL : &b->c_boxes,
                                             b->dense ? b->c_y_true : NULL, b->dense ? b->L : 0,
                                             &e), 0);
    int r = yl_compute(&pc, 1, &gc, &rc, itc, &e);
    ck_assert_msg(r == 0, "compact: %s", e.msg);
    ck_assert_int_eq(yl_problem_init(&pd, &b->cfg, b->c_out, b->L, b->dense ? NULL : &b->c_boxes,
                                     b->dense ? b->c_y_true : NULL, b->dense ? b->L : 0, &e), 0);
    ck_assert_int_eq(yl_compute(&pd, 1, &gd, &rd, itd, &e), 0);
    ck_assert(memcmp(&rc, &rd, sizeof rc) == 0);
    ck_assert(memcmp(itc, itd, (size_t)b->B * 4 * sizeof(double)) == 0);
    for (int l = 0; l < b->L; l++) {
        ylc_compact_scatter(&plan, l, es, gobj[l], grows[l], dense_c[l]);
        size_t bytes = (size_t)(plan.anchors[l] * plan.row_len[l]) * es;
        ck_assert_msg(memcmp(dense_c[l], dense_d[l], bytes) == 0,
                      "layer %d: scattered compact gradient differs from the dense one", l);
    }
    /* the control: one truth row fewer is caught by the core (so the test can fail) */
    for (int l = 0; l < b->L; l++) {
        if (plan.n_rows[l] == 0)
            continue;
        yl_compact_layer drop[3];
        memcpy(drop, cl, sizeof cl);
        int64_t *idx = malloc((size_t)plan.n_rows[l] * sizeof(int64_t));
        int missing = 0;
        /* drop each row in turn until one was a truth row */
        for (int64_t k = 0; k < plan.n_rows[l] && !missing; k++) {
            size_t rb = (size_t)plan.row_len[l] * (plan.dtype[l] == YLC_F64 ? 8 : plan.dtype[l] == YLC_F32 ? 4 : 2);
            char *rr = malloc(ylc_compact_rows_bytes(&plan, l) + 1);
            int64_t m = 0;
            for (int64_t q = 0; q < plan.n_rows[l]; q++)
                if (q != k) {
                    idx[m] = plan.index[l][q];
                    memcpy(rr + (size_t)m * rb, (char *)rows[l] + (size_t)q * rb, rb);
                    m++;
                }
            drop[l].rows.data = rr;
            drop[l].rows.shape[0] = m;
            drop[l].index = idx;
            yl_problem pq;
            if (yl_problem_init_compact(&pq, &b->cfg, drop, b->L, b->dense ? NULL : &b->c_boxes,
                                        b->dense ? b->c_y_true : NULL, b->dense ? b->L : 0,
                                        &e) == 0 &&
                yl_compute(&pq, 1, NULL, &rc, NULL, &e) != 0)
                missing = strstr(e.msg, "no row for the truth anchor") != NULL;
            free(rr);
        }
        free(idx);
        if (rd.stats[l][YL_STAT_COUNT] > 0)
            ck_assert_msg(missing, "layer %d: dropping rows never hit a truth anchor", l);
    }
    for (int l = 0; l < b->L; l++) {
        free(box[l]);
        free(rows[l]);
        free(gobj[l]);
        free(grows[l]);
        free(dense_c[l]);
        free(dense_d[l]);
    }
    free(itc);
    free(itd);
    ylc_compact_plan_free(&plan);
}

START_TEST(test_compact_rows_against_core)
{
    /* boxes and y_true, every dtype, tiny and 3-layer, 4-D and 5-D, both gradient types */
    static const struct { int L, C, B, H0, dt, five_d, dense; } cases[] = {
        {3, 4, 2, 2, YLC_F32, 0, 0}, {2, 3, 3, 2, YLC_F16, 1, 0}, {3, 2, 2, 1, -1, 0, 1},
        {2, 5, 2, 3, YLC_BF16, 0, 0}, {2, 5, 2, 3, YLC_F64, 1, 1}, {3, 80, 2, 2, YLC_F32, 0, 0},
        {2, 1, 4, 4, YLC_F64, 0, 0}, {3, 6, 3, 2, YLC_BF16, 1, 1},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int gd = 0; gd < 2; gd++) {
            batch_t b;
            batch_make(&b, cases[i].L, cases[i].C, cases[i].B, cases[i].H0, cases[i].dt,
                       cases[i].five_d, cases[i].dense, 100 + i);
            compact_vs_core(&b, gd ? YLC_F64 : YLC_F32);
            batch_free(&b);
        }
}
END_TEST

/* Box centres on cell boundaries (where a rounding step could pick the neighbour). */
START_TEST(test_compact_boxes_on_cell_edges)
{
    batch_t b;
    batch_make(&b, 3, 3, 1, 2, YLC_F32, 0, 0, 77); /* input 64x64, grids 2, 4, 8 */
    float *bx = b.boxes;
    static const float edges[3][4] = {{8, 8, 24, 24}, {30, 2, 34, 40}, {0, 31, 64, 33}};
    for (int t = 0; t < 3; t++) {
        memcpy(bx + t * 5, edges[t], sizeof edges[t]);
        bx[t * 5 + 4] = (float)t;
    }
    compact_vs_core(&b, YLC_F32);
    batch_free(&b);
}
END_TEST

/* Tensors the client cannot read as a batch are sent dense, for the daemon to name. */
START_TEST(test_compact_plan_declines_odd_shapes)
{
    ylc_compact_plan plan;
    float data[4 * 18];
    ylc_tensor bad = {data, YLC_F32, 4, {1, 2, 2, 17}}; /* 17 is not 3*(5+C) */
    ylc_tensor boxes = {data, YLC_F32, 3, {1, 1, 5}};
    ck_assert_int_eq(ylc_compact_plan_make(&plan, &bad, 1, &boxes, NULL, 0), 1);
    ylc_tensor ok = {data, YLC_F32, 4, {1, 2, 2, 18}};
    ylc_tensor boxes2 = {data, YLC_F32, 3, {2, 1, 5}}; /* batch 2 against 1 */
    ck_assert_int_eq(ylc_compact_plan_make(&plan, &ok, 1, &boxes2, NULL, 0), 1);
    ylc_tensor yt = {data, YLC_F32, 4, {1, 2, 1, 18}}; /* y_true of another grid */
    ck_assert_int_eq(ylc_compact_plan_make(&plan, &ok, 1, NULL, &yt, 1), 1);
}
END_TEST

/* With y_true, objectness (channel 4) decides, read from the bits: not the box channels,
 * -0 is zero, the smallest subnormal is not. */
START_TEST(test_compact_y_true_objectness)
{
    float out[72] = {0}, y[72] = {0};
    y[5 * 6 + 4] = 0.5f;  /* anchor 5: objectness, no box */
    y[7 * 6 + 3] = 0.25f; /* anchor 7: a box channel, no objectness */
    ylc_tensor o = {out, YLC_F32, 4, {1, 2, 2, 18}}, t = {y, YLC_F32, 4, {1, 2, 2, 18}};
    ylc_compact_plan plan;
    ck_assert_int_eq(ylc_compact_plan_make(&plan, &o, 1, NULL, &t, 1), 0);
    ck_assert_int_eq(plan.n_rows[0], 1);
    ck_assert_int_eq(plan.index[0][0], 5);
    ylc_compact_plan_free(&plan);
    uint16_t yh[72] = {0};
    yh[2 * 6 + 4] = 0x8000; /* -0 */
    yh[9 * 6 + 4] = 0x0001;
    ylc_tensor th = {yh, YLC_F16, 5, {1, 2, 2, 3, 6}};
    ck_assert_int_eq(ylc_compact_plan_make(&plan, &o, 1, NULL, &th, 1), 0);
    ck_assert_int_eq(plan.n_rows[0], 1);
    ck_assert_int_eq(plan.index[0][0], 9);
    ylc_compact_plan_free(&plan);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* Retries, against the scripted fake server: attempts counted, never timed.               */

static ylc_client *fake_client(const char *url, int max_attempts, double timeout)
{
    ylc_client *c;
    ylc_error err;
    /* dense on the wire: no GET /v2 for the extensions among the counted requests */
    ylc_options o = {.url = url, .model = "yolov3", .timeout = timeout,
                     .max_attempts = max_attempts, .tensors = YLC_TENSORS_DENSE,
                     .transport = YLC_TRANSPORT_WIRE};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    return c;
}

/* A one-layer request the fake server answers (it does not look at it). */
static float fake_out[18], fake_boxes[5] = {10, 10, 20, 20, 0};

static int fake_compute_shm(ylc_client *c, double timeout, int *used_shm, ylc_error *err)
{
    ylc_tensor out = {fake_out, YLC_F32, 4, {1, 1, 1, 18}};
    ylc_tensor boxes = {fake_boxes, YLC_F32, 3, {1, 1, 5}};
    ylc_request req = {.outputs = &out, .n_outputs = 1, .boxes = &boxes, .timeout = timeout};
    ylc_result r;
    int rc = ylc_compute(c, &req, &r, err);
    if (rc == 0)
        ck_assert_msg(r.loss == 2.5 && r.terms[3] == 0.25, "the fake answer, parsed");
    if (used_shm)
        *used_shm = r.shm;
    ylc_result_free(&r);
    return rc;
}

static int fake_compute(ylc_client *c, double timeout, ylc_error *err)
{
    return fake_compute_shm(c, timeout, NULL, err);
}

/* A daemon on this host that offers shared memory but cannot open the client's object
 * (another /dev/shm): auto falls back to the wire, once and for good; shm insists. */
START_TEST(test_shm_falls_back_to_the_wire)
{
    fake_server *f = fake_start(NULL, 0, (fake_step){FAKE_OK, 0, NULL});
    ck_assert_ptr_nonnull(f);
    fake_set_meta(f, "{\"extensions\":[\"system_shared_memory\"]}", 400);
    ylc_client *c;
    ylc_error err;
    ylc_options o = {.url = fake_url(f), .model = "yolov3", .timeout = 20};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    int shm = -1;
    ck_assert_msg(fake_compute_shm(c, 0, &shm, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert_int_eq(shm, 0);
    ck_assert_int_eq(fake_registrations(f), 1);
    ck_assert_int_eq(fake_requests(f), 1);
    ck_assert_int_eq(fake_last_used_shm(f), 0);
    ck_assert_msg(fake_compute_shm(c, 0, &shm, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert_int_eq(fake_registrations(f), 1); /* not asked again */
    ck_assert_int_eq(fake_requests(f), 2);
    ylc_client_free(c);

    o.transport = YLC_TRANSPORT_SHM;
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(fake_compute(c, 0, &err), -1);
    ck_assert_int_eq(err.status, 400);
    ck_assert_msg(strstr(err.msg, "shared memory") && strstr(err.msg, "cannot open"), "%s",
                  err.msg);
    ck_assert_int_eq(fake_registrations(f), 2);
    ck_assert_int_eq(fake_requests(f), 2); /* no infer sent */
    ylc_client_free(c);

    o.transport = YLC_TRANSPORT_WIRE;
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(fake_compute(c, 0, &err), 0);
    ck_assert_int_eq(fake_registrations(f), 2);
    ylc_client_free(c);

    /* a 5xx to the registration is passing trouble: this call goes on the wire, the next
     * asks again */
    fake_set_meta(f, "{\"extensions\":[\"system_shared_memory\"]}", 500);
    o.transport = YLC_TRANSPORT_AUTO;
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(fake_compute_shm(c, 0, &shm, &err), 0);
    ck_assert_int_eq(shm, 0);
    ck_assert_int_eq(fake_registrations(f), 3);
    ck_assert_int_eq(fake_compute_shm(c, 0, &shm, &err), 0);
    ck_assert_int_eq(fake_registrations(f), 4);
    ylc_client_free(c);
    fake_stop(f);

    /* no object of this process is left in /dev/shm */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls /dev/shm | grep -q '^yololoss-%ld-'", (long)getpid());
    ck_assert_int_ne(system(cmd), 0);
}
END_TEST

/* Every retryable failure in a row, then the answer: one call, seven attempts. */
START_TEST(test_retry_transient_failures)
{
    static const fake_step script[] = {
        {FAKE_CLOSE, 0, NULL},   {FAKE_RESET, 0, NULL},    {FAKE_STATUS, 502, NULL},
        {FAKE_STATUS, 503, "0"}, {FAKE_STATUS, 504, NULL},
        {FAKE_STATUS, 503, "Thu, 01 Jan 1970 00:00:00 GMT"}, /* an HTTP-date, passed */
    };
    fake_server *f = fake_start(script, 6, (fake_step){FAKE_OK, 0, NULL});
    ck_assert_ptr_nonnull(f);
    ylc_client *c = fake_client(fake_url(f), 0, 20);
    ylc_error err;
    ck_assert_msg(fake_compute(c, 0, &err) == 0, "HTTP %d: %s", err.status, err.msg);
    ck_assert_int_eq(fake_requests(f), 7);
    ck_assert_uint_eq(ylc_client_retries(c), 6);
    /* on loopback the client does not ask for compressed answers (CPU for nothing) */
    ck_assert_int_eq(fake_last_accepted_coding(f), 0);
    ylc_client_free(c);
    fake_stop(f);

    /* ylc_get retries the same way */
    static const fake_step twice[] = {{FAKE_STATUS, 503, "0"}, {FAKE_CLOSE, 0, NULL}};
    f = fake_start(twice, 2, (fake_step){FAKE_OK, 0, NULL});
    ck_assert_ptr_nonnull(f);
    c = fake_client(fake_url(f), 0, 20);
    char *body;
    ck_assert_int_eq(ylc_get(c, "/v2/health/ready", &body, &err), 200);
    free(body);
    ck_assert_int_eq(fake_requests(f), 3);
    ylc_client_free(c);
    fake_stop(f);
}
END_TEST

/* Statuses other than 502/503/504 are answers, not outages: one attempt. */
START_TEST(test_retry_not_for_other_statuses)
{
    static const int statuses[] = {400, 401, 404, 413, 500};
    for (int i = 0; i < 5; i++) {
        fake_server *f = fake_start(NULL, 0, (fake_step){FAKE_STATUS, statuses[i], "0"});
        ck_assert_ptr_nonnull(f);
        ylc_client *c = fake_client(fake_url(f), 0, 20);
        ylc_error err;
        ck_assert_int_eq(fake_compute(c, 0, &err), -1);
        ck_assert_int_eq(err.status, statuses[i]);
        ck_assert_msg(strstr(err.msg, "retry later") != NULL, "%s", err.msg);
        ck_assert_int_eq(fake_requests(f), 1);
        ck_assert_uint_eq(ylc_client_retries(c), 0);
        ylc_client_free(c);
        fake_stop(f);
    }
}
END_TEST

/* max_attempts bounds the attempts; 1 turns retrying off. */
START_TEST(test_retry_max_attempts_and_off)
{
    fake_server *f = fake_start(NULL, 0, (fake_step){FAKE_STATUS, 503, NULL});
    ck_assert_ptr_nonnull(f);
    ylc_client *c = fake_client(fake_url(f), 3, 20);
    ylc_error err;
    ck_assert_int_eq(fake_compute(c, 0, &err), -1);
    ck_assert_int_eq(err.status, 503);
    ck_assert_int_eq(fake_requests(f), 3);
    ck_assert_uint_eq(ylc_client_retries(c), 2);
    ylc_client_free(c);
    fake_stop(f);

    f = fake_start(NULL, 0, (fake_step){FAKE_CLOSE, 0, NULL});
    ck_assert_ptr_nonnull(f);
    c = fake_client(fake_url(f), 1, 20);
    ck_assert_int_eq(fake_compute(c, 0, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ck_assert_msg(strstr(err.msg, "(1 attempt)") != NULL, "%s", err.msg);
    ck_assert_int_eq(fake_requests(f), 1);
    ylc_client_free(c);
    fake_stop(f);

    /* connection refused: nothing listens, the client counts its own attempts */
    char url[64];
    fake_refusing_url(url, sizeof url);
    c = fake_client(url, 4, 20);
    ck_assert_int_eq(fake_compute(c, 0, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ck_assert_msg(strstr(err.msg, "(4 attempts)") != NULL, "%s", err.msg);
    ck_assert_uint_eq(ylc_client_retries(c), 3);
    ylc_client_free(c);
}
END_TEST

/* The deadline: a Retry-After past it is not waited for (one attempt, the 503 returned);
 * a call that gets no answer ends at its own timeout, which overrides the client's. */
START_TEST(test_retry_deadline_and_call_timeout)
{
    fake_server *f = fake_start(NULL, 0, (fake_step){FAKE_STATUS, 503, "30"});
    ck_assert_ptr_nonnull(f);
    ylc_client *c = fake_client(fake_url(f), 0, 5);
    ylc_error err;
    ck_assert_int_eq(fake_compute(c, 0, &err), -1);
    ck_assert_int_eq(err.status, 503);
    ck_assert_int_eq(fake_requests(f), 1);
    ylc_client_free(c);
    fake_stop(f);

    f = fake_start(NULL, 0, (fake_step){FAKE_HANG, 0, NULL});
    ck_assert_ptr_nonnull(f);
    c = fake_client(fake_url(f), 0, 30);
    ck_assert_int_eq(fake_compute(c, 0.3, &err), -1);
    ck_assert_int_eq(err.status, 0);
    ck_assert_msg(strstr(err.msg, "no answer within the timeout (0.3s)") != NULL, "%s", err.msg);
    ck_assert_int_eq(fake_requests(f), 1); /* a timeout is not retried */
    ylc_client_free(c);
    fake_stop(f);

    /* 503s without Retry-After until the deadline: the call ends with the last 503 */
    f = fake_start(NULL, 0, (fake_step){FAKE_STATUS, 503, NULL});
    ck_assert_ptr_nonnull(f);
    c = fake_client(fake_url(f), 0, 30);
    ck_assert_int_eq(fake_compute(c, 1.0, &err), -1);
    ck_assert_int_eq(err.status, 503);
    ck_assert_int_ge(fake_requests(f), 1);
    ck_assert_uint_eq(ylc_client_retries(c), (unsigned long)fake_requests(f) - 1);
    ylc_client_free(c);
    fake_stop(f);
}
END_TEST

/* ------------------------------------------------------------------------------------ */
/* The CLI                                                                                */

static void write_npy(const char *dir, const char *name, const ylc_tensor *t)
{
    static const char *const descr[] = {"<f4", "<f2", "<u2", "<f8"};
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ck_assert_msg(npyf_write(path, descr[t->dtype], t->ndim, t->shape, t->data, err,
                             sizeof err) == 0, "%s", err);
}

/* Run the CLI with args (a shell fragment); stdout and stderr into files of dir. */
static int run_cli(const char *dir, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s %s >stdout.txt 2>stderr.txt", dir, cli_path, args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

START_TEST(test_cli)
{
    char dir[] = "/tmp/ylc-cli-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    batch_t b;
    batch_make(&b, 3, 2, 2, 1, -1, 0, 0, 10);
    batch_expect(&b);
    write_npy(dir, "out0.npy", &b.t_out[0]);
    write_npy(dir, "out1.npy", &b.t_out[1]);
    write_npy(dir, "out2.npy", &b.t_out[2]);
    write_npy(dir, "boxes.npy", &b.t_boxes);
    char args[1024];
    for (int json = 0; json <= 1; json++) {
        snprintf(args, sizeof args, "--url %s --model yolov3 --grads g%d --run cli --step 3 %s "
                 "out0.npy out1.npy out2.npy --boxes boxes.npy", plain.url, json,
                 json ? "--json" : "");
        int st = run_cli(dir, args);
        ck_assert_msg(st == 0, "exit %d: %s", st, slurp(dir, "stderr.txt"));
        json_error_t je;
        json_t *j = json_loads(slurp(dir, "stdout.txt"), 0, &je);
        ck_assert_msg(j != NULL, "stdout is not JSON: %s", je.text);
        ASSERT_PRINTED_F32_EQ(json_real_value(json_object_get(j, "loss")), b.res.loss, "cli loss");
        json_t *terms = json_object_get(j, "terms");
        ASSERT_PRINTED_F32_EQ(json_real_value(json_object_get(terms, "confidence")), b.res.terms[2],
                      "cli confidence");
        json_t *st0 = json_array_get(json_object_get(j, "stats"), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(st0, "count")),
                         (json_int_t)b.res.stats[0][YL_STAT_COUNT]);
        ASSERT_PRINTED_F32_EQ(json_real_value(json_object_get(st0, "avg_noobj")),
                      b.res.stats[0][YL_STAT_AVG_NOOBJ], "cli avg_noobj");
        ck_assert_int_eq(json_array_size(json_object_get(j, "image_terms")), 2);
        json_decref(j);
        for (int l = 0; l < 3; l++) {
            char path[300], err[512];
            snprintf(path, sizeof path, "%s/g%d/grad_%d.npy", dir, json, l);
            npyf_array g;
            ck_assert_msg(npyf_read(path, &g, err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(g.dtype, NPYF_F32);
            ck_assert_int_eq(g.count, count_of(&b.t_out[l]));
            ck_assert_int_eq(memcmp(g.data, b.grads[l], (size_t)g.count * 4), 0);
            npyf_free(&g);
        }
    }

    /* every transport, FP64 gradients: <f8 files, equal to the core's double gradient */
    static const char *const how[] = {"--tensors dense --transport wire",
                                      "--tensors compact --transport shm", ""};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "--url %s %s --grads g64 --grad-dtype float64 "
                 "out0.npy out1.npy out2.npy --boxes boxes.npy", plain.url, how[k]);
        int st = run_cli(dir, args);
        ck_assert_msg(st == 0, "%s: exit %d: %s", how[k], st, slurp(dir, "stderr.txt"));
        yl_problem p;
        yl_error e;
        ck_assert_int_eq(yl_problem_init(&p, &b.cfg, b.c_out, 3, &b.c_boxes, NULL, 0, &e), 0);
        double *g64[3];
        yl_grads g = {.dtype = YL_F64};
        for (int l = 0; l < 3; l++)
            g.layer[l] = g64[l] = malloc((size_t)count_of(&b.t_out[l]) * sizeof(double));
        yl_result r64;
        ck_assert_int_eq(yl_compute(&p, 1, &g, &r64, NULL, &e), 0);
        for (int l = 0; l < 3; l++) {
            char path[300], err[512];
            snprintf(path, sizeof path, "%s/g64/grad_%d.npy", dir, l);
            npyf_array a;
            ck_assert_msg(npyf_read(path, &a, err, sizeof err) == 0, "%s", err);
            ck_assert_int_eq(a.dtype, NPYF_F64);
            ck_assert_int_eq(a.count, count_of(&b.t_out[l]));
            ck_assert_msg(memcmp(a.data, g64[l], (size_t)a.count * 8) == 0, "%s: grad_%d", how[k], l);
            npyf_free(&a);
            free(g64[l]);
        }
    }

    /* bad input: the server's 400 and message on stderr, exit 1 */
    float *bx = b.boxes;
    bx[3] = bx[1]; /* zero height */
    write_npy(dir, "bad.npy", &b.t_boxes);
    snprintf(args, sizeof args, "--url %s out0.npy out1.npy out2.npy --boxes bad.npy", plain.url);
    ck_assert_int_eq(run_cli(dir, args), 1);
    const char *e = slurp(dir, "stderr.txt");
    ck_assert_msg(strstr(e, "HTTP 400") && strstr(e, "boxes[0][0]"), "%s", e);
    ck_assert_str_eq(slurp(dir, "stdout.txt"), "");

    /* wrong model for three outputs */
    snprintf(args, sizeof args, "--url %s --model yolov3-tiny out0.npy out1.npy out2.npy "
             "--boxes boxes.npy", plain.url);
    ck_assert_int_eq(run_cli(dir, args), 1);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "HTTP 400") != NULL, "%s",
                  slurp(dir, "stderr.txt"));

    /* usage and file errors: exit 2 */
    ck_assert_int_eq(run_cli(dir, "out0.npy"), 2);
    ck_assert_int_eq(run_cli(dir, "out0.npy --boxes missing.npy"), 2);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "missing.npy") != NULL, "%s",
                  slurp(dir, "stderr.txt"));
    ck_assert_int_eq(run_cli(dir, "--bogus"), 2);
    ck_assert_int_eq(run_cli(dir, "--help"), 0);

    /* token */
    snprintf(args, sizeof args, "--url %s --model yolov3 out0.npy out1.npy out2.npy "
             "--boxes boxes.npy", guarded.url);
    ck_assert_int_eq(run_cli(dir, args), 1);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "HTTP 401") != NULL, "%s",
                  slurp(dir, "stderr.txt"));
    snprintf(args, sizeof args, "--url %s --token t0ken out0.npy out1.npy out2.npy "
             "--boxes boxes.npy", guarded.url);
    ck_assert_int_eq(run_cli(dir, args), 0);

    /* retry flags: nothing listens, the attempts are in the message */
    char gone[64];
    fake_refusing_url(gone, sizeof gone);
    snprintf(args, sizeof args, "--url %s --max-attempts 3 out0.npy out1.npy out2.npy "
             "--boxes boxes.npy", gone);
    ck_assert_int_eq(run_cli(dir, args), 1);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "(3 attempts)") != NULL, "%s",
                  slurp(dir, "stderr.txt"));
    snprintf(args, sizeof args, "--url %s --no-retry out0.npy out1.npy out2.npy "
             "--boxes boxes.npy", gone);
    ck_assert_int_eq(run_cli(dir, args), 1);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "(1 attempt)") != NULL, "%s",
                  slurp(dir, "stderr.txt"));
    ck_assert_int_eq(run_cli(dir, "--max-attempts 0 out0.npy --boxes boxes.npy"), 2);
    ck_assert_int_eq(run_cli(dir, "--tensors sparse out0.npy --boxes boxes.npy"), 2);
    ck_assert_msg(strstr(slurp(dir, "stderr.txt"), "auto, compact, dense") != NULL, "%s",
                  slurp(dir, "stderr.txt"));
    ck_assert_int_eq(run_cli(dir, "--transport tcp out0.npy --boxes boxes.npy"), 2);
    ck_assert_int_eq(run_cli(dir, "--grad-dtype float16 out0.npy --boxes boxes.npy"), 2);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
    batch_free(&b);
}
END_TEST

/* ------------------------------------------------------------------------------------ */

static Suite *suite(void)
{
    Suite *s = suite_create("clients-c");
    TCase *t = tcase_create("library");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, test_yolov3_f32_boxes);
    tcase_add_test(t, test_tiny_f16_five_d);
    tcase_add_test(t, test_mixed_dtypes_dense_y_true);
    tcase_add_test(t, test_bf16_and_f64);
    tcase_add_test(t, test_parameters);
    tcase_add_test(t, test_bad_input_round_trip);
    tcase_add_test(t, test_local_refusals_and_no_server);
    tcase_add_test(t, test_token_and_metadata);
    tcase_add_test(t, test_overload_retries);
    suite_add_tcase(s, t);
    TCase *tr = tcase_create("transports");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, test_transports_yolov3_boxes);
    tcase_add_test(tr, test_transports_tiny_f16_y_true);
    tcase_add_test(tr, test_transports_mixed_dtypes);
    tcase_add_test(tr, test_transports_bf16_f64);
    tcase_add_test(tr, test_transports_full_size);
    tcase_add_test(tr, test_auto_uses_compact_shm_and_cleans_up);
    tcase_add_test(tr, test_shm_region_forgotten);
    tcase_add_test(tr, test_threads_own_clients);
    suite_add_tcase(s, tr);
    TCase *compact = tcase_create("compact");
    tcase_set_timeout(compact, 60);
    tcase_add_test(compact, test_compact_rows_against_core);
    tcase_add_test(compact, test_compact_boxes_on_cell_edges);
    tcase_add_test(compact, test_compact_plan_declines_odd_shapes);
    tcase_add_test(compact, test_compact_y_true_objectness);
    suite_add_tcase(s, compact);
    TCase *retry = tcase_create("retry");
    tcase_set_timeout(retry, 60);
    tcase_add_test(retry, test_retry_transient_failures);
    tcase_add_test(retry, test_retry_not_for_other_statuses);
    tcase_add_test(retry, test_retry_max_attempts_and_off);
    tcase_add_test(retry, test_retry_deadline_and_call_timeout);
    tcase_add_test(retry, test_shm_falls_back_to_the_wire);
    suite_add_tcase(s, retry);
    TCase *cli = tcase_create("cli");
    tcase_set_timeout(cli, 60);
    tcase_add_test(cli, test_cli);
    suite_add_tcase(s, cli);
    return s;
}

int main(void)
{
    cli_path = getenv("YL_CLI") ? getenv("YL_CLI") : "build/yololoss";
    static char abs_cli[4096];
    if (cli_path[0] != '/' && getcwd(abs_cli, sizeof abs_cli - strlen(cli_path) - 2)) {
        strcat(abs_cli, "/");
        strcat(abs_cli, cli_path);
        cli_path = abs_cli;
    }
    snprintf(token_path, sizeof token_path, "/tmp/ylc-token-XXXXXX");
    int fd = mkstemp(token_path);
    if (fd < 0 || write(fd, "t0ken\n", 6) != 6) {
        perror("token file");
        return 2;
    }
    close(fd);
    if (daemon_start(&plain, NULL, NULL) || daemon_start(&guarded, "--token-file", token_path)) {
        daemon_stop(&plain);
        daemon_stop(&guarded);
        unlink(token_path);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    daemon_stop(&plain);
    daemon_stop(&guarded);
    unlink(token_path);
    return failed ? 1 : 0;
}
