/* libFuzzer target: the evaluator's COCO JSON reader (clients/c/coco_json.c) and the
 * evaluator (core/yleval.h) on whatever it accepted.
 *
 * Layout: a cfg byte (bits 0-1 convention coco / voc07 / voc; bit 2 use_cats 0; bit 3
 * maxDets 1,2,3; bit 4 two IoU thresholds), then the instances file's text, a NUL, the
 * results file's text. Every call must either be refused with a non-empty message, or
 * evaluate; then yle_image fails only with a documented code and a message naming "truth"
 * or "det", or every array comes out in range: precision, recall and scores -1 or in
 * [0, 1]; the 12 stats -1 or in [0, 1]; VOC's AP in [0, 1] or NaN (a class without truths).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coco_json.h"
#include "yleval.h"

#define CHECK(c, ...)                                                               \
    do {                                                                            \
        if (!(c)) {                                                                 \
            fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: %s: ", __FILE__, __LINE__, #c); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "\n");                                                  \
            abort();                                                                \
        }                                                                           \
    } while (0)

static int in_range(double v) { return v == -1.0 || (v >= 0.0 && v <= 1.0); }

static void evaluate(const ycj_set *set, int cfg) {
    int conv = (cfg & 3) % 3;
    yle_params p;
    CHECK(yle_params_default(&p, conv) == YLE_OK, "defaults");
    p.use_cats = !(cfg & 4);
    if (cfg & 8) {
        p.max_dets[0] = 1, p.max_dets[1] = 2, p.max_dets[2] = 3;
    }
    if (cfg & 16) {
        p.n_iou = 2;
        p.iou_thrs[0] = 0.3;
        p.iou_thrs[1] = 0.7;
    }
    p.img_ids = set->img_ids, p.n_img = set->n_img;
    p.cat_ids = set->cat_ids, p.n_cat = set->n_cat;
    p.known_cat_ids = set->cat_ids, p.n_known_cat = set->n_cat;
    yle_error err;
    CHECK(yle_params_check(&p, &err) == YLE_OK, "%s", err.msg);
    int64_t NI = set->n_img;
    yle_image_result *res = calloc((size_t)NI + 1, sizeof *res);
    void **bufs = calloc(2 * (size_t)NI + 2, sizeof *bufs);
    yle_truth *gt = malloc(((size_t)set->n_gt + 1) * sizeof *gt);
    yle_det *dt = malloc(((size_t)set->n_dt + 1) * sizeof *dt);
    int failed = 0;
    for (int64_t i = 0; i < NI && !failed; i++) {
        int64_t ng = 0, nd = 0;
        for (int64_t j = 0; j < set->n_gt; j++)
            if (set->gt_img[j] == set->img_ids[i])
                gt[ng++] = set->gt[j];
        for (int64_t j = 0; j < set->n_dt; j++)
            if (set->dt_img[j] == set->img_ids[i])
                dt[nd++] = set->dt[j];
        yle_image_size sz;
        if (yle_image_bounds(&p, ng, nd, &sz) != YLE_OK) {
            failed = 1;
            break;
        }
        yle_group *g = malloc((size_t)sz.groups * sizeof *g + 1);
        yle_det_rec *r = malloc((size_t)sz.recs * sizeof *r + 1);
        void *scratch = malloc(sz.scratch + 1);
        bufs[2 * i] = g, bufs[2 * i + 1] = r;
        int rc = yle_image(&p, set->img_ids[i], gt, ng, dt, nd, g, sz.groups, r, sz.recs,
                           scratch, sz.scratch, &res[i], &err);
        free(scratch);
        if (rc != YLE_OK) {
            CHECK(rc == YLE_ENONFINITE || rc == YLE_ESIZE || rc == YLE_ESCORE, "%d %s", rc, err.msg);
            CHECK(err.code == rc && err.msg[0] && (!strcmp(err.what, "truth") || !strcmp(err.what, "det")),
                  "%s", err.msg);
            CHECK(strncmp(err.msg, err.what, strlen(err.what)) == 0, "%s", err.msg);
            failed = 1;
        } else {
            CHECK(res[i].n_groups <= sz.groups && res[i].n_recs <= sz.recs, "bounds");
        }
    }
    if (!failed) {
        yle_accum_size asz;
        CHECK(yle_accumulate_bounds(&p, res, NI, &asz) == YLE_OK, "accumulate bounds");
        double *prec = malloc((size_t)asz.precision * 8 + 8), *rec = malloc((size_t)asz.recall * 8 + 8);
        double *sc = malloc((size_t)asz.scores * 8 + 8), *ap = malloc((size_t)asz.ap * 8 + 8);
        void *scratch = malloc(asz.scratch + 1);
        int rc = yle_accumulate(&p, res, NI, scratch, asz.scratch, prec, rec, sc, ap, &err);
        CHECK(rc == YLE_OK, "%s", err.msg);
        for (int64_t e = 0; e < asz.precision; e++)
            CHECK(in_range(prec[e]) && in_range(sc[e]), "precision[%lld] %g", (long long)e, prec[e]);
        for (int64_t e = 0; e < asz.recall; e++)
            CHECK(in_range(rec[e]), "recall[%lld] %g", (long long)e, rec[e]);
        for (int64_t e = 0; e < asz.ap; e++)
            CHECK(isnan(ap[e]) || (ap[e] >= 0 && ap[e] <= 1 + 1e-12), "ap[%lld] %g", (long long)e, ap[e]);
        if (conv == YLE_COCO) {
            double stats[12];
            double *work = malloc((size_t)yle_summarize_work(&p) * 8 + 8);
            CHECK(yle_summarize(&p, prec, rec, work, stats, &err) == YLE_OK, "%s", err.msg);
            for (int i = 0; i < 12; i++) {
                char line[160];
                CHECK(in_range(stats[i]), "stats[%d] %g", i, stats[i]);
                CHECK(yle_summary_line(&p, i, stats[i], line, sizeof line) > 0, "line");
            }
            free(work);
        }
        free(prec), free(rec), free(sc), free(ap), free(scratch);
    }
    for (int64_t i = 0; i < 2 * NI; i++)
        free(bufs[i]);
    free(bufs), free(res), free(gt), free(dt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    int cfg = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const char *nul = memchr(text, 0, len);
    size_t gl = nul ? (size_t)(nul - text) : len;
    const char *dtext = nul ? nul + 1 : "[]";
    size_t dl = nul ? len - gl - 1 : 2;
    ycj_set set;
    char msg[512];
    msg[0] = 0;
    if (ycj_load_gt(text, gl, &set, msg, sizeof msg) != 0) {
        CHECK(msg[0], "empty message");
    } else if (set.n_img > 64 || set.n_gt > 512) {
        /* large sets are the evaluator's speed, not its correctness: not evaluated here */
    } else if (ycj_load_dt(dtext, dl, &set, msg, sizeof msg) != 0) {
        CHECK(msg[0], "empty message");
    } else if (set.n_dt <= 1024) {
        evaluate(&set, cfg);
    }
    ycj_free(&set);
    return 0;
}
