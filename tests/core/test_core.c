/* Core invariants, validation errors and gradients, independent of the golden cases:
 * - the gradient against central finite differences of the loss, in double;
 * - 1 thread and N threads, any image order: bit-identical;
 * - the box path equals the dense path fed with yl_boxes_to_y_true's output;
 * - padding rows anywhere change nothing; loss-only equals the loss of a gradient run;
 * - every malformed call gets its error code and a message naming the tensor and index.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h" /* yl__exp_neg_abs, the kernels' exp */
#include "suites.h"
#include "yololoss.h"

/* ---------------------------------------------------------------- random batches */

static uint64_t rng;

static double uniform(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static double normal(void) {
    return sqrt(-2 * log(uniform() + 1e-300)) * cos(6.283185307179586 * uniform());
}

typedef struct {
    int L, B, C, T;
    int64_t gh, gw; /* first layer's grid */
    yl_config cfg;
    yl_tensor out[3], boxes;
    double *out_data[3];
    double *box_data;
    float *grad[3];
    yl_grads g; /* fp32, layer[l] = grad[l] */
    double *grad64[3];
    yl_grads g64; /* fp64, layer[l] = grad64[l] */
} batch;

static int64_t layer_elems(const batch *x, int l) {
    return (int64_t)x->B * (x->gh << l) * (x->gw << l) * 3 * (5 + x->C);
}

/* Random fp64 logits of scale `sd`, T box rows per image of which the last `pad` are
 * padding (all zero), classes < C. */
static void make_batch(batch *x, int anchors, int B, int C, int64_t gh, int64_t gw, int T,
                       int pad, double sd, uint64_t seed) {
    memset(x, 0, sizeof *x);
    rng = seed;
    x->L = anchors / 3;
    x->B = B;
    x->C = C;
    x->T = T;
    x->gh = gh;
    x->gw = gw;
    yl_config_default(&x->cfg, anchors);
    x->g.dtype = YL_F32;
    x->g64.dtype = YL_F64;
    for (int l = 0; l < x->L; l++) {
        int64_t n = layer_elems(x, l);
        x->out_data[l] = malloc((size_t)n * sizeof(double));
        x->g.layer[l] = x->grad[l] = malloc((size_t)n * sizeof(float));
        x->g64.layer[l] = x->grad64[l] = malloc((size_t)n * sizeof(double));
        for (int64_t i = 0; i < n; i++)
            x->out_data[l][i] = sd * normal();
        x->out[l] = (yl_tensor){x->out_data[l], YL_F64, 4, {B, gh << l, gw << l, 3 * (5 + C)}};
    }
    double in_w = 32.0 * (double)gw, in_h = 32.0 * (double)gh;
    x->box_data = calloc((size_t)B * T * 5, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T - pad; t++) {
            double *r = x->box_data + ((size_t)b * T + t) * 5;
            double w = 4 + uniform() * in_w * 0.6, h = 4 + uniform() * in_h * 0.6;
            r[0] = floor(uniform() * (in_w - w));
            r[1] = floor(uniform() * (in_h - h));
            r[2] = r[0] + floor(w);
            r[3] = r[1] + floor(h);
            r[4] = floor(uniform() * C);
        }
    x->boxes = (yl_tensor){x->box_data, YL_F64, 3, {B, T, 5}};
}

static void free_batch(batch *x) {
    for (int l = 0; l < x->L; l++) {
        free(x->out_data[l]);
        free(x->grad[l]);
        free(x->grad64[l]);
    }
    free(x->box_data);
}

static void init_boxes(yl_problem *p, batch *x) {
    yl_error err;
    int rc = yl_problem_init(p, &x->cfg, x->out, x->L, &x->boxes, NULL, 0, &err);
    ck_assert_msg(rc == YL_OK, "init: %s", err.msg);
}

static yl_result run(const yl_problem *p, int threads, const yl_grads *grad,
                     double *image_terms) {
    yl_result r;
    yl_error err;
    int rc = yl_compute(p, threads, grad, &r, image_terms, &err);
    ck_assert_msg(rc == YL_OK, "compute: %s", err.msg);
    return r;
}

/* ---------------------------------------------------------------- gradients */

/* fp64 gradients against extrapolated differences: measured worst 3.7e-10 over the three
 * tests; storing through float would miss it by up to 3e-8 (a gradient near 0.5). */
#define FD64_TOL 2e-9

/* Every element of small layers (a stride through larger ones): the analytic gradient in
 * x->grad (from a run of p) against central differences of p's loss, perturbing x's data. */
static int compare_with_finite_differences(const yl_problem *p, batch *x, const char *what) {
    const double h = 1e-6;
    int checked = 0;
    for (int l = 0; l < x->L; l++) {
        int64_t n = layer_elems(x, l), step = n > 3000 ? 7 : 1;
        for (int64_t i = 0; i < n; i += step) {
            double keep = x->out_data[l][i];
            x->out_data[l][i] = keep + h;
            double up = run(p, 1, NULL, NULL).loss;
            x->out_data[l][i] = keep - h;
            double down = run(p, 1, NULL, NULL).loss;
            x->out_data[l][i] = keep;
            double fd = (up - down) / (2 * h);
            ck_assert_msg(fabs(fd - x->grad[l][i]) < 1e-6,
                          "%s: layer %d element %lld: analytic %.10g, finite difference %.10g",
                          what, l, (long long)i, (double)x->grad[l][i], fd);
            checked++;
        }
    }
    /* fp64 gradients, tighter: Richardson extrapolation of central differences with steps
     * 1e-4 and 5e-5 has error O(h^4), far below the 1e-6 the fp32 rounding needs */
    run(p, 1, &x->g64, NULL);
    for (int l = 0; l < x->L; l++) {
        int64_t n = layer_elems(x, l), step = n > 3000 ? 7 : 1;
        for (int64_t i = 0; i < n; i += step) {
            double keep = x->out_data[l][i], d[2];
            for (int q = 0; q < 2; q++) {
                double hq = q ? 5e-5 : 1e-4;
                x->out_data[l][i] = keep + hq;
                double up = run(p, 1, NULL, NULL).loss;
                x->out_data[l][i] = keep - hq;
                double down = run(p, 1, NULL, NULL).loss;
                d[q] = (up - down) / (2 * hq);
            }
            x->out_data[l][i] = keep;
            double fd = (4 * d[1] - d[0]) / 3;
            ck_assert_msg(fabs(fd - x->grad64[l][i]) < FD64_TOL,
                          "%s: layer %d element %lld: fp64 analytic %.17g, finite difference %.17g",
                          what, l, (long long)i, x->grad64[l][i], fd);
        }
    }
    return checked;
}

static void check_finite_differences(int anchors, int C, int64_t gh, int64_t gw, double thresh,
                                     uint64_t seed) {
    batch x;
    make_batch(&x, anchors, 2, C, gh, gw, 4, 1, 1.5, seed);
    x.cfg.ignore_thresh = thresh;
    yl_problem p;
    init_boxes(&p, &x);
    yl_result r = run(&p, 1, &x.g, NULL);
    /* the ignore mask must really be in play, or its gradient goes untested */
    double ignored = 0;
    for (int l = 0; l < x.L; l++)
        ignored += r.stats[l][YL_STAT_IGNORED];
    ck_assert_msg(ignored > 0, "seed %llu: no anchor ignored; pick another", (unsigned long long)seed);
    ck_assert_int_gt(compare_with_finite_differences(&p, &x, "boxes"), 100);
    free_batch(&x);
}

START_TEST(gradient_matches_finite_differences_full) {
    check_finite_differences(9, 2, 1, 2, 0.1, 11);
}
END_TEST

START_TEST(gradient_matches_finite_differences_tiny) {
    check_finite_differences(6, 3, 2, 1, 0.05, 14);
}
END_TEST

/* Soft objectness exercises the (1 - obj) * BCE * ignore term of the dense path. */
START_TEST(gradient_matches_finite_differences_dense_soft) {
    batch x;
    make_batch(&x, 6, 2, 2, 1, 1, 3, 0, 1.0, 13);
    yl_problem p;
    init_boxes(&p, &x);
    float *yt[2];
    yl_tensor ytt[2];
    for (int l = 0; l < 2; l++) {
        yt[l] = malloc((size_t)layer_elems(&x, l) * sizeof(float));
        ytt[l] = (yl_tensor){yt[l], YL_F32, 5, {2, 1 << l, 1 << l, 3, 5 + 2}};
    }
    yl_error err;
    ck_assert_int_eq(yl_boxes_to_y_true(&p, yt, &err), YL_OK);
    for (int l = 0; l < 2; l++)
        for (int64_t a = 0; a < layer_elems(&x, l) / 7; a++)
            if (yt[l][a * 7 + 4] != 0)
                yt[l][a * 7 + 4] = 0.75f;
    yl_problem d;
    ck_assert_msg(yl_problem_init(&d, &x.cfg, x.out, 2, NULL, ytt, 2, &err) == YL_OK, "%s", err.msg);
    run(&d, 1, &x.g, NULL);
    ck_assert_int_gt(compare_with_finite_differences(&d, &x, "dense, objectness 0.75"), 100);
    for (int l = 0; l < 2; l++)
        free(yt[l]);
    free_batch(&x);
}
END_TEST

/* ---------------------------------------------------------------- invariants */

static int64_t total_elems(const batch *x) {
    int64_t n = 0;
    for (int l = 0; l < x->L; l++)
        n += layer_elems(x, l);
    return n;
}

START_TEST(threads_and_order_give_identical_bits) {
    batch x;
    make_batch(&x, 9, 7, 5, 2, 3, 6, 2, 2.0, 21);
    yl_problem p;
    init_boxes(&p, &x);
    double it1[7 * 4], itn[7 * 4];
    yl_result r1 = run(&p, 1, &x.g, it1);
    float *g1[3];
    for (int l = 0; l < 3; l++) {
        g1[l] = malloc((size_t)layer_elems(&x, l) * sizeof(float));
        memcpy(g1[l], x.grad[l], (size_t)layer_elems(&x, l) * sizeof(float));
    }
    for (int threads = 2; threads <= 8; threads += 3) {
        memset(itn, 0, sizeof itn);
        yl_result rn = run(&p, threads, &x.g, itn);
        ck_assert_msg(memcmp(&r1, &rn, sizeof r1) == 0, "%d threads: result differs", threads);
        ck_assert(memcmp(it1, itn, sizeof it1) == 0);
        for (int l = 0; l < 3; l++)
            ck_assert_msg(memcmp(g1[l], x.grad[l], (size_t)layer_elems(&x, l) * sizeof(float)) == 0,
                          "%d threads: gradient of layer %d differs", threads, l);
    }
    /* the per-image API, images in reverse order with one scratch, reduced at the end */
    yl_image_result img[7];
    void *scratch = malloc(yl_scratch_size(&p));
    yl_error err;
    for (int b = 6; b >= 0; b--)
        ck_assert_int_eq(yl_image(&p, b, scratch, &x.g, &img[b], &err), YL_OK);
    yl_result rr;
    yl_reduce(&p, img, &rr);
    ck_assert(memcmp(&r1, &rr, sizeof r1) == 0);
    (void)total_elems;
    free(scratch);
    for (int l = 0; l < 3; l++)
        free(g1[l]);
    free_batch(&x);
}
END_TEST

START_TEST(loss_only_equals_gradient_run) {
    batch x;
    make_batch(&x, 9, 3, 4, 1, 1, 5, 1, 3.0, 22);
    yl_problem p;
    init_boxes(&p, &x);
    yl_result a = run(&p, 1, NULL, NULL), b = run(&p, 2, &x.g, NULL);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    free_batch(&x);
}
END_TEST

static void check_box_path_equals_dense(int anchors, int ndim, uint64_t seed) {
    batch x;
    make_batch(&x, anchors, 3, 4, 2, 1, 9, 2, 1.0, seed);
    yl_problem p;
    init_boxes(&p, &x);
    float *yt[3], *g_box[3];
    yl_grads gb = {.dtype = YL_F32};
    yl_tensor ytt[3];
    for (int l = 0; l < x.L; l++) {
        int64_t n = layer_elems(&x, l);
        yt[l] = malloc((size_t)n * sizeof(float));
        gb.layer[l] = g_box[l] = malloc((size_t)n * sizeof(float));
        ytt[l] = ndim == 5 ? (yl_tensor){yt[l], YL_F32, 5, {3, 2 << l, 1 << l, 3, 9}}
                           : (yl_tensor){yt[l], YL_F32, 4, {3, 2 << l, 1 << l, 27}};
    }
    yl_error err;
    ck_assert_int_eq(yl_boxes_to_y_true(&p, yt, &err), YL_OK);
    double it_box[12], it_dense[12];
    yl_result rb = run(&p, 1, &gb, it_box);
    yl_problem d;
    ck_assert_msg(yl_problem_init(&d, &x.cfg, x.out, x.L, NULL, ytt, x.L, &err) == YL_OK, "%s",
                  err.msg);
    yl_result rd = run(&d, 1, &x.g, it_dense);
    ck_assert_msg(memcmp(&rb, &rd, sizeof rb) == 0, "box %.17g vs dense %.17g", rb.loss, rd.loss);
    ck_assert(memcmp(it_box, it_dense, sizeof it_box) == 0);
    for (int l = 0; l < x.L; l++) {
        ck_assert(memcmp(g_box[l], x.grad[l], (size_t)layer_elems(&x, l) * sizeof(float)) == 0);
        free(yt[l]);
        free(g_box[l]);
    }
    free_batch(&x);
}

START_TEST(box_path_equals_dense_path) {
    check_box_path_equals_dense(9, 5, 31);
    check_box_path_equals_dense(9, 4, 32);
    check_box_path_equals_dense(6, 5, 33);
}
END_TEST

START_TEST(padding_rows_anywhere_change_nothing) {
    batch x;
    make_batch(&x, 9, 2, 3, 1, 2, 8, 3, 1.0, 41);
    yl_problem p;
    init_boxes(&p, &x);
    yl_result last = run(&p, 1, NULL, NULL);
    /* move the three trailing padding rows of each image to the front and the middle,
     * keeping the order of the real rows */
    double *moved = calloc(2 * 8 * 5, sizeof(double));
    int slot_of_real[5] = {1, 2, 4, 6, 7};
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 5; t++)
            memcpy(moved + (b * 8 + slot_of_real[t]) * 5, x.box_data + (b * 8 + t) * 5,
                   5 * sizeof(double));
    /* padding rows only need width <= 0; give them junk elsewhere */
    double junk[5] = {50, 60, 40, 10, 1234.5};
    memcpy(moved + 0 * 5, junk, sizeof junk);
    memcpy(moved + (8 + 3) * 5, junk, sizeof junk);
    yl_tensor bt = {moved, YL_F64, 3, {2, 8, 5}};
    yl_problem q;
    yl_error err;
    ck_assert_msg(yl_problem_init(&q, &x.cfg, x.out, 3, &bt, NULL, 0, &err) == YL_OK, "%s", err.msg);
    yl_result anywhere = run(&q, 1, NULL, NULL);
    ck_assert(memcmp(&last, &anywhere, sizeof last) == 0);
    free(moved);
    free_batch(&x);
}
END_TEST

/* The kernel skips decoding predictions that provably cannot reach ignore_thresh. Check the
 * "ignored" count against decoding everything, by brute force, with dense truths anywhere
 * (off the grid too: keras accepts any centre there) and thresholds from tiny to above 1. */
static double sig(double x) { return 1 / (1 + exp(-x)); }

static int64_t brute_force_ignored(const batch *x, int l, const float *yt, double thresh) {
    int64_t gh = x->gh << l, gw = x->gw << l, ch = 5 + x->C, ignored = 0;
    const int *mask = x->L == 3 ? (const int[]){6, 7, 8, 3, 4, 5, 0, 1, 2} + 3 * l
                                : (const int[]){3, 4, 5, 1, 2, 3} + 3 * l;
    double in_w = 32.0 * (double)x->gw, in_h = 32.0 * (double)x->gh;
    for (int b = 0; b < x->B; b++)
        for (int64_t a = 0; a < gh * gw * 3; a++) {
            const float *y = yt + ((int64_t)b * gh * gw * 3 + a) * ch;
            if (y[4] != 0)
                continue;
            const double *t = x->out_data[l] + ((int64_t)b * gh * gw * 3 + a) * ch;
            int64_t i = (a / 3) % gw, j = (a / 3) / gw;
            int k = (int)(a % 3);
            double px = (sig(t[0]) + (double)i) / (double)gw, py = (sig(t[1]) + (double)j) / (double)gh;
            double pw = exp(t[2]) * x->cfg.anchors[2 * mask[k]] / in_w;
            double ph = exp(t[3]) * x->cfg.anchors[2 * mask[k] + 1] / in_h;
            double best = -INFINITY; /* keras: max over no truths */
            for (int64_t q = 0; q < gh * gw * 3; q++) {
                const float *tr = yt + ((int64_t)b * gh * gw * 3 + q) * ch;
                if (tr[4] == 0)
                    continue;
                double iw = fmin(px + pw / 2, tr[0] + tr[2] / 2.0) - fmax(px - pw / 2, tr[0] - tr[2] / 2.0);
                double ih = fmin(py + ph / 2, tr[1] + tr[3] / 2.0) - fmax(py - ph / 2, tr[1] - tr[3] / 2.0);
                double inter = fmax(iw, 0) * fmax(ih, 0);
                double iou = inter / (pw * ph + (double)tr[2] * tr[3] - inter);
                best = fmax(best, iou);
            }
            ignored += best >= thresh;
        }
    return ignored;
}

START_TEST(culling_matches_brute_force) {
    const double thresholds[] = {1e-6, 0.05, 0.3, 0.5, 0.9, 1.0, 1.5, 0.0, -1.0};
    for (int seed = 0; seed < 12; seed++) {
        batch x;
        make_batch(&x, seed % 2 ? 6 : 9, 2, 2, 2, 3, 1, 1, 1.5, 100 + (uint64_t)seed);
        float *yt[3];
        yl_tensor ytt[3];
        for (int l = 0; l < x.L; l++) {
            int64_t n = layer_elems(&x, l);
            yt[l] = calloc((size_t)n, sizeof(float));
            ytt[l] = (yl_tensor){yt[l], YL_F32, 4, {2, 2 << l, 3 << l, 21}};
            /* a few truths per image and layer, some centred off the grid, some huge */
            for (int q = 0; q < 6; q++) {
                int64_t a = (int64_t)(uniform() * (double)(n / 7));
                float *r = yt[l] + a * 7;
                r[0] = (float)(q == 0 ? 3.0 : q == 1 ? -2.5 : uniform() * 1.2 - 0.1);
                r[1] = (float)(q == 2 ? 1e6 : uniform());
                r[2] = (float)(q == 3 ? 1e30 : 0.02 + uniform() * 0.6);
                r[3] = (float)(0.02 + uniform() * 0.6);
                r[4] = 1;
                r[5 + (q & 1)] = 1;
            }
        }
        for (size_t ti = 0; ti < sizeof thresholds / sizeof *thresholds; ti++) {
            x.cfg.ignore_thresh = thresholds[ti];
            yl_problem p;
            yl_error err;
            ck_assert_msg(yl_problem_init(&p, &x.cfg, x.out, x.L, NULL, ytt, x.L, &err) == YL_OK,
                          "%s", err.msg);
            yl_result r = run(&p, 2, &x.g, NULL);
            for (int l = 0; l < x.L; l++)
                ck_assert_msg(r.stats[l][YL_STAT_IGNORED] ==
                                  (double)brute_force_ignored(&x, l, yt[l], thresholds[ti]),
                              "seed %d, thresh %g, layer %d: %g ignored, brute force %lld", seed,
                              thresholds[ti], l, r.stats[l][YL_STAT_IGNORED],
                              (long long)brute_force_ignored(&x, l, yt[l], thresholds[ti]));
        }
        for (int l = 0; l < x.L; l++)
            free(yt[l]);
        free_batch(&x);
    }
}
END_TEST

/* ---------------------------------------------------------------- keras quirks */

/* The 5+C row of y_true for image b, cell (j, i), anchor k, on a layer of grid gh x gw. */
static float *yt_row(float *yt, int64_t gh, int64_t gw, int C, int b, int64_t j, int64_t i,
                     int k) {
    return yt + ((((int64_t)b * gh + j) * gw + i) * 3 + k) * (5 + C);
}

START_TEST(shared_cell_overwrites_box_and_accumulates_classes) {
    batch x;
    make_batch(&x, 9, 1, 4, 13, 13, 2, 2, 1.0, 51); /* 416x416 */
    /* two 100x120 boxes centred at (150, 160) and (154, 160): the same cell (4, 5) of the
     * 13x13 layer and the same best anchor (116x90: index 6, layer 0, k 0). The second's
     * xywh wins; the classes 1 and 3 both stay set. */
    double rows[10] = {100, 100, 200, 220, 1, 104, 100, 204, 220, 3};
    memcpy(x.box_data, rows, sizeof rows);
    yl_problem p;
    init_boxes(&p, &x);
    float *yt[3];
    for (int l = 0; l < 3; l++)
        yt[l] = malloc((size_t)layer_elems(&x, l) * sizeof(float));
    yl_error err;
    ck_assert_int_eq(yl_boxes_to_y_true(&p, yt, &err), YL_OK);
    float *r = yt_row(yt[0], 13, 13, 4, 0, 5, 4, 0);
    ck_assert(r[4] == 1.0f && r[5 + 1] == 1.0f && r[5 + 3] == 1.0f && r[5 + 0] == 0 && r[5 + 2] == 0);
    ck_assert(r[0] == (float)(154.0 / 416.0) && r[1] == (float)(160.0 / 416.0));
    ck_assert(r[2] == (float)(100.0 / 416.0) && r[3] == (float)(120.0 / 416.0));
    yl_result res = run(&p, 1, NULL, NULL);
    ck_assert(res.stats[0][YL_STAT_COUNT] == 1); /* one truth anchor, not two */
    for (int l = 0; l < 3; l++)
        free(yt[l]);
    free_batch(&x);
}
END_TEST

START_TEST(tiny_drops_anchor0_and_doubles_anchor3) {
    batch x;
    make_batch(&x, 6, 1, 2, 4, 4, 2, 2, 1.0, 52); /* 128x128 */
    double rows[10] = {4, 4, 14, 18, 0,      /* 10x14: anchor 0, in no tiny mask */
                       1, 1, 82, 83, 1};     /* 81x82: anchor 3, in both masks */
    memcpy(x.box_data, rows, sizeof rows);
    yl_problem p;
    init_boxes(&p, &x);
    yl_result r = run(&p, 1, NULL, NULL);
    ck_assert(r.stats[0][YL_STAT_COUNT] == 1);
    ck_assert(r.stats[1][YL_STAT_COUNT] == 1);
    free_batch(&x);
}
END_TEST

START_TEST(no_truth_means_nothing_ignored) {
    batch x;
    make_batch(&x, 9, 2, 2, 1, 1, 2, 2, 1.0, 53); /* all padding */
    yl_problem p;
    init_boxes(&p, &x);
    yl_result r = run(&p, 1, NULL, NULL);
    for (int l = 0; l < 3; l++) {
        ck_assert(r.stats[l][YL_STAT_IGNORED] == 0 && r.stats[l][YL_STAT_COUNT] == 0);
        ck_assert(r.stats[l][YL_STAT_AVG_IOU] == 0 && r.stats[l][YL_STAT_AVG_NOOBJ] > 0);
    }
    ck_assert(r.terms[0] == 0 && r.terms[1] == 0 && r.terms[3] == 0 && r.terms[2] > 0);
    free_batch(&x);
}
END_TEST

/* The kernels' own exp(-|x|) against libm's on a million values over its whole range and
 * at the edges: within 2 ulp (libm's is within 1 of the exact value). */
START_TEST(kernel_exp_within_2_ulp) {
    enum { N = 1 << 20 };
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    static const double edges[] = {0.0, -0.0, 1e-300, 5e-324, 1e-17, 0x1p-20, 0.34657359,
                                   0.34657360, 1.0, 708.0, 708.3964, 708.4, 709.0, 744.0,
                                   745.0, 745.13, 745.14, 745.2, 746.0, 800.0, 1e300};
    int ne = (int)(sizeof edges / sizeof edges[0]);
    rng = 99;
    for (int i = 0; i < N; i++)
        x[i] = i < ne ? edges[i] : (i % 2 ? -1 : 1) * (i % 3 ? 750 * uniform() : 2 * uniform());
    yl__exp_neg_abs(x, y, N);
    int64_t worst = 0;
    for (int i = 0; i < N; i++) {
        double want = exp(-fabs(x[i]));
        int64_t a, b;
        memcpy(&a, &y[i], 8);
        memcpy(&b, &want, 8);
        int64_t d = a > b ? a - b : b - a;
        if (d > worst)
            worst = d;
        if (d > 2)
            ck_abort_msg("exp(-|%.17g|): kernel %.17g, libm %.17g (%lld ulp)", x[i], y[i], want,
                         (long long)d);
    }
    ck_assert_int_le(worst, 2);
    free(x);
    free(y);
}
END_TEST

/* The kernels' dtype-specialised gather converts every fp16 and bf16 bit pattern as the
 * reference conversions do (yl_half_to_double, yl_bf16_to_double), in both builds. */
START_TEST(kernel_gather_converts_every_half) {
    uint16_t *h = malloc(65536 * sizeof *h);
    double *out = malloc(65536 * sizeof *out);
    for (uint32_t i = 0; i < 65536; i++)
        h[i] = (uint16_t)i;
    for (int kernel = YL_KERNEL_SCALAR; kernel <= YL_KERNEL_AVX2; kernel++)
        for (int d = 0; d < 2; d++) {
            int dtype = d ? YL_BF16 : YL_F16;
            yl__kernels_for(kernel)->gather(h, dtype, 0, 1, 65536, out);
            int64_t bad = -1;
            for (uint32_t i = 0; i < 65536 && bad < 0; i++) {
                double want = d ? yl_bf16_to_double((uint16_t)i) : yl_half_to_double((uint16_t)i);
                if (isnan(want) ? !isnan(out[i]) : memcmp(&want, &out[i], 8) != 0)
                    bad = i;
            }
            ck_assert_msg(bad < 0, "%s gather of %s 0x%04llx: %.17g", yl__kernels_for(kernel)->name,
                          yl_dtype_name(dtype), (unsigned long long)bad, bad >= 0 ? out[bad] : 0.0);
        }
    free(h);
    free(out);
}
END_TEST

/* Store v as element i of a buffer of the given dtype. */
static void put_value(void *buf, int dtype, int64_t i, double v) {
    if (dtype == YL_F32)
        ((float *)buf)[i] = (float)v;
    else if (dtype == YL_F64)
        ((double *)buf)[i] = v;
    else
        ((uint16_t *)buf)[i] = dtype == YL_F16 ? yl_double_to_half(v) : yl_double_to_bf16(v);
}

static void put_bits(void *buf, int dtype, int64_t i, int inf) {
    if (dtype == YL_F32)
        ((float *)buf)[i] = inf ? INFINITY : NAN;
    else if (dtype == YL_F64)
        ((double *)buf)[i] = inf ? -INFINITY : NAN;
    else if (dtype == YL_F16)
        ((uint16_t *)buf)[i] = inf ? 0x7c00 : 0x7e01;
    else
        ((uint16_t *)buf)[i] = inf ? 0xff80 : 0x7fc1;
}

/* read_row, both builds, every dtype, dense (85) and compact (5) strides, an anchor count
 * that is no multiple of the kernel's group: t_o gathered exactly (yl__load), its exp equal
 * to the scalar exp's bits, and with one or two non-finite values placed at group edges,
 * first and last, the index of the first of them. */
START_TEST(kernel_read_row_gathers_and_finds_first_nonfinite) {
    const int dtypes[4] = {YL_F32, YL_F64, YL_F16, YL_BF16};
    const int64_t strides[2] = {85, 5}, n = 37;
    double to[40], e[40], want_e[40], want_to[40];
    rng = 11;
    for (int kernel = YL_KERNEL_SCALAR; kernel <= YL_KERNEL_AVX2; kernel++)
        for (int d = 0; d < 4; d++)
            for (int si = 0; si < 2; si++) {
                const yl__kernels *k = yl__kernels_for(kernel);
                int64_t stride = strides[si], first = 3, total = first + n * stride;
                unsigned char *buf = malloc((size_t)total * 8);
                for (int64_t i = 0; i < total; i++)
                    put_value(buf, dtypes[d], i, 20 * normal());
                for (int64_t q = 0; q < n; q++)
                    want_to[q] = yl__load(buf, dtypes[d], first + q * stride + 4);
                yl__exp_neg_abs(want_to, want_e, n);
                ck_assert_int_eq(k->read_row(buf, dtypes[d], first, n, stride, 4, to, e), -1);
                ck_assert_msg(!memcmp(to, want_to, sizeof(double) * n) &&
                                  !memcmp(e, want_e, sizeof(double) * n),
                              "%s read_row of %s, stride %lld: t_o or exp differ", k->name,
                              yl_dtype_name(dtypes[d]), (long long)stride);
                const int64_t spots[6] = {0, 8 * stride - 1, 8 * stride, 16 * stride + 4,
                                          n * stride - 1, 5};
                for (int a = 0; a < 6; a++) {
                    unsigned char *bad = malloc((size_t)total * 8);
                    memcpy(bad, buf, (size_t)total * 8);
                    put_bits(bad, dtypes[d], first + spots[a], a & 1);
                    int64_t later = spots[a] + 7 < n * stride ? spots[a] + 7 : -1;
                    if (later >= 0)
                        put_bits(bad, dtypes[d], first + later, !(a & 1));
                    int64_t got = k->read_row(bad, dtypes[d], first, n, stride, 4, to, e);
                    ck_assert_msg(got == spots[a], "%s read_row of %s, stride %lld: non-finite "
                                  "at %lld reported at %lld", k->name, yl_dtype_name(dtypes[d]),
                                  (long long)stride, (long long)spots[a], (long long)got);
                    free(bad);
                }
                free(buf);
            }
}
END_TEST

/* The culling kernels against the plain formulas, written here: admit's bounds, keras's
 * yolo_head (decode, libm's exp: within 1e-15 relative) and box_iou >= thresh with a NaN
 * IoU counted as 0 (reach, recomputed here from the decoded boxes: the same decisions),
 * in both builds, on logits up to 800 (exp(t_w) = inf: inf and NaN areas). The builds
 * give the same bits. */
START_TEST(kernel_culling_matches_plain_formulas) {
    enum { N = 203 };
    static double t[4 * N], e[4 * N], ci[N], aw[N], ah[N], box[2][4 * N], hit[2][N], cand[2][N];
    rng = 12;
    for (int r = 0; r < N; r++) {
        for (int v = 0; v < 4; v++)
            t[v * N + r] = r % 17 == 0 ? 800 * (uniform() - 0.5) : 1.5 * normal();
        ci[r] = (double)(r % 13);
        aw[r] = 60 + 150 * uniform();
        ah[r] = 60 + 150 * uniform();
    }
    t[2 * N + 1] = 800, t[3 * N + 1] = -800; /* inf * 0: a NaN IoU */
    t[2 * N + 2] = 0.4, t[3 * N + 2] = -1.2;  /* on admit's bounds below: admitted */
    t[2 * N + 3] = -0.7, t[3 * N + 3] = 0.9;
    for (int v = 0; v < 4; v++)
        yl__exp_neg_abs(t + v * N, e + v * N, N);
    const double grid_in[4] = {13, 13, 416, 416}, j = 6, thresh = 0.3;
    const double truth[3][4] = {{0.5, 0.5, 0.3, 0.4}, {0.1, 0.45, 0.05, 0.02}, {0.9, 0.6, 1, 1}};
    const double bounds[4] = {-0.7, 0.4, -1.2, 0.9};
    for (int kernel = YL_KERNEL_SCALAR; kernel <= YL_KERNEL_AVX2; kernel++) {
        const yl__kernels *k = yl__kernels_for(kernel);
        int b = kernel == YL_KERNEL_AVX2;
        k->decode(t, e, ci, aw, ah, N, N, j, grid_in, box[b]);
        for (int r = 0; r < N; r++) {
            double sx = 1 / (1 + exp(-t[r])), sy = 1 / (1 + exp(-t[N + r]));
            double want[4] = {(sx + ci[r]) / 13, (sy + j) / 13, exp(t[2 * N + r]) * aw[r] / 416,
                              exp(t[3 * N + r]) * ah[r] / 416};
            for (int v = 0; v < 4; v++) {
                double got = box[b][v * N + r];
                ck_assert_msg(isinf(want[v]) ? got == want[v]
                                             : fabs(got - want[v]) <= 1e-15 * fabs(want[v]),
                              "%s decode: candidate %d value %d: %.17g, want %.17g", k->name,
                              r, v, got, want[v]);
            }
            hit[b][r] = cand[b][r] = 0;
        }
        for (int q = 0; q < 3; q++)
            k->reach(box[b], N, N, truth[q], thresh, hit[b]);
        k->admit(t + 2 * N, t + 3 * N, N, bounds, cand[b]);
        for (int r = 0; r < N; r++) {
            const double *p = box[b];
            int want_hit = 0;
            for (int q = 0; q < 3; q++) {
                const double *u = truth[q];
                double iw = fmin(p[r] + p[2 * N + r] / 2, u[0] + u[2] / 2) -
                            fmax(p[r] - p[2 * N + r] / 2, u[0] - u[2] / 2);
                double ih = fmin(p[N + r] + p[3 * N + r] / 2, u[1] + u[3] / 2) -
                            fmax(p[N + r] - p[3 * N + r] / 2, u[1] - u[3] / 2);
                double inter = fmax(iw, 0) * fmax(ih, 0);
                double iou = inter / (p[2 * N + r] * p[3 * N + r] + u[2] * u[3] - inter);
                want_hit |= !isnan(iou) && iou >= thresh;
            }
            ck_assert_msg(hit[b][r] == want_hit, "%s reach: candidate %d: %g, want %d", k->name,
                          r, hit[b][r], want_hit);
            double tw = t[2 * N + r], th = t[3 * N + r];
            int want_in = tw >= bounds[0] && tw <= bounds[1] && th >= bounds[2] && th <= bounds[3];
            ck_assert_msg(cand[b][r] == want_in, "%s admit: candidate %d", k->name, r);
        }
    }
    ck_assert(!memcmp(box[0], box[1], sizeof box[0]) && !memcmp(hit[0], hit[1], sizeof hit[0]));
    int hits = 0;
    for (int r = 0; r < N; r++)
        hits += hit[0][r] != 0;
    ck_assert_msg(hits > 3 && hits < N - 3, "reach: %d hits of %d, the case tests nothing", hits,
                  N);
}
END_TEST

START_TEST(dtype_conversions_round_to_nearest_even) {
    ck_assert(yl_half_to_double(0x3c00) == 1.0);
    ck_assert(yl_half_to_double(0x0001) == ldexp(1, -24));
    ck_assert(yl_half_to_double(0xfbff) == -65504.0);
    ck_assert(isinf(yl_half_to_double(0x7c00)) && isnan(yl_half_to_double(0x7e00)));
    ck_assert_uint_eq(yl_double_to_half(1.0 + ldexp(1, -11)), 0x3c00); /* tie to even */
    ck_assert_uint_eq(yl_double_to_half(1.0 + 3 * ldexp(1, -11)), 0x3c02);
    ck_assert_uint_eq(yl_double_to_half(65504.0), 0x7bff);
    ck_assert_uint_eq(yl_double_to_half(70000.0), 0x7c00);
    ck_assert_uint_eq(yl_double_to_half(ldexp(1, -25)), 0x0000); /* tie to even: 0 */
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        ck_assert_uint_eq(yl_double_to_half(yl_half_to_double((uint16_t)h)), h);
    ck_assert(yl_bf16_to_double(0x3f80) == 1.0);
    ck_assert_uint_eq(yl_double_to_bf16(1.0 + ldexp(1, -8)), 0x3f80);
    ck_assert_uint_eq(yl_double_to_bf16(1.0 + 3 * ldexp(1, -8)), 0x3f82);
    /* rounded once: the sticky bit beyond float's precision decides the tie */
    ck_assert_uint_eq(yl_double_to_bf16(1.0 + ldexp(1, -8) + ldexp(1, -40)), 0x3f81);
    ck_assert_uint_eq(yl_double_to_bf16(-(1.0 + ldexp(1, -8) + ldexp(1, -40))), 0xbf81);
    ck_assert_uint_eq(yl_double_to_bf16(1.0 + 3 * ldexp(1, -8) - ldexp(1, -40)), 0x3f81);
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(1, -134)), 0x0000);      /* subnormal tie: even */
    ck_assert_uint_eq(yl_double_to_bf16(3 * ldexp(1, -134)), 0x0002);
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(1, -134) + ldexp(1, -170)), 0x0001); /* sticky */
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(127, -133) + ldexp(1, -134)), 0x0080); /* carry */
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(255, 120)), 0x7f7f);     /* largest finite */
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(511, 119)), 0x7f80);     /* tie above: inf */
    ck_assert_uint_eq(yl_double_to_bf16(ldexp(511, 119) - ldexp(1, 100)), 0x7f7f);
    ck_assert_uint_eq(yl_double_to_bf16(1e300), 0x7f80);
    ck_assert_uint_eq(yl_double_to_bf16(-INFINITY), 0xff80);
    ck_assert_uint_eq(yl_double_to_bf16(NAN), 0x7fc0);
    ck_assert_uint_eq(yl_double_to_bf16(-0.0), 0x8000);
    for (uint32_t h = 0; h < 0x7f80; h += 7)
        ck_assert_uint_eq(yl_double_to_bf16(yl_bf16_to_double((uint16_t)h)), h);
    ck_assert_str_eq(yl_dtype_name(YL_BF16), "BF16");
    ck_assert_int_eq(yl_dtype_from_name("FP16"), YL_F16);
    ck_assert_int_eq(yl_dtype_from_name("INT8"), -1);
}
END_TEST

/* ---------------------------------------------------------------- errors */

typedef struct {
    int code;
    const char *needle; /* the message must name this */
} expect;

static void expect_init(const char *what, int rc, const yl_error *err, expect e) {
    ck_assert_msg(rc == e.code, "%s: expected %s, got %s: %s", what, yl_err_name(e.code),
                  yl_err_name(rc), rc ? err->msg : "");
    ck_assert_msg(strstr(err->msg, e.needle) != NULL, "message \"%s\" does not name \"%s\"",
                  err->msg, e.needle);
}

START_TEST(malformed_calls_are_refused_with_context) {
    batch x;
    make_batch(&x, 9, 2, 3, 1, 2, 3, 0, 1.0, 61);
    yl_problem p;
    yl_error err;
    yl_tensor o[3];
    int rc;
#define WITH(mutation, code, needle)                                                    \
    do {                                                                                \
        memcpy(o, x.out, sizeof o);                                                     \
        yl_config cfg = x.cfg;                                                          \
        yl_tensor bx = x.boxes;                                                         \
        mutation;                                                                       \
        rc = yl_problem_init(&p, &cfg, o, 3, &bx, NULL, 0, &err);                       \
        expect_init(#mutation, rc, &err, (expect){code, needle});                       \
    } while (0)
    WITH(o[1].shape[0] = 3, YL_ESHAPE, "output_1: batch size 3");
    WITH(o[2].shape[3] = 3 * 7, YL_ESHAPE, "output_2");
    WITH(o[0].shape[3] = 25, YL_ESHAPE, "output_0: 25 channels");
    WITH(o[0].shape[3] = 15, YL_ESHAPE, "C >= 1");
    WITH(o[2].shape[1] = 5, YL_ESHAPE, "doubles");
    WITH(o[1].dtype = 7, YL_EDTYPE, "output_1: unknown dtype 7");
    WITH(o[0].shape[2] = 0, YL_ESHAPE, "output_0: dim 2 is 0");
    WITH(o[0].shape[1] = -4, YL_ESHAPE, "dim 1 is -4");
    WITH((o[0].shape[1] = INT64_C(1) << 40, o[0].shape[2] = INT64_C(1) << 40), YL_EOVERFLOW,
         "output_0");
    WITH(o[0].ndim = 3, YL_ESHAPE, "output_0: 3 dims");
    WITH(o[0].data = NULL, YL_EINVAL, "output_0");
    WITH(cfg.num_anchors = 7, YL_EINVAL, "anchors: 7");
    WITH(cfg.anchors[5] = -3, YL_EINVAL, "anchors: value 5");
    WITH(cfg.ignore_thresh = NAN, YL_EINVAL, "ignore_thresh");
    WITH(bx.shape[2] = 4, YL_ESHAPE, "boxes");
    WITH(bx.shape[0] = 1, YL_ESHAPE, "boxes: batch size 1");
    WITH(bx.dtype = YL_F16, YL_EDTYPE, "boxes: dtype FP16");
    WITH(bx.shape[1] = 0, YL_ESHAPE, "boxes: dim 1 is 0");
#undef WITH
    rc = yl_problem_init(&p, &x.cfg, x.out, 2, &x.boxes, NULL, 0, &err);
    expect_init("call", rc, &err, (expect){YL_EINVAL, "2 raw outputs"});
    rc = yl_problem_init(&p, &x.cfg, x.out, 3, NULL, NULL, 0, &err);
    expect_init("call", rc, &err, (expect){YL_EINVAL, "no ground truth"});
    rc = yl_problem_init(&p, &x.cfg, x.out, 3, &x.boxes, x.out, 3, &err);
    expect_init("call", rc, &err, (expect){YL_EINVAL, "both boxes and y_true"});
    yl_tensor yt[3];
    memcpy(yt, x.out, sizeof yt);
    yt[2].shape[1] = 5;
    rc = yl_problem_init(&p, &x.cfg, x.out, 3, NULL, yt, 3, &err);
    expect_init("call", rc, &err, (expect){YL_ESHAPE, "y_true_2"});
    free_batch(&x);
}
END_TEST

/* Value errors surface from yl_image / yl_compute, naming image and row or element. */
static void expect_value_error(batch *x, int code, const char *needle) {
    yl_problem p;
    yl_error err;
    ck_assert_int_eq(yl_problem_init(&p, &x->cfg, x->out, x->L, &x->boxes, NULL, 0, &err), YL_OK);
    yl_result r;
    for (int threads = 1; threads <= 2; threads++) {
        int rc = yl_compute(&p, threads, &x->g, &r, NULL, &err);
        ck_assert_msg(rc == code, "expected %s, got %s: %s", yl_err_name(code), yl_err_name(rc),
                      err.msg);
        ck_assert_msg(strstr(err.msg, needle) != NULL, "message \"%s\" does not name \"%s\"",
                      err.msg, needle);
    }
}

START_TEST(bad_values_are_refused_with_context) {
    batch x;
    make_batch(&x, 9, 3, 4, 1, 1, 4, 1, 1.0, 62);
    double *row = x.box_data + (1 * 4 + 2) * 5; /* image 1, row 2 */
    double keep[5];
    memcpy(keep, row, sizeof keep);
#define ROW(mutation, code, needle)              \
    do {                                         \
        memcpy(row, keep, sizeof keep);          \
        mutation;                                \
        expect_value_error(&x, code, needle);    \
    } while (0)
    ROW(row[4] = 4, YL_ECLASS, "boxes[1][2]: class id 4 is not an integer in [0, 4)");
    ROW(row[4] = -1, YL_ECLASS, "boxes[1][2]: class id -1");
    ROW(row[4] = 1.5, YL_ECLASS, "boxes[1][2]: class id 1.5");
    ROW(row[3] = row[1], YL_EBOX, "boxes[1][2]: height");
    ROW((row[0] = 500, row[2] = 520), YL_EBOX, "boxes[1][2]: centre (510, ");
    ROW((row[1] = -30, row[3] = -10), YL_EBOX, "boxes[1][2]: centre");
    ROW(row[1] = NAN, YL_ENONFINITE, "boxes[1][2]: y_min is NaN");
    ROW(row[2] = -INFINITY, YL_ENONFINITE, "boxes[1][2]: x_max is -Inf");
    memcpy(row, keep, sizeof keep);
    /* a NaN in a class logit of an anchor without truth still counts */
    x.out_data[1][x.out[1].shape[1] * x.out[1].shape[2] * 27 * 2 - 1] = NAN;
    expect_value_error(&x, YL_ENONFINITE, "output_1[1][1][1][26] is NaN");
    x.out_data[1][x.out[1].shape[1] * x.out[1].shape[2] * 27 * 2 - 1] = 0;
    x.out_data[0][3] = INFINITY;
    expect_value_error(&x, YL_ENONFINITE, "output_0[0][0][0][3] is +Inf");
#undef ROW
    free_batch(&x);
}
END_TEST

START_TEST(dense_truth_values_are_checked) {
    batch x;
    make_batch(&x, 6, 1, 1, 1, 1, 1, 1, 1.0, 63);
    float *yt[2];
    yl_tensor ytt[2];
    for (int l = 0; l < 2; l++) {
        yt[l] = calloc((size_t)layer_elems(&x, l), sizeof(float));
        ytt[l] = (yl_tensor){yt[l], YL_F32, 5, {1, 1 << l, 1 << l, 3, 6}};
    }
    yl_problem p;
    yl_error err;
    yl_result r;
    ck_assert_int_eq(yl_problem_init(&p, &x.cfg, x.out, 2, NULL, ytt, 2, &err), YL_OK);
    yt[1][(3 * 2 + 1) * 6 + 4] = 1; /* objectness, but zero width and height */
    ck_assert_int_eq(yl_compute(&p, 1, NULL, &r, NULL, &err), YL_EBOX);
    ck_assert_msg(strstr(err.msg, "y_true_1[0][1][0][1][4]") != NULL, "%s", err.msg);
    yt[1][(3 * 2 + 1) * 6 + 4] = 0;
    yt[0][2] = NAN;
    ck_assert_int_eq(yl_compute(&p, 1, NULL, &r, NULL, &err), YL_ENONFINITE);
    ck_assert_msg(strstr(err.msg, "y_true_0[0][0][0][0][2] is NaN") != NULL, "%s", err.msg);
    for (int l = 0; l < 2; l++)
        free(yt[l]);
    free_batch(&x);
}
END_TEST

START_TEST(error_table_names_every_code) {
    ck_assert_str_eq(yl_strerror(YL_ECLASS), "class id out of range");
    ck_assert_str_eq(yl_err_name(YL_ENONFINITE), "YL_ENONFINITE");
    ck_assert_str_eq(yl_strerror(12345), "unknown error");
    ck_assert_str_eq(yl_err_name(0), "YL_OK");
    for (int c = -1; c >= YL_ENOMEM; c--)
        ck_assert_str_ne(yl_err_name(c), "YL_UNKNOWN");
}
END_TEST

Suite *core_suite(void) {
    Suite *s = suite_create("core");
    TCase *grad = tcase_create("gradients");
    tcase_set_timeout(grad, 120);
    tcase_add_test(grad, gradient_matches_finite_differences_full);
    tcase_add_test(grad, gradient_matches_finite_differences_tiny);
    tcase_add_test(grad, gradient_matches_finite_differences_dense_soft);
    suite_add_tcase(s, grad);
    /* not Check's 4 s default: culling_matches_brute_force alone takes 2 s under TSan on an
     * idle machine, and make test runs the sanitizers on a loaded one */
    TCase *inv = tcase_create("invariants");
    tcase_set_timeout(inv, 120);
    tcase_add_test(inv, threads_and_order_give_identical_bits);
    tcase_add_test(inv, loss_only_equals_gradient_run);
    tcase_add_test(inv, kernel_exp_within_2_ulp);
    tcase_add_test(inv, kernel_gather_converts_every_half);
    tcase_add_test(inv, kernel_read_row_gathers_and_finds_first_nonfinite);
    tcase_add_test(inv, kernel_culling_matches_plain_formulas);
    tcase_add_test(inv, box_path_equals_dense_path);
    tcase_add_test(inv, padding_rows_anywhere_change_nothing);
    tcase_add_test(inv, culling_matches_brute_force);
    tcase_add_test(inv, shared_cell_overwrites_box_and_accumulates_classes);
    tcase_add_test(inv, tiny_drops_anchor0_and_doubles_anchor3);
    tcase_add_test(inv, no_truth_means_nothing_ignored);
    tcase_add_test(inv, dtype_conversions_round_to_nearest_even);
    suite_add_tcase(s, inv);
    TCase *errs = tcase_create("errors");
    tcase_set_timeout(errs, 60);
    tcase_add_test(errs, malformed_calls_are_refused_with_context);
    tcase_add_test(errs, bad_values_are_refused_with_context);
    tcase_add_test(errs, dense_truth_values_are_checked);
    tcase_add_test(errs, error_table_names_every_code);
    suite_add_tcase(s, errs);
    return s;
}
