/* The evaluator (core/yleval.h) on hand-made cases: each checks one rule of pycocotools'
 * COCOeval or voc_eval.py with values worked out by hand, and fails when the rule is
 * changed. The randomised comparisons against the numpy ports are in tests/python. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "suites.h"
#include "yleval.h"

/* One image's evaluation and the accumulation, with buffers sized by the bounds calls. */
typedef struct {
    yle_params p;
    int n_img;
    yle_image_result img[8];
    yle_group *groups[8];
    yle_det_rec *recs[8];
    double *precision, *recall, *scores, *ap;
    double stats[12];
} ev;

static void ev_free(ev *e) {
    for (int i = 0; i < e->n_img; i++) {
        free(e->groups[i]);
        free(e->recs[i]);
    }
    free(e->precision);
    free(e->recall);
    free(e->scores);
    free(e->ap);
}

static int ev_image(ev *e, int64_t id, const yle_truth *gt, int64_t ng, const yle_det *dt,
                    int64_t nd, yle_error *err) {
    yle_image_size sz;
    ck_assert_int_eq(yle_image_bounds(&e->p, ng, nd, &sz), YLE_OK);
    int i = e->n_img++;
    e->groups[i] = calloc((size_t)sz.groups + 1, sizeof(yle_group));
    e->recs[i] = calloc((size_t)sz.recs + 1, sizeof(yle_det_rec));
    void *scratch = malloc(sz.scratch + 1);
    int rc = yle_image(&e->p, id, gt, ng, dt, nd, e->groups[i], sz.groups, e->recs[i], sz.recs,
                       scratch, sz.scratch, &e->img[i], err);
    free(scratch);
    return rc;
}

static void ev_accumulate(ev *e) {
    yle_accum_size sz;
    yle_error err;
    ck_assert_int_eq(yle_accumulate_bounds(&e->p, e->img, e->n_img, &sz), YLE_OK);
    e->precision = calloc((size_t)sz.precision + 1, sizeof(double));
    e->recall = calloc((size_t)sz.recall + 1, sizeof(double));
    e->scores = calloc((size_t)sz.scores + 1, sizeof(double));
    e->ap = calloc((size_t)sz.ap + 1, sizeof(double));
    void *scratch = malloc(sz.scratch + 1);
    int rc = yle_accumulate(&e->p, e->img, e->n_img, scratch, sz.scratch, e->precision,
                            e->recall, e->scores, e->ap, &err);
    free(scratch);
    ck_assert_msg(rc == YLE_OK, "%s", err.msg);
    if (e->p.convention == YLE_COCO && e->p.n_max_dets >= 3) {
        double *work = malloc((size_t)yle_summarize_work(&e->p) * sizeof(double) + 8);
        rc = yle_summarize(&e->p, e->precision, e->recall, work, e->stats, &err);
        free(work);
        ck_assert_msg(rc == YLE_OK, "%s", err.msg);
    }
}

static const int64_t one_img[] = {42}, two_cats[] = {1, 2};

static void coco_setup(ev *e) {
    memset(e, 0, sizeof *e);
    yle_params_default(&e->p, YLE_COCO);
    e->p.img_ids = one_img;
    e->p.n_img = 1;
    e->p.cat_ids = two_cats;
    e->p.n_cat = 2;
}

/* precision[t][r][k][a][m] of the default sizes (R 101, A 4, M 3) with K categories */
static double prec_at(const ev *e, int t, int r, int k, int a, int m) {
    int64_t K = e->p.use_cats ? e->p.n_cat : 1;
    return e->precision[(((t * 101 + r) * K + k) * 4 + a) * 3 + m];
}
static double rec_at(const ev *e, int t, int k, int a, int m) {
    int64_t K = e->p.use_cats ? e->p.n_cat : 1;
    return e->recall[((t * K + k) * 4 + a) * 3 + m];
}

/* The header's worked example: IoU 1920 / 2180 = 0.8807 matches at 0.50..0.85, not at
 * 0.90 and 0.95; precision is 1 / (1 + np.spacing(1)), not 1; category 2 has no truth. */
START_TEST(coco_worked_example) {
    ev e;
    coco_setup(&e);
    yle_truth gt[] = {{.box = {10, 10, 50, 40}, .area = 2000, .id = 1, .category_id = 1}};
    yle_det dt[] = {{.box = {12, 9, 50, 42}, .score = 0.9, .category_id = 1},
                    {.box = {0, 0, 5, 5}, .score = 0.3, .category_id = 2}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_OK);
    ev_accumulate(&e);
    double p1 = 1.0 / (1.0 + DBL_EPSILON);
    ck_assert(p1 != 1.0);
    for (int t = 0; t < 10; t++)
        for (int r = 0; r < 101; r++) {
            ck_assert(prec_at(&e, t, r, 0, 0, 2) == (t < 8 ? p1 : 0.0));
            ck_assert(prec_at(&e, t, r, 1, 0, 2) == -1.0);
        }
    ck_assert(rec_at(&e, 0, 0, 0, 0) == 1.0);
    ck_assert(rec_at(&e, 9, 0, 0, 0) == 0.0);
    ck_assert(rec_at(&e, 0, 1, 0, 0) == -1.0);
    /* area 2000 is "medium" (1024..9216): small and large have no truth, the detection of
     * category 1 (area 2100) is outside them and unmatched there: ignored */
    ck_assert(prec_at(&e, 0, 0, 0, 1, 2) == -1.0);
    ck_assert(prec_at(&e, 0, 0, 0, 2, 2) == p1);
    /* AP = mean of 8 * 101 values p1 and 2 * 101 zeros, as np.mean sums them */
    ck_assert(e.stats[0] > 0.79 && e.stats[0] < 0.81);
    ck_assert(e.stats[3] == -1.0);
    char line[160];
    yle_summary_line(&e.p, 0, e.stats[0], line, sizeof line);
    ck_assert_str_eq(line,
                     " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.800");
    yle_summary_line(&e.p, 6, e.stats[6], line, sizeof line);
    ck_assert_str_eq(line,
                     " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.800");
    ev_free(&e);
}
END_TEST

/* Bad input: an error naming the array and index; the first bad one is reported. */
START_TEST(coco_errors) {
    ev e;
    coco_setup(&e);
    yle_error err;
    yle_truth gt[] = {{.box = {0, 0, 5, 5}, .area = 25, .id = 1, .category_id = 1},
                      {.box = {0, 0, -3, 5}, .area = 25, .id = 2, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 5, 5}, .score = 0.5, .category_id = 1},
                    {.box = {0, 0, 5, 5}, .score = 1.5, .category_id = 1}};
    ck_assert_int_eq(ev_image(&e, 42, gt, 2, dt, 2, &err), YLE_ESIZE);
    ck_assert_str_eq(err.msg, "truth[1].box[2]: width -3 is negative");
    ck_assert_int_eq(err.index, 1);
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_ESCORE);
    ck_assert_str_eq(err.msg, "det[1].score: 1.5 is outside [0, 1]");
    dt[1].score = NAN;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_ESCORE);
    dt[1].score = 0.5;
    dt[0].box[1] = NAN;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_ENONFINITE);
    ck_assert_str_eq(err.msg, "det[0].box[1] (y) is NaN");
    dt[0].box[1] = 0;
    gt[0].area = -1;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_ESIZE);
    gt[0].area = 25;
    int64_t known[] = {1, 2, 3};
    e.p.known_cat_ids = known;
    e.p.n_known_cat = 3;
    dt[1].category_id = 7;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_ECATEGORY);
    ck_assert_str_eq(err.msg, "det[1].category_id: 7 is not a category of the dataset");
    ck_assert_str_eq(yle_err_name(YLE_ECATEGORY), "YLE_ECATEGORY");
    int64_t unsorted[] = {3, 1};
    e.p.cat_ids = unsorted;
    ck_assert_int_eq(yle_params_check(&e.p, &err), YLE_EPARAM);
    ck_assert_int_eq(err.index, 1);
    ev_free(&e);
}
END_TEST


/* One category, one image (id 42) unless said otherwise. */
static const int64_t one_cat[] = {1};
static void coco_one(ev *e) {
    coco_setup(e);
    e->p.cat_ids = one_cat;
    e->p.n_cat = 1;
}
static double prec1(const ev *e, int t, int r, int a, int m) {
    return e->precision[(((t * e->p.n_rec + r) * 1) * e->p.n_area + a) * e->p.n_max_dets + m];
}
static double rec1(const ev *e, int t, int a, int m) {
    return e->recall[(t * e->p.n_area + a) * e->p.n_max_dets + m];
}
#define P1 (1.0 / (1.0 + DBL_EPSILON))

/* Crowd IoU is the intersection over the detection's area (maskApi.c bbIou): both
 * detections inside the crowd region match it (a crowd truth matches many) and are
 * ignored; with the ordinary IoU (16/100) they would be false positives and precision 0.5. */
START_TEST(rule_crowd_iou) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1, .iscrowd = 1},
                      {.box = {50, 50, 10, 10}, .area = 100, .id = 2, .category_id = 1}};
    yle_det dt[] = {{.box = {2, 2, 4, 4}, .score = 0.9, .category_id = 1},
                    {.box = {3, 3, 4, 4}, .score = 0.8, .category_id = 1},
                    {.box = {50, 50, 10, 10}, .score = 0.5, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 2, dt, 3, &err), YLE_OK);
    ck_assert_int_eq(e.recs[0][0].gt, 0); /* matched the crowd */
    ck_assert_int_eq(e.recs[0][1].gt, 0);
    ck_assert(e.recs[0][0].tp == 0 && e.recs[0][0].fp == 0); /* ignored at every threshold */
    ev_accumulate(&e);
    ck_assert(prec1(&e, 0, 0, 0, 2) == P1);
    ck_assert(prec1(&e, 9, 100, 0, 2) == P1);
    ev_free(&e);
}
END_TEST

/* Area ranges include both bounds: a truth (and a detection) of area exactly 32^2 = 1024
 * belongs to "small" [0, 1024] and to "medium" [1024, 9216]. */
START_TEST(rule_area_bounds_inclusive) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 32, 32}, .area = 1024, .id = 1, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 32, 32}, .score = 0.9, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 1, &err), YLE_OK);
    ev_accumulate(&e);
    for (int a = 0; a < 3; a++)
        ck_assert_msg(prec1(&e, 0, 0, a, 2) == P1, "area range %d", a);
    ck_assert(prec1(&e, 0, 0, 3, 2) == -1.0); /* large: no truth */
    ck_assert(e.stats[3] == e.stats[4]);
    ev_free(&e);
}
END_TEST

/* The matching starts from min(t, 1 - 1e-10): at iouThrs = [1.0] an IoU of 1 - 2^-34 (above
 * 1 - 1e-10) still matches. Widths 2^20 and 2^20 - 2^-14 make that IoU exactly. */
START_TEST(rule_iou_start_below_one) {
    ev e;
    coco_one(&e);
    e.p.n_iou = 1;
    e.p.iou_thrs[0] = 1.0;
    double w = 1048576.0, wd = 1048576.0 - 0.00006103515625;
    yle_truth gt[] = {{.box = {0, 0, w, 1}, .area = w, .id = 1, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, wd, 1}, .score = 0.9, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 1, &err), YLE_OK);
    ck_assert_uint_eq(e.recs[0][0].tp, 1);
    ev_accumulate(&e);
    ck_assert(rec1(&e, 0, 0, 2) == 1.0);
    ev_free(&e);
}
END_TEST

/* Equal IoUs: the later truth wins (pycocotools' `if ious[d, g] < iou: continue`). */
START_TEST(rule_equal_iou_later_truth) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1},
                      {.box = {0, 0, 10, 10}, .area = 100, .id = 2, .category_id = 1},
                      {.box = {40, 0, 10, 10}, .area = 100, .id = 3, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 10, 10}, .score = 0.9, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 3, dt, 1, &err), YLE_OK);
    ck_assert_int_eq(e.recs[0][0].gt, 1);
    ev_free(&e);
}
END_TEST

/* Equal scores across images go in img_ids order, whatever order the images' records come
 * in: image 1's false positive before image 2's true positive, so precision is
 * 1 / (2 + eps) = 0.5 (and 1 / (1 + eps) the other way round). */
START_TEST(rule_tied_scores_image_order) {
    static const int64_t imgs[] = {1, 2};
    ev e;
    coco_one(&e);
    e.p.img_ids = imgs;
    e.p.n_img = 2;
    yle_truth g1[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1}};
    yle_truth g2[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 2, .category_id = 1}};
    yle_det d1[] = {{.box = {60, 60, 10, 10}, .score = 0.5, .category_id = 1}};
    yle_det d2[] = {{.box = {0, 0, 10, 10}, .score = 0.5, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 2, g2, 1, d2, 1, &err), YLE_OK); /* image 2 first */
    ck_assert_int_eq(ev_image(&e, 1, g1, 1, d1, 1, &err), YLE_OK);
    ev_accumulate(&e);
    ck_assert(prec1(&e, 0, 0, 0, 2) == 0.5);
    ck_assert(prec1(&e, 0, 50, 0, 2) == 0.5);
    ck_assert(prec1(&e, 0, 51, 0, 2) == 0.0);
    ck_assert(e.scores[(((0 * 101 + 0) * 1 + 0) * 4 + 0) * 3 + 2] == 0.5);
    ev_free(&e);
}
END_TEST

/* Equal scores within an image keep the input order (mergesort): a false positive given
 * first stays first. */
START_TEST(rule_tied_scores_input_order) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1}};
    yle_det dt[] = {{.box = {60, 60, 10, 10}, .score = 0.5, .category_id = 1},
                    {.box = {0, 0, 10, 10}, .score = 0.5, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 2, &err), YLE_OK);
    ck_assert_int_eq(e.recs[0][0].det, 0);
    ev_accumulate(&e);
    ck_assert(prec1(&e, 0, 0, 0, 2) == 0.5);
    ev_free(&e);
}
END_TEST

/* searchsorted(side='left'): with 2 truths and one found, rc = 0.5 reaches recThrs[50] =
 * 0.5 exactly, so precision is set there and 0 from recThrs[51] on. */
START_TEST(rule_searchsorted_left) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1},
                      {.box = {40, 0, 10, 10}, .area = 100, .id = 2, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 10, 10}, .score = 0.9, .category_id = 1}};
    yle_error err;
    ck_assert(e.p.rec_thrs[50] == 0.5);
    ck_assert_int_eq(ev_image(&e, 42, gt, 2, dt, 1, &err), YLE_OK);
    ev_accumulate(&e);
    ck_assert(prec1(&e, 0, 50, 0, 2) == P1);
    ck_assert(prec1(&e, 0, 51, 0, 2) == 0.0);
    ck_assert(rec1(&e, 0, 0, 2) == 0.5);
    ev_free(&e);
}
END_TEST

/* maxDets cuts each image's detections in score order: the true positive is third. */
START_TEST(rule_max_dets_cut) {
    ev e;
    coco_one(&e);
    e.p.max_dets[0] = 1;
    e.p.max_dets[1] = 2;
    e.p.max_dets[2] = 3;
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 1, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 10, 10}, .score = 0.7, .category_id = 1},
                    {.box = {60, 60, 10, 10}, .score = 0.9, .category_id = 1},
                    {.box = {70, 60, 10, 10}, .score = 0.8, .category_id = 1},
                    {.box = {0, 0, 10, 10}, .score = 0.1, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 4, &err), YLE_OK);
    ck_assert_int_eq(e.groups[0][0].n_det, 3); /* maxDets[-1] kept */
    ev_accumulate(&e);
    ck_assert(rec1(&e, 0, 0, 0) == 0.0);
    ck_assert(rec1(&e, 0, 0, 1) == 0.0);
    ck_assert(rec1(&e, 0, 0, 2) == 1.0);
    ck_assert(prec1(&e, 0, 0, 0, 2) == 1.0 / 3.0);
    ck_assert(prec1(&e, 0, 0, 0, 0) == 0.0); /* a truth, no true positive: 0, not -1 */
    ev_free(&e);
}
END_TEST

/* A truth of id 0 that is matched reads as unmatched (pycocotools stores the truth's id in
 * dtMatches and tests it against 0): the detection counts as a false positive. */
START_TEST(rule_truth_id_zero) {
    ev e;
    coco_one(&e);
    yle_truth gt[] = {{.box = {0, 0, 10, 10}, .area = 100, .id = 0, .category_id = 1}};
    yle_det dt[] = {{.box = {0, 0, 10, 10}, .score = 0.9, .category_id = 1}};
    yle_error err;
    ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 1, &err), YLE_OK);
    ck_assert_uint_eq(e.recs[0][0].tp, 0);
    ck_assert_uint_eq(e.recs[0][0].fp, 0x3ff);
    ev_free(&e);
}
END_TEST

static void voc_setup(ev *e, int convention) {
    memset(e, 0, sizeof *e);
    yle_params_default(&e->p, convention);
    e->p.img_ids = one_img;
    e->p.n_img = 1;
    e->p.cat_ids = one_cat;
    e->p.n_cat = 1;
}

/* voc_eval's overlap counts pixels (+1) and needs more than ovthresh. Against [0,0,9,9]:
 * [0,0,9,4] is 50/100 = 0.5 exactly, not above: a false positive (a true positive with
 * >=); [0,0,9,4.5] is 55/100, a true positive (without the +1: 40.5/81 = 0.5, false). */
START_TEST(rule_voc_plus_one_strict) {
    for (int c = YLE_VOC07; c <= YLE_VOC; c++)
        for (int v = 0; v < 2; v++) {
            ev e;
            voc_setup(&e, c);
            yle_truth gt[] = {{.box = {0, 0, 9, 9}, .id = 1, .category_id = 1}};
            yle_det dt[] = {{.box = {0, 0, 9, v ? 4.5 : 4}, .score = 0.9, .category_id = 1}};
            yle_error err;
            ck_assert_int_eq(ev_image(&e, 42, gt, 1, dt, 1, &err), YLE_OK);
            ck_assert_uint_eq(e.recs[0][0].fp, v ? 0 : 1);
            ck_assert_uint_eq(e.recs[0][0].tp, v ? 1 : 0);
            ev_accumulate(&e);
            double expect = 0.; /* 11-point: eleven sums of 1/11, not quite 1 */
            for (int i = 0; i < 11 && v; i++)
                expect = c == YLE_VOC07 ? expect + 1.0 / 11. : 1.0;
            ck_assert_msg(e.ap[0] == expect, "%.17g", e.ap[0]);
            ev_free(&e);
        }
}
END_TEST

/* No fallback: the second detection's best truth (A) is taken, so it is a false positive
 * although B overlaps it by 0.9. rec [0.5, 0.5], prec [1, 0.5]: all-point AP 0.5; 11-point
 * AP six sums of 1/11 (t = 0, 0.1, ..., 0.5). A difficult truth (C) matched is neither. */
START_TEST(rule_voc_no_fallback_difficult) {
    for (int c = YLE_VOC07; c <= YLE_VOC; c++) {
        ev e;
        voc_setup(&e, c);
        yle_truth gt[] = {{.box = {0, 0, 9, 9}, .id = 1, .category_id = 1},
                          {.box = {0, 0, 9, 8}, .id = 2, .category_id = 1},
                          {.box = {50, 50, 59, 59}, .id = 3, .category_id = 1, .difficult = 1}};
        yle_det dt[] = {{.box = {0, 0, 9, 9}, .score = 0.9, .category_id = 1},
                        {.box = {0, 0, 9, 9}, .score = 0.8, .category_id = 1},
                        {.box = {50, 50, 59, 59}, .score = 0.95, .category_id = 1}};
        yle_error err;
        ck_assert_int_eq(ev_image(&e, 42, gt, 3, dt, 3, &err), YLE_OK);
        ck_assert_int_eq(e.groups[0][0].n_gt, 2); /* npos leaves the difficult one out */
        ck_assert(e.recs[0][0].tp == 0 && e.recs[0][0].fp == 0); /* 0.95 on the difficult */
        ck_assert_uint_eq(e.recs[0][2].fp, 1);
        ev_accumulate(&e);
        double expect = 0.5;
        if (c == YLE_VOC07) {
            expect = 0.;
            for (int i = 0; i < 6; i++)
                expect = expect + 1.0 / 11.;
        }
        ck_assert_msg(e.ap[0] == expect, "%s: %.17g", yle_convention_name(c), e.ap[0]);
        ev_free(&e);
    }
}
END_TEST

Suite *eval_suite(void) {
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("coco");
    tcase_add_test(tc, coco_worked_example);
    tcase_add_test(tc, coco_errors);
    tcase_add_test(tc, rule_crowd_iou);
    tcase_add_test(tc, rule_area_bounds_inclusive);
    tcase_add_test(tc, rule_iou_start_below_one);
    tcase_add_test(tc, rule_equal_iou_later_truth);
    tcase_add_test(tc, rule_tied_scores_image_order);
    tcase_add_test(tc, rule_tied_scores_input_order);
    tcase_add_test(tc, rule_searchsorted_left);
    tcase_add_test(tc, rule_max_dets_cut);
    tcase_add_test(tc, rule_truth_id_zero);
    tcase_add_test(tc, rule_voc_plus_one_strict);
    tcase_add_test(tc, rule_voc_no_fallback_difficult);
    suite_add_tcase(s, tc);
    return s;
}
