/*
 * api_eval.c: a run's streamed evaluation at one step over HTTP (docs/monitoring.md
 * "Evaluations").
 *
 *   GET /v1/runs/{run}/eval?step=N
 *       the COCO bbox evaluation of every image stored at (run, step) (infer requests with
 *       parameter eval, from any replica of a shared history): {run, step, convention,
 *       images, classes, stats: [12] (pycocotools' summarize order), lines: [12] (as it
 *       prints them), per_class: [{class, ap, ap50}]}; 404 when the step has no records.
 *
 * The records are read on the history thread; accumulating them (core/yleval.h: the
 * stored per-image records merged into pycocotools' order, so the answer is the same
 * whichever replica took which batch, in whatever order) runs on the libuv pool, never on
 * the loop thread.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    yls_work work; /* first: the query is the work item */
    yls_request *r;
    char run[YLS_RUN_MAX];
    int64_t step;
    yls_hop *op;
    unsigned status;
    char msg[256];
    char *text;
} eval_query;

static void fail(eval_query *q, unsigned status, const char *msg)
{
    q->status = status;
    snprintf(q->msg, sizeof q->msg, "%s", msg);
}

/* summarize()'s AP and AP50 of class k alone: the class's slice of precision through
 * yle_summarize, so the mean is pycocotools' (numpy's pairwise sum) too. */
static json_t *class_ap(const yle_params *ep, int64_t k, const double *prec, const double *rec,
                        double *slice_p, double *slice_r, double *work)
{
    yle_params one = *ep;
    one.cat_ids = &ep->cat_ids[k];
    one.n_cat = 1;
    int64_t T = ep->n_iou, R = ep->n_rec, K = ep->n_cat, A = ep->n_area, M = ep->n_max_dets;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t r = 0; r < R; r++)
            memcpy(&slice_p[(t * R + r) * A * M], &prec[(((t * R + r) * K + k) * A) * M],
                   (size_t)(A * M) * sizeof(double));
        memcpy(&slice_r[t * A * M], &rec[((t * K + k) * A) * M], (size_t)(A * M) * sizeof(double));
    }
    double stats[12];
    yle_error err;
    if (yle_summarize(&one, slice_p, slice_r, work, stats, &err) != YLE_OK)
        return NULL;
    return json_pack("{sI s o s o}", "class", (json_int_t)ep->cat_ids[k], "ap",
                     yls_json_num(stats[0]), "ap50", yls_json_num(stats[1]));
}

static void eval_work(yls_work *w)
{
    eval_query *q = (eval_query *)(void *)w;
    yls_hop *op = q->op;
    size_t n = op->n;
    if (n == 0)
        return fail(q, 404, "no evaluation records at this step of the run");
    int C = op->evals[0].num_classes;
    yle_image_result *imgs = calloc(n, sizeof *imgs);
    int64_t *ids = calloc(n, sizeof *ids), *cats = calloc((size_t)(C > 0 ? C : 1), sizeof *cats);
    double *prec = NULL, *rec = NULL, *scores = NULL, *sp = NULL, *sr = NULL, *work = NULL;
    void *scratch = NULL;
    yle_params ep;
    yle_accum_size sz;
    yle_error err;
    if (!imgs || !ids || !cats)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const yls_eval_row *row = &op->evals[i];
        if (row->num_classes != C ||
            yls_eval_blob_view(row->blob, row->len, row->image, &imgs[i]) != 0) {
            fail(q, 500, "the stored evaluation records of this step are inconsistent");
            goto done;
        }
        ids[i] = row->image; /* rows come by image: strictly increasing */
    }
    if (yls_eval_params(&ep, C, ids, (int64_t)n, cats) ||
        yle_accumulate_bounds(&ep, imgs, (int64_t)n, &sz) != YLE_OK) {
        fail(q, 500, "cannot size the accumulation");
        goto done;
    }
    int64_t AM = (int64_t)ep.n_area * ep.n_max_dets;
    prec = malloc((size_t)sz.precision * sizeof *prec + 1);
    rec = malloc((size_t)sz.recall * sizeof *rec + 1);
    scores = malloc((size_t)sz.scores * sizeof *scores + 1);
    scratch = malloc(sz.scratch + 1);
    sp = malloc((size_t)(ep.n_iou * ep.n_rec * AM) * sizeof *sp + 1);
    sr = malloc((size_t)(ep.n_iou * AM) * sizeof *sr + 1);
    work = malloc((size_t)yle_summarize_work(&ep) * sizeof *work + 1);
    if (!prec || !rec || !scores || !scratch || !sp || !sr || !work)
        goto oom;
    double stats[12];
    if (yle_accumulate(&ep, imgs, (int64_t)n, scratch, sz.scratch, prec, rec, scores, NULL,
                       &err) != YLE_OK ||
        yle_summarize(&ep, prec, rec, work, stats, &err) != YLE_OK) {
        fail(q, 500, err.msg);
        goto done;
    }
    json_t *st = json_array(), *lines = json_array(), *per = json_array();
    for (int i = 0; i < 12; i++) {
        char line[160];
        yle_summary_line(&ep, i, stats[i], line, sizeof line);
        json_array_append_new(st, json_real(stats[i]));
        json_array_append_new(lines, json_string(line));
    }
    for (int64_t k = 0; k < C; k++)
        json_array_append_new(per, class_ap(&ep, k, prec, rec, sp, sr, work));
    json_t *root = json_pack("{s o s I s s s I s i s o s o s o}", "run", yls_run_json(q->run),
                             "step", (json_int_t)q->step, "convention", "coco", "images",
                             (json_int_t)n, "classes", C, "stats", st, "lines", lines,
                             "per_class", per);
    q->text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    q->status = 200;
    goto done;
oom:
    fail(q, 503, "out of memory accumulating the evaluation; retry later");
done:
    free(imgs);
    free(ids);
    free(cats);
    free(prec);
    free(rec);
    free(scores);
    free(scratch);
    free(sp);
    free(sr);
    free(work);
}

static void eval_after(yls_work *w, int status)
{
    (void)status;
    eval_query *q = (eval_query *)(void *)w;
    yls_api_reply_pooled(q->r, q->status, q->text, q->msg);
    yls_hop_free(q->op);
    free(q);
}

static void evals_done(yls_hop *op)
{
    eval_query *q = op->data;
    if (op->rc) {
        yls_pending_end(q->r);
        yls_api_reply_failed(q->r, op);
        yls_hop_free(op);
        free(q);
        return;
    }
    q->op = op;
    yls_pool_queue(q->r->srv, &q->work, eval_work, eval_after);
}

enum MHD_Result yls_api_eval(yls_request *r)
{
    enum MHD_Result ret;
    if (yls_api_refused(r, &ret))
        return ret;
    eval_query *q = calloc(1, sizeof *q);
    if (!q)
        return yls_reply_error(r, 503, "out of memory; retry later");
    q->r = r;
    snprintf(q->run, sizeof q->run, "%s", r->route.run);
    if (yls_api_arg_int(r, "step", 0, INT64_MAX, -1, &q->step) || q->step < 0) {
        free(q);
        return yls_reply_error(r, 400, "step must be given, an integer >= 0 (the step whose "
                                       "evaluation records to accumulate)");
    }
    yls_hop *op = yls_hop_new(YLS_HOP_EVALS, evals_done, q);
    if (!op)
        free(q);
    else
        op->after = q->step;
    return yls_api_submit(r, op);
}

#define EVAL_STEPS_MAX 1000

static void eval_steps_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc)
        yls_api_reply_failed(r, op);
    else {
        json_t *a = json_array();
        for (size_t i = 0; i < op->n; i++) {
            const yls_eval_step *e = &op->eval_steps[i];
            json_array_append_new(a, json_pack("{sI sI si}", "step", (json_int_t)e->step,
                                               "images", (json_int_t)e->images, "classes",
                                               e->num_classes));
        }
        yls_api_reply_object(r, json_pack("{s o s o}", "run", yls_run_json(op->run), "steps", a));
    }
    yls_hop_free(op);
}

enum MHD_Result yls_api_eval_steps(yls_request *r)
{
    int64_t after, limit;
    enum MHD_Result ret;
    if (yls_api_page_args(r, EVAL_STEPS_MAX, EVAL_STEPS_MAX, &after, &limit, &ret))
        return ret;
    yls_hop *op = yls_hop_new(YLS_HOP_EVAL_STEPS, eval_steps_done, r);
    if (op) {
        op->after = after;
        op->limit = limit;
    }
    return yls_api_submit(r, op);
}
