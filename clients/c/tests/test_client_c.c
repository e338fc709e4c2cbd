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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"
#include "npyfile.h"
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
/* Retries, against the scripted fake server: attempts counted, never timed.               */

static ylc_client *fake_client(const char *url, int max_attempts, double timeout)
{
    ylc_client *c;
    ylc_error err;
    ylc_options o = {.url = url, .model = "yolov3", .timeout = timeout,
                     .max_attempts = max_attempts};
    ck_assert_msg(ylc_client_new(&c, &o, &err) == 0, "%s", err.msg);
    return c;
}

/* A one-layer request the fake server answers (it does not look at it). */
static float fake_out[18], fake_boxes[5] = {10, 10, 20, 20, 0};

static int fake_compute(ylc_client *c, double timeout, ylc_error *err)
{
    ylc_tensor out = {fake_out, YLC_F32, 4, {1, 1, 1, 18}};
    ylc_tensor boxes = {fake_boxes, YLC_F32, 3, {1, 1, 5}};
    ylc_request req = {.outputs = &out, .n_outputs = 1, .boxes = &boxes, .timeout = timeout};
    ylc_result r;
    int rc = ylc_compute(c, &req, &r, err);
    if (rc == 0)
        ck_assert_msg(r.loss == 2.5 && r.terms[3] == 0.25, "the fake answer, parsed");
    ylc_result_free(&r);
    return rc;
}

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
    TCase *retry = tcase_create("retry");
    tcase_set_timeout(retry, 60);
    tcase_add_test(retry, test_retry_transient_failures);
    tcase_add_test(retry, test_retry_not_for_other_statuses);
    tcase_add_test(retry, test_retry_max_attempts_and_off);
    tcase_add_test(retry, test_retry_deadline_and_call_timeout);
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
