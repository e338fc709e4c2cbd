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

Suite *eval_suite(void) {
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("coco");
    tcase_add_test(tc, coco_worked_example);
    tcase_add_test(tc, coco_errors);
    suite_add_tcase(s, tc);
    return s;
}
