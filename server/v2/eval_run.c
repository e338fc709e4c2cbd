/*
 * eval_run.c: a parsed evaluation (eval_request.h) through the core (yleval.h) into its
 * output arrays, and those into an Open Inference Protocol response body.
 *
 * Truths and detections are grouped by image with a stable counting sort (request order
 * within an image: pycocotools' per-image order is its annotation order), each image goes
 * through yle_image, and yle_accumulate merges the records in pycocotools' order. Per-class
 * AP is yle_summarize's first stat over one category's slice of precision, so it is
 * pycocotools' own mean (np.mean of that slice's entries > -1).
 */
#include "eval.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

const yls_eval_output_row yls_eval_outputs[YLS_EVOUT_COUNT] = {
#define YLS__EV_OUT(e, name, datatype, conv) {name, datatype, conv},
    YLS_EVAL_OUTPUT_MAP(YLS__EV_OUT)
#undef YLS__EV_OUT
};

static int64_t num_k(const yle_params *p) { return p->convention == YLE_COCO && !p->use_cats ? 1 : p->n_cat; }

void yls_eval_shape(const yle_params *p, int out, int *ndim, int64_t shape[5])
{
    int64_t T = p->n_iou, R = p->n_rec, K = num_k(p), A = p->n_area, M = p->n_max_dets;
    bool coco = p->convention == YLE_COCO;
    switch (out) {
    case YLS_EVOUT_STATS: *ndim = 1, shape[0] = 12; break;
    case YLS_EVOUT_AP:
        if (coco)
            *ndim = 1, shape[0] = K;
        else
            *ndim = 2, shape[0] = T, shape[1] = K;
        break;
    case YLS_EVOUT_MAP: *ndim = 1, shape[0] = T; break;
    case YLS_EVOUT_PRECISION:
    case YLS_EVOUT_SCORES:
        *ndim = 5, shape[0] = T, shape[1] = R, shape[2] = K, shape[3] = A, shape[4] = M;
        break;
    case YLS_EVOUT_RECALL: *ndim = 4, shape[0] = T, shape[1] = K, shape[2] = A, shape[3] = M; break;
    default: /* counts */
        *ndim = 1, shape[0] = coco ? 5 : 2;
        break;
    }
}

int64_t yls_eval_elems(const yle_params *p, int out)
{
    int ndim;
    int64_t shape[5], n = 1;
    yls_eval_shape(p, out, &ndim, shape);
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* --------------------------------------------------------------------------------------- */
/* Evaluation                                                                                */

static int budget_or_503(yls_fail *f, const char *what)
{
    if (yls_budget_hit())
        return yls_budget_fail(f, what);
    return yls_fail_set(f, 503, "out of memory for %s; retry later", what);
}

/* Per-class AP: stats[0] of yle_summarize over category k's slice. */
static int class_ap(const yle_params *p, const double *prec, const double *rec, double *ap,
                    yls_fail *f)
{
    int64_t T = p->n_iou, R = p->n_rec, K = num_k(p), A = p->n_area, M = p->n_max_dets;
    yle_params one = *p;
    one.n_cat = 1;
    one.use_cats = 1;
    size_t np = (size_t)(T * R * A * M), nr = (size_t)(T * A * M);
    double *sp = yls_big_alloc((np + nr) * sizeof(double));
    double *work = NULL;
    if (sp)
        work = yls_big_alloc(((size_t)yle_summarize_work(&one) + 1) * sizeof(double));
    if (!sp || !work) {
        yls_big_free(sp);
        return budget_or_503(f, "the per-class AP");
    }
    double *sr = sp + np;
    int rc = 0;
    for (int64_t k = 0; k < K && !rc; k++) {
        one.cat_ids = p->cat_ids + (p->use_cats ? k : 0);
        for (int64_t t = 0; t < T; t++) {
            for (int64_t r = 0; r < R; r++)
                memcpy(sp + (t * R + r) * A * M, prec + ((t * R + r) * K + k) * A * M,
                       (size_t)(A * M) * sizeof(double));
            memcpy(sr + t * A * M, rec + (t * K + k) * A * M, (size_t)(A * M) * sizeof(double));
        }
        double st[12];
        yle_error err;
        if (yle_summarize(&one, sp, sr, work, st, &err))
            rc = yls_fail_set(f, 400, "%s", err.msg);
        ap[k] = st[0];
    }
    yls_big_free(sp);
    yls_big_free(work);
    return rc;
}

int yls_eval_run(yls_eval_result *res, const yle_params *p, const yls_eval_sets *s,
                 const bool want[YLS_EVOUT_COUNT], yls_fail *f)
{
    memset(res, 0, sizeof *res);
    res->p = *p;
    int64_t NI = s->n_img;
    int rc = -1;
    int64_t *gstart = calloc((size_t)NI + 2, sizeof *gstart);
    int64_t *dstart = calloc((size_t)NI + 2, sizeof *dstart);
    int64_t *fill = calloc((size_t)NI + 1, sizeof *fill);
    int64_t *gmap = malloc(((size_t)s->n_gt + 1) * sizeof *gmap);
    int64_t *dmap = malloc(((size_t)s->n_dt + 1) * sizeof *dmap);
    yle_image_result *imgs = calloc((size_t)NI + 1, sizeof *imgs);
    int64_t *goff = calloc((size_t)NI + 1, sizeof *goff), *roff = calloc((size_t)NI + 1, sizeof *roff);
    yle_truth *gts = yls_big_alloc(((size_t)s->n_gt + 1) * sizeof *gts);
    yle_det *dts = yls_big_alloc(((size_t)s->n_dt + 1) * sizeof *dts);
    yle_group *groups = NULL;
    yle_det_rec *recs = NULL;
    void *scratch = NULL, *ascratch = NULL;
    double *work = NULL;
    if (!gstart || !dstart || !fill || !gmap || !dmap || !imgs || !goff || !roff || !gts || !dts) {
        budget_or_503(f, "grouping the images");
        goto out;
    }
    /* stable counting sort by image: request order within each image */
    for (int64_t j = 0; j < s->n_gt; j++)
        gstart[yle_find_id(s->image_ids, NI, s->gt_image[j]) + 1]++;
    for (int64_t j = 0; j < s->n_dt; j++)
        dstart[yle_find_id(s->image_ids, NI, s->dt_image[j]) + 1]++;
    for (int64_t i = 0; i < NI; i++) {
        gstart[i + 1] += gstart[i];
        dstart[i + 1] += dstart[i];
    }
    for (int64_t j = 0; j < s->n_gt; j++) {
        int64_t i = yle_find_id(s->image_ids, NI, s->gt_image[j]);
        int64_t at = gstart[i] + fill[i]++;
        gts[at] = s->gt[j];
        gmap[at] = j;
    }
    memset(fill, 0, ((size_t)NI + 1) * sizeof *fill);
    for (int64_t j = 0; j < s->n_dt; j++) {
        int64_t i = yle_find_id(s->image_ids, NI, s->dt_image[j]);
        int64_t at = dstart[i] + fill[i]++;
        dts[at] = s->dt[j];
        dmap[at] = j;
    }
    size_t max_scratch = 0;
    for (int64_t i = 0; i < NI; i++) {
        yle_image_size sz;
        if (yle_image_bounds(p, gstart[i + 1] - gstart[i], dstart[i + 1] - dstart[i], &sz)) {
            yls_fail_set(f, 400, "image_ids[%" PRId64 "] (image %" PRId64 "): too many truths or "
                         "detections for one image", i, s->image_ids[i]);
            goto out;
        }
        goff[i + 1] = goff[i] + sz.groups;
        roff[i + 1] = roff[i] + sz.recs;
        if (sz.scratch > max_scratch)
            max_scratch = sz.scratch;
    }
    groups = yls_big_alloc(((size_t)goff[NI] + 1) * sizeof *groups);
    recs = yls_big_alloc(((size_t)roff[NI] + 1) * sizeof *recs);
    scratch = yls_big_alloc(max_scratch + 1);
    if (!groups || !recs || !scratch) {
        budget_or_503(f, "the per-image records");
        goto out;
    }
    for (int64_t i = 0; i < NI; i++) {
        yle_error err;
        int64_t ng = gstart[i + 1] - gstart[i], nd = dstart[i + 1] - dstart[i];
        if (yle_image(p, s->image_ids[i], gts + gstart[i], ng, dts + dstart[i], nd,
                      groups + goff[i], goff[i + 1] - goff[i], recs + roff[i],
                      roff[i + 1] - roff[i], scratch, max_scratch, &imgs[i], &err)) {
            /* the checks of eval_request.c come first; name the request's row anyway */
            const char *tensor = !strcmp(err.what, "det") ? "dt_bbox" : "gt_bbox";
            int64_t row = err.index < 0 ? -1
                          : !strcmp(err.what, "det") ? dmap[dstart[i] + err.index]
                                                     : gmap[gstart[i] + err.index];
            yls_fail_set(f, 400, "%s[%" PRId64 "] (image %" PRId64 "): %s", tensor, row,
                         s->image_ids[i], err.msg);
            goto out;
        }
    }
    yle_accum_size asz;
    yle_error err;
    if (yle_accumulate_bounds(p, imgs, NI, &asz)) {
        yls_fail_set(f, 400, "the evaluation's arrays would overflow");
        goto out;
    }
    bool coco = p->convention == YLE_COCO;
    ascratch = yls_big_alloc(asz.scratch + 1);
    for (int o = 0; o < YLS_EVOUT_COUNT; o++) {
        bool need = yls_eval_outputs[o].conv & (coco ? YLS_EVC_COCO : YLS_EVC_VOC);
        /* stats and ap come from precision and recall */
        if (need && (o == YLS_EVOUT_PRECISION || o == YLS_EVOUT_RECALL || o == YLS_EVOUT_AP ||
                     want[o])) {
            int64_t n = yls_eval_elems(p, o);
            res->v[o] = yls_big_alloc(((size_t)n + 1) * (o == YLS_EVOUT_COUNTS ? 8 : sizeof(double)));
            if (!res->v[o]) {
                budget_or_503(f, "the evaluation's arrays");
                goto out;
            }
        }
    }
    if (!ascratch) {
        budget_or_503(f, "the evaluation's arrays");
        goto out;
    }
    if (yle_accumulate(p, imgs, NI, ascratch, asz.scratch, res->v[YLS_EVOUT_PRECISION],
                       res->v[YLS_EVOUT_RECALL], res->v[YLS_EVOUT_SCORES],
                       coco ? NULL : res->v[YLS_EVOUT_AP], &err)) {
        yls_fail_set(f, 400, "%s", err.msg);
        goto out;
    }
    int ndim;
    int64_t shape[5];
    yls_eval_shape(p, YLS_EVOUT_PRECISION, &ndim, shape);
    int64_t *counts = (int64_t *)(void *)res->v[YLS_EVOUT_COUNTS];
    if (coco) {
        memcpy(counts, shape, 5 * sizeof *counts);
        res->has_stats = p->n_max_dets >= 3; /* summarize indexes maxDets[2] */
        if (res->has_stats) {
            work = yls_big_alloc(((size_t)yle_summarize_work(p) + 1) * sizeof(double));
            if (!work) {
                budget_or_503(f, "the summary");
                goto out;
            }
            if (yle_summarize(p, res->v[YLS_EVOUT_PRECISION], res->v[YLS_EVOUT_RECALL], work,
                              res->v[YLS_EVOUT_STATS], &err)) {
                yls_fail_set(f, 400, "%s", err.msg);
                goto out;
            }
            if (class_ap(p, res->v[YLS_EVOUT_PRECISION], res->v[YLS_EVOUT_RECALL],
                         res->v[YLS_EVOUT_AP], f))
                goto out;
        }
    } else {
        counts[0] = p->n_iou;
        counts[1] = p->n_cat;
        for (int t = 0; t < p->n_iou; t++)
            res->v[YLS_EVOUT_MAP][t] = yle_voc_map(p, res->v[YLS_EVOUT_AP], t);
    }
    rc = 0;
out:
    free(gstart);
    free(dstart);
    free(fill);
    free(gmap);
    free(dmap);
    free(imgs);
    free(goff);
    free(roff);
    yls_big_free(gts);
    yls_big_free(dts);
    yls_big_free(groups);
    yls_big_free(recs);
    yls_big_free(scratch);
    yls_big_free(ascratch);
    yls_big_free(work);
    if (rc)
        yls_eval_result_free(res);
    return rc;
}

void yls_eval_result_free(yls_eval_result *res)
{
    for (int o = 0; o < YLS_EVOUT_COUNT; o++) {
        yls_big_free(res->v[o]);
        res->v[o] = NULL;
    }
}

/* --------------------------------------------------------------------------------------- */
/* The response body                                                                         */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} text;

static void put(text *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(text *b, const char *s) { put(b, s, strlen(s)); }

static void put_json_string(text *b, const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    puts_(b, t ? t : "\"\"");
    free(t);
    json_decref(j);
}

uint64_t yls_eval_json_bound(const yls_eval_result *res, const yls_eval_want *w)
{
    uint64_t n = 4096;
    for (int i = 0; i < w->n; i++)
        if (!w->binary[i])
            n += (uint64_t)yls_eval_elems(&res->p, w->out[i]) * 26;
    return n;
}

int yls_eval_respond(yls_eval_body *out, const yls_eval_result *res, const yls_eval_want *w,
                     const char *model_name, const char *id, yls_fail *f)
{
    memset(out, 0, sizeof *out);
    text b = {0};
    puts_(&b, "{\"model_name\":");
    put_json_string(&b, model_name);
    puts_(&b, ",\"model_version\":\"1\"");
    if (id) {
        puts_(&b, ",\"id\":");
        put_json_string(&b, id);
    }
    puts_(&b, ",\"outputs\":[");
    for (int i = 0; i < w->n; i++) {
        int o = w->out[i];
        int ndim;
        int64_t shape[5];
        yls_eval_shape(&res->p, o, &ndim, shape);
        int64_t n = yls_eval_elems(&res->p, o);
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[", i ? "," : "",
                 yls_eval_outputs[o].name, yls_eval_outputs[o].datatype);
        puts_(&b, tmp);
        for (int d = 0; d < ndim; d++) {
            snprintf(tmp, sizeof tmp, "%s%" PRId64, d ? "," : "", shape[d]);
            puts_(&b, tmp);
        }
        puts_(&b, "]");
        size_t bytes = (size_t)n * 8;
        if (w->binary[i]) {
            snprintf(tmp, sizeof tmp, ",\"parameters\":{\"binary_data_size\":%zu}}", bytes);
            puts_(&b, tmp);
            out->iov[1 + out->nblobs] = (struct MHD_IoVec){res->v[o], bytes};
            out->nblobs++;
            out->total += bytes;
            continue;
        }
        puts_(&b, ",\"data\":[");
        for (int64_t k = 0; k < n && !b.oom; k++) {
            if (o == YLS_EVOUT_COUNTS) {
                snprintf(tmp, sizeof tmp, "%s%" PRId64, k ? "," : "",
                         ((const int64_t *)(const void *)res->v[o])[k]);
            } else {
                double v = res->v[o][k];
                /* VOC's AP of a class with detections and no truth is NaN (voc_eval's 0/0):
                 * JSON has no NaN, so it is null there (binary data keeps the NaN) */
                snprintf(tmp, sizeof tmp, isfinite(v) ? "%s%.17g" : "%snull", k ? "," : "", v);
            }
            puts_(&b, tmp);
        }
        puts_(&b, "]}");
    }
    puts_(&b, "]}");
    if (b.oom) {
        free(b.p);
        return yls_fail_set(f, 503, "out of memory for the response; retry later");
    }
    out->json = b.p;
    out->json_len = b.len;
    out->iov[0] = (struct MHD_IoVec){b.p, b.len};
    out->total += b.len;
    out->binary = out->nblobs > 0;
    return 0;
}
