/*
 * test_eval_stream.c: evaluations streamed through infer requests with parameter eval and
 * read back from GET /v1/runs/{run}/eval (suite "eval-stream"; the two-replica form runs in
 * test_history_pg.c through yt_check_eval_stream).
 *
 * The expectation is computed here in one go: every image of every batch decoded
 * (yl_decode_image), evaluated (yle_image) and accumulated at once (yle_accumulate,
 * yle_summarize), as a one-shot evaluation of the whole set would. The daemon instead
 * stores per-image records batch by batch (in a shuffled order, one batch sent twice, split
 * between replicas) and merges what the history holds: the 12 stats and each class's AP
 * must be the same doubles.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yldecode.h"
#include "yleval.h"

enum { BATCHES = 4, B = 3, C = 3, T = 4, OFFSET = 100 };

static double logit(double p) { return log(p / (1 - p)); }

/* A batch whose heads hold detections: every truth predicted (roughly) by each anchor of
 * the cell its centre lies in, on every layer (so NMS has work), with its class; and t_o of
 * every fifth other anchor raised to +3 (false positives, when a class scores). */
static void make_batch(yt_case *c, int k)
{
    yt_spec s = {.num_anchors = 6, .B = B, .H0 = 2, .W0 = 3, .C = C, .out_dtype = YL_F32,
                 .truth = YT_BOXES, .truth_dtype = YL_F32, .T = T, .seed = 7100 + (uint64_t)k};
    yt_case_make(c, &s);
    yl_problem p;
    yl_error err;
    ck_assert_int_eq(yl_problem_init(&p, &c->cfg, c->out, c->L, &c->boxes, NULL, 0, &err), YL_OK);
    for (int l = 0; l < c->L; l++) {
        float *o = (float *)(void *)c->out[l].data;
        int64_t anchors = c->out[l].shape[0] * c->out[l].shape[1] * c->out[l].shape[2] * 3;
        for (int64_t a = 0; a < anchors; a += 5)
            o[a * (5 + C) + 4] = 3.0f;
        int64_t H = p.grid_h[l], W = p.grid_w[l];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float *bx = (const float *)c->boxes.data + ((int64_t)b * T + t) * 5;
                double w = (double)bx[2] - bx[0], h = (double)bx[3] - bx[1];
                if (!(w > 0))
                    continue;
                double cx = (bx[0] + w / 2) / p.input_w * (double)W,
                       cy = (bx[1] + h / 2) / p.input_h * (double)H;
                int64_t i = (int64_t)cx, j = (int64_t)cy;
                i = i >= W ? W - 1 : i, j = j >= H ? H - 1 : j;
                double fx = cx - (double)i, fy = cy - (double)j;
                fx = fx < 0.01 ? 0.01 : fx > 0.99 ? 0.99 : fx;
                fy = fy < 0.01 ? 0.01 : fy > 0.99 ? 0.99 : fy;
                for (int q = 0; q < 3; q++) {
                    int n = p.mask[l][q];
                    float *row = o + (((int64_t)b * H + j) * W + i) * 3 * (5 + C) + q * (5 + C);
                    row[0] = (float)logit(fx), row[1] = (float)logit(fy);
                    row[2] = (float)log(w / p.cfg.anchors[2 * n]);
                    row[3] = (float)log(h / p.cfg.anchors[2 * n + 1]);
                    row[4] = (float)(2.0 + q);
                    for (int cc = 0; cc < C; cc++)
                        row[5 + cc] = cc == (int)bx[4] ? 3.0f : -3.0f;
                }
            }
    }
}

/* The one-shot evaluation of all batches: stats[12] and per-class AP, AP50. */
static void expected(yt_case *cs, double stats[12], double ap[C][2])
{
    int64_t ids[BATCHES * B], cats[C] = {0, 1, 2};
    for (int k = 0; k < BATCHES; k++)
        for (int b = 0; b < B; b++)
            ids[k * B + b] = OFFSET * k + b;
    yle_params ep;
    ck_assert_int_eq(yle_params_default(&ep, YLE_COCO), YLE_OK);
    ep.img_ids = ids, ep.n_img = BATCHES * B, ep.cat_ids = cats, ep.n_cat = C;
    yle_image_result res[BATCHES * B];
    void *keep[BATCHES * B][2];
    yl_decode_config dc;
    yl_decode_config_default(&dc);
    for (int k = 0; k < BATCHES; k++) {
        yl_problem p;
        yl_error err;
        ck_assert_int_eq(yl_problem_init(&p, &cs[k].cfg, cs[k].out, cs[k].L, &cs[k].boxes, NULL,
                                         0, &err), YL_OK);
        int64_t maxd = yl_decode_max_detections(&p, &dc), n;
        void *scratch = malloc(yl_decode_scratch_size(&p));
        yl_detection *det = malloc((size_t)maxd * sizeof *det);
        yle_det *dt = malloc((size_t)maxd * sizeof *dt);
        for (int b = 0; b < B; b++) {
            ck_assert_int_eq(yl_decode_image(&p, b, &dc, scratch, det, &n, &err), YL_OK);
            for (int64_t d = 0; d < n; d++)
                dt[d] = (yle_det){{det[d].box[0], det[d].box[1], det[d].box[2] - det[d].box[0],
                                   det[d].box[3] - det[d].box[1]},
                                  det[d].score, det[d].cls};
            yle_truth gt[T];
            int64_t ng = 0;
            const float *bx = (const float *)cs[k].boxes.data + (int64_t)b * T * 5;
            for (int t = 0; t < T; t++) {
                double w = (double)bx[t * 5 + 2] - bx[t * 5], h = (double)bx[t * 5 + 3] - bx[t * 5 + 1];
                if (w > 0)
                    gt[ng++] = (yle_truth){{bx[t * 5], bx[t * 5 + 1], w, h}, w * h, t + 1,
                                           (int64_t)bx[t * 5 + 4], 0, 0};
            }
            yle_image_size sz;
            ck_assert_int_eq(yle_image_bounds(&ep, ng, n, &sz), YLE_OK);
            yle_group *g = malloc((size_t)sz.groups * sizeof *g + 1);
            yle_det_rec *r = malloc((size_t)sz.recs * sizeof *r + 1);
            void *es = malloc(sz.scratch + 1);
            yle_error ee;
            ck_assert_int_eq(yle_image(&ep, ids[k * B + b], gt, ng, dt, n, g, sz.groups, r,
                                       sz.recs, es, sz.scratch, &res[k * B + b], &ee), YLE_OK);
            free(es);
            keep[k * B + b][0] = g;
            keep[k * B + b][1] = r;
        }
        free(scratch);
        free(det);
        free(dt);
    }
    yle_accum_size asz;
    ck_assert_int_eq(yle_accumulate_bounds(&ep, res, BATCHES * B, &asz), YLE_OK);
    double *prec = malloc((size_t)asz.precision * sizeof *prec),
           *rec = malloc((size_t)asz.recall * sizeof *rec),
           *sc = malloc((size_t)asz.scores * sizeof *sc),
           *work = malloc((size_t)yle_summarize_work(&ep) * sizeof *work);
    void *as = malloc(asz.scratch + 1);
    yle_error ee;
    ck_assert_int_eq(yle_accumulate(&ep, res, BATCHES * B, as, asz.scratch, prec, rec, sc, NULL,
                                    &ee), YLE_OK);
    ck_assert_int_eq(yle_summarize(&ep, prec, rec, work, stats, &ee), YLE_OK);
    /* a class's AP: summarize over that class's slice (K = 1) */
    int64_t A = ep.n_area, M = ep.n_max_dets, R = ep.n_rec, TT = ep.n_iou;
    double *sp = malloc((size_t)(TT * R * A * M) * sizeof *sp), *sr = malloc((size_t)(TT * A * M) * sizeof *sr);
    for (int k = 0; k < C; k++) {
        for (int64_t t = 0; t < TT; t++) {
            for (int64_t r = 0; r < R; r++)
                for (int64_t am = 0; am < A * M; am++)
                    sp[(t * R + r) * A * M + am] = prec[((t * R + r) * C + k) * A * M + am];
            for (int64_t am = 0; am < A * M; am++)
                sr[t * A * M + am] = rec[(t * C + k) * A * M + am];
        }
        yle_params one = ep;
        one.cat_ids = &cats[k], one.n_cat = 1;
        double s1[12];
        ck_assert_int_eq(yle_summarize(&one, sp, sr, work, s1, &ee), YLE_OK);
        ap[k][0] = s1[0];
        ap[k][1] = s1[1];
    }
    free(sp), free(sr), free(prec), free(rec), free(sc), free(work), free(as);
    for (int i = 0; i < BATCHES * B; i++)
        free(keep[i][0]), free(keep[i][1]);
}

static long send_batch(const yt_daemon *d, yt_case *c, const char *run, int k, int step)
{
    json_t *params = json_pack("{s s s i s b s i}", "run", run, "step", step, "eval", 1,
                               "image_offset", OFFSET * k);
    yt_send s = {.outputs = {"loss", NULL}, .output_binary = -1, .params = params};
    yt_resp r;
    long st = yt_infer(d, c, &s, &r);
    if (st != 200)
        fprintf(stderr, "eval batch %d: %ld %s\n", k, st, r.body);
    yt_resp_free(&r);
    json_decref(params);
    return st;
}

void yt_check_eval_stream(const yt_daemon *const *d, int nd, const char *run)
{
    yt_case cs[BATCHES];
    for (int k = 0; k < BATCHES; k++)
        make_batch(&cs[k], k);
    double stats[12], ap[C][2];
    expected(cs, stats, ap);
    ck_assert_msg(stats[1] > 0, "the batches should have matched detections (AP50 %g)", stats[1]);
    const int order[BATCHES + 1] = {3, 0, 2, 0, 1}; /* shuffled, batch 0 sent twice */
    for (int i = 0; i < BATCHES + 1; i++)
        ck_assert_int_eq(send_batch(d[i % nd], &cs[order[i]], run, order[i], 7), 200);
    for (int j = 0; j < nd; j++) {
        char path[160];
        snprintf(path, sizeof path, "/v1/runs/%s/eval?step=7", run);
        json_t *o = yt_get_json(d[j], path);
        ck_assert_ptr_nonnull(o);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "images")), BATCHES * B);
        json_t *st = json_object_get(o, "stats"), *per = json_object_get(o, "per_class");
        ck_assert_int_eq(json_array_size(st), 12);
        for (int i = 0; i < 12; i++)
            ck_assert_msg(json_number_value(json_array_get(st, (size_t)i)) == stats[i],
                          "replica %d stats[%d]: %.17g, want %.17g", j, i,
                          json_number_value(json_array_get(st, (size_t)i)), stats[i]);
        ck_assert_int_eq(json_array_size(per), C);
        for (int k = 0; k < C; k++) {
            json_t *e = json_array_get(per, (size_t)k);
            ck_assert(json_number_value(json_object_get(e, "ap")) == ap[k][0]);
            ck_assert(json_number_value(json_object_get(e, "ap50")) == ap[k][1]);
        }
        json_decref(o);
    }
    /* the steps with records: batch 1 alone at step 9 too, then the list (every replica),
     * its after= and limit= pages */
    ck_assert_int_eq(send_batch(d[nd - 1], &cs[1], run, 1, 9), 200);
    for (int j = 0; j < nd; j++) {
        const char *q[3] = {"", "?limit=1", "?after=7"};
        const int64_t want[3][2][2] = {{{7, BATCHES * B}, {9, B}}, {{7, BATCHES * B}, {-1, 0}},
                                       {{9, B}, {-1, 0}}};
        for (int v = 0; v < 3; v++) {
            char path[160];
            snprintf(path, sizeof path, "/v1/runs/%s/evals%s", run, q[v]);
            json_t *o = yt_get_json(d[j], path);
            ck_assert_ptr_nonnull(o);
            json_t *steps = json_object_get(o, "steps");
            size_t n = want[v][1][0] < 0 ? 1 : 2;
            ck_assert_msg(json_array_size(steps) == n, "%s: %zu steps", path, json_array_size(steps));
            for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(steps, i);
                ck_assert_int_eq(json_integer_value(json_object_get(e, "step")), want[v][i][0]);
                ck_assert_int_eq(json_integer_value(json_object_get(e, "images")), want[v][i][1]);
                ck_assert_int_eq(json_integer_value(json_object_get(e, "classes")), C);
            }
            json_decref(o);
        }
    }
    for (int k = 0; k < BATCHES; k++)
        yt_case_free(&cs[k]);
}

START_TEST(eval_stream_equals_one_shot)
{
    const yt_daemon *d[1] = {&yt_main};
    yt_check_eval_stream(d, 1, "eval-stream");
}
END_TEST

START_TEST(eval_bad_requests_are_400)
{
    yt_case c;
    make_batch(&c, 0);
    const char *bad[][2] = {
        {"{\"run\": \"eval-bad\", \"eval\": true, \"image_offset\": 0}", "parameter step"},
        {"{\"run\": \"eval-bad\", \"step\": 1, \"eval\": true}", "image_offset"},
        {"{\"step\": 1, \"eval\": true, \"image_offset\": 0}", "parameter run"},
        {"{\"run\": \"eval-bad\", \"step\": 1, \"eval\": 3}", "eval must be a boolean"},
        {"{\"run\": \"eval-bad\", \"step\": 1, \"eval\": true, \"image_offset\": -1}",
         "image_offset"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *params = json_loads(bad[i][0], 0, NULL);
        yt_send s = {.outputs = {"loss", NULL}, .output_binary = -1, .params = params};
        yt_resp r;
        ck_assert_int_eq(yt_infer(&yt_main, &c, &s, &r), 400);
        ck_assert_msg(strstr(r.body, bad[i][1]) != NULL, "%s: %s", bad[i][0], r.body);
        yt_resp_free(&r);
        json_decref(params);
    }
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v1/runs/eval-bad/eval", &r), 400);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&yt_main, "/v1/runs/eval-bad/eval?step=1", &r), 404);
    yt_resp_free(&r);
    const char *bad_list[][2] = {{"?limit=0", "limit must be"}, {"?limit=1001", "limit must be"},
                                 {"?after=x", "after must be"}, {"?limit=5z", "limit must be"}};
    for (size_t i = 0; i < sizeof bad_list / sizeof bad_list[0]; i++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/runs/eval-bad/evals%s", bad_list[i][0]);
        ck_assert_int_eq(yt_get(&yt_main, path, &r), 400);
        ck_assert_msg(strstr(r.body, bad_list[i][1]) != NULL, "%s: %s", path, r.body);
        yt_resp_free(&r);
    }
    /* a run with no records: an empty list */
    json_t *none = yt_get_json(&yt_main, "/v1/runs/eval-bad/evals");
    ck_assert_ptr_nonnull(none);
    ck_assert_int_eq(json_array_size(json_object_get(none, "steps")), 0);
    json_decref(none);
    yt_case_free(&c);
}
END_TEST

Suite *yt_suite_eval_stream(void)
{
    Suite *s = suite_create("eval-stream");
    TCase *tc = tcase_create("eval-stream");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, eval_stream_equals_one_shot);
    tcase_add_test(tc, eval_bad_requests_are_400);
    suite_add_tcase(s, tc);
    return s;
}
