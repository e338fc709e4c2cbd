/*
 * eval.c: one request to an evaluation model (coco-bbox, voc07, voc) as one work item on
 * the libuv pool: inflate, parse (eval_request.c), evaluate and build the body
 * (eval_run.c); the answer is sent from the after-work callback on the loop thread. The
 * connection stays suspended meanwhile; a client that leaves gets no answer (the work, one
 * item, runs to its end: the C evaluator takes ~100 ms for a COCO-sized set).
 */
#include "eval.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

typedef struct {
    yls_work work;
    yls_request *req;
    yls_server *srv;
    const yls_model *model;
    yls_body body;
    int64_t header_len;
    yls_encoding encoding;
    uint64_t inflate_limit, reserve;
    bool gone;
    yls_fail fail;
    yls_eval_result res;
    yls_eval_body out;
    uint64_t charged; /* the response's JSON text, in the budget */
} eval_job;

/* The request's "outputs" (NULL: every output of the convention). */
static int parse_outputs(yls_eval_want *w, int convention, bool has_stats,
                         const json_t *outputs, bool binary_default, yls_fail *f)
{
    int conv = convention == YLE_COCO ? YLS_EVC_COCO : YLS_EVC_VOC;
    memset(w, 0, sizeof *w);
    if (!outputs || json_is_null(outputs) || (json_is_array(outputs) && !json_array_size(outputs))) {
        for (int o = 0; o < YLS_EVOUT_COUNT; o++)
            if ((yls_eval_outputs[o].conv & conv) &&
                (has_stats || (o != YLS_EVOUT_STATS && o != YLS_EVOUT_AP) || conv == YLS_EVC_VOC)) {
                w->binary[w->n] = binary_default;
                w->out[w->n++] = o;
            }
        return 0;
    }
    if (!json_is_array(outputs))
        return yls_fail_set(f, 400, "\"outputs\" must be an array");
    size_t i;
    const json_t *x;
    json_array_foreach(outputs, i, x) {
        const char *name = json_string_value(json_object_get(x, "name"));
        int o = -1;
        for (int k = 0; name && k < YLS_EVOUT_COUNT; k++)
            if (!strcmp(name, yls_eval_outputs[k].name) && (yls_eval_outputs[k].conv & conv))
                o = k;
        if (o < 0)
            return yls_fail_set(f, 400, "outputs[%zu]: unknown output '%.64s' (%s)", i,
                                name ? name : "(no name)",
                                conv == YLS_EVC_COCO
                                    ? "coco-bbox: stats, ap, precision, recall, scores, counts"
                                    : "voc: ap, map, counts");
        if (!has_stats && conv == YLS_EVC_COCO && (o == YLS_EVOUT_STATS || o == YLS_EVOUT_AP))
            return yls_fail_set(f, 400, "outputs[%zu]: '%s' needs at least 3 maxDets (summarize() "
                                "reads maxDets[2])", i, name);
        for (int k = 0; k < w->n; k++)
            if (w->out[k] == o)
                return yls_fail_set(f, 400, "outputs[%zu]: '%s' is asked for twice", i, name);
        const json_t *params = json_object_get(x, "parameters");
        const json_t *bin = params ? json_object_get(params, "binary_data") : NULL;
        if (bin && !json_is_boolean(bin))
            return yls_fail_set(f, 400, "outputs[%zu]: binary_data must be a boolean", i);
        w->binary[w->n] = bin ? json_is_true(bin) : binary_default;
        w->out[w->n++] = o;
    }
    return 0;
}

/* Request parameters: pycocotools' Params by name, binary_data_output and Triton's
 * scheduling ones. *img_ids / *cat_ids: imgIds / catIds when given. */
static int parse_params(yle_params *p, const json_t *params, bool *binary, int64_t **img_ids,
                        int64_t *n_img, int64_t **cat_ids, int64_t *n_cat, yls_fail *f)
{
    if (!params || json_is_null(params))
        return 0;
    if (!json_is_object(params))
        return yls_fail_set(f, 400, "\"parameters\" must be an object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        int rc = yls_eval_param(p, key, v, img_ids, n_img, cat_ids, n_cat, f);
        if (rc < 0)
            return -1;
        if (rc > 0)
            continue;
        if (!strcmp(key, "binary_data_output")) {
            if (!json_is_boolean(v))
                return yls_fail_set(f, 400, "parameter binary_data_output must be a boolean");
            *binary = json_is_true(v);
        } else if (strcmp(key, "sequence_id") && strcmp(key, "sequence_start") &&
                   strcmp(key, "sequence_end") && strcmp(key, "priority") &&
                   strcmp(key, "timeout")) {
            return yls_fail_set(f, 400, "unknown request parameter '%.64s' (known: "
                                YLS_EVAL_PARAM_NAMES ", binary_data_output)", key);
        }
    }
    return 0;
}

/* The largest arrays (precision and scores) against the whole budget: a parameter set
 * whose arrays could never fit is the request's fault (400), not a busy server's (503). */
static int check_size(const yle_params *p, yls_fail *f)
{
    if (p->convention != YLE_COCO || !yls_budget_max())
        return 0;
    double bytes = 2.0 * (double)yls_eval_elems(p, YLS_EVOUT_PRECISION) * 8;
    if (bytes > (double)yls_budget_max())
        return yls_fail_set(f, 400, "category_ids/catIds: precision and scores [%d,%d,%" PRId64
                            ",%d,%d] would take %.0f bytes, over the memory budget (%" PRIu64
                            " bytes, --max-memory)", p->n_iou, p->n_rec,
                            p->use_cats ? p->n_cat : 1, p->n_area, p->n_max_dets, bytes,
                            yls_budget_max());
    return 0;
}

static void evaluate(eval_job *job, const uint8_t *body, size_t len, size_t json_len)
{
    yls_fail *f = &job->fail;
    int convention = job->model->eval;
    yls_budget_scope_begin();
    json_error_t jerr;
    json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &jerr);
    yls_eval_sets sets = {0};
    int64_t *img_ids = NULL, *cat_ids = NULL, n_img = 0, n_cat = 0;
    bool binary = false;
    const char *id = NULL;
    yle_params p;
    yle_params_default(&p, convention);
    if (!root) {
        yls_fail_set(f, 400, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                     jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        yls_fail_set(f, 400, "the request must be a JSON object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "id") && strcmp(key, "parameters") && strcmp(key, "inputs") &&
            strcmp(key, "outputs")) {
            yls_fail_set(f, 400, "unknown key '%.64s' in the request (id, parameters, inputs, "
                         "outputs)", key);
            goto out;
        }
    }
    const json_t *jid = json_object_get(root, "id");
    if (jid && !json_is_null(jid) && !json_is_string(jid)) {
        yls_fail_set(f, 400, "\"id\" must be a string");
        goto out;
    }
    id = json_string_value(jid);
    if (parse_params(&p, json_object_get(root, "parameters"), &binary, &img_ids, &n_img,
                     &cat_ids, &n_cat, f) ||
        yls_eval_sets_parse(&sets, convention, json_object_get(root, "inputs"), body, len,
                            json_len, job->header_len >= 0, f))
        goto out;
    p.img_ids = img_ids ? img_ids : sets.image_ids;
    p.n_img = img_ids ? n_img : sets.n_img;
    p.cat_ids = cat_ids ? cat_ids : sets.category_ids;
    p.n_cat = cat_ids ? n_cat : sets.n_cat;
    p.known_cat_ids = sets.category_ids;
    p.n_known_cat = sets.n_cat;
    yle_error err;
    if (yle_params_check(&p, &err)) {
        yls_fail_set(f, 400, "parameters: %s", err.msg);
        goto out;
    }
    if (check_size(&p, f))
        goto out;
    yls_eval_want w;
    bool has_stats = p.convention != YLE_COCO || p.n_max_dets >= 3;
    if (parse_outputs(&w, convention, has_stats, json_object_get(root, "outputs"), binary, f))
        goto out;
    bool want[YLS_EVOUT_COUNT] = {0};
    for (int i = 0; i < w.n; i++)
        want[w.out[i]] = true;
    if (yls_eval_run(&job->res, &p, &sets, want, f))
        goto out;
    uint64_t bound = yls_eval_json_bound(&job->res, &w);
    if (bound > job->srv->opt.max_json) {
        yls_fail_set(f, 400, "the JSON response would take up to %" PRIu64 " bytes, over the "
                     "limit of %" PRIu64 " (--max-json); ask for the arrays as binary data "
                     "(\"binary_data_output\": true)", bound, job->srv->opt.max_json);
        goto out;
    }
    if (!yls_budget_take(bound)) {
        yls_budget_fail(f, "the response");
        goto out;
    }
    job->charged = bound;
    /* the parameters' id arrays are read by yls_eval_run only: the result copies p */
    yls_eval_respond(&job->out, &job->res, &w, job->model->name, id, f);
out:
    yls_eval_sets_free(&sets);
    free(img_ids);
    free(cat_ids);
    json_decref(root);
    yls_budget_scope_end();
}

static void eval_work(yls_work *wk)
{
    eval_job *job = container_of(wk, eval_job, work);
    yls_fail *f = &job->fail;
    yls_budget_hit();
    yls_budget_credit_begin(job->reserve);
    job->reserve = 0;
    if (job->encoding != YLS_ENC_IDENTITY) {
        uint8_t *base, *data;
        size_t len;
        if (yls_inflate(job->encoding, job->body.data, job->body.len, (size_t)job->inflate_limit,
                        0, &base, &data, &len, f))
            goto done;
        yls_big_free(job->body.base);
        job->body = (yls_body){base, data, len, len, 0};
    }
    size_t json_len = job->header_len >= 0 ? (size_t)job->header_len : job->body.len;
    if (json_len > job->body.len) {
        yls_fail_set(f, 400, "Inference-Header-Content-Length %zu is larger than the body (%zu "
                     "bytes)", json_len, job->body.len);
        goto done;
    }
    evaluate(job, job->body.data, job->body.len, json_len);
done:
    yls_budget_give(yls_budget_credit_end());
    if (job->fail.status && yls_budget_hit())
        yls_budget_fail(f, "this evaluation (body, parsed JSON, records, arrays)");
    yls_big_free(job->body.base);
    memset(&job->body, 0, sizeof job->body);
}

static void eval_free(void *work)
{
    eval_job *job = work;
    if (!job)
        return;
    yls_big_free(job->body.base);
    yls_budget_give(job->reserve);
    free(job->out.json);
    yls_budget_give(job->charged);
    yls_eval_result_free(&job->res);
    free(job);
}

/* The response frees nothing: the job (the request's work) owns the arrays and the JSON,
 * and lives until the request is done, after the body is sent. */
static void eval_done(yls_work *wk, int status)
{
    (void)status;
    eval_job *job = container_of(wk, eval_job, work);
    if (job->gone) {
        yls_request_abandon(job->req);
        return;
    }
    if (job->fail.status) {
        yls_reply_fail(job->req, &job->fail);
        return;
    }
    yls_eval_body *b = &job->out;
    struct MHD_Response *resp =
        MHD_create_response_from_iovec(b->iov, (unsigned)(1 + b->nblobs), NULL, NULL);
    if (!resp) {
        yls_reply_error(job->req, 500, "cannot create the response");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            b->binary ? "application/octet-stream" : "application/json");
    if (b->binary) {
        char n[32];
        snprintf(n, sizeof n, "%zu", b->json_len);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
    }
    yls_reply(job->req, 200, resp, b->total);
}

static void on_gone(yls_request *r)
{
    eval_job *job = r->work;
    if (job)
        job->gone = true;
}

enum MHD_Result yls_eval_start(yls_request *r)
{
    eval_job *job = calloc(1, sizeof *job);
    if (!job)
        return yls_reply_error(r, 503, "out of memory; retry later");
    yls_server *s = r->srv;
    job->req = r;
    job->srv = s;
    job->model = r->route.model;
    job->body = r->body;
    memset(&r->body, 0, sizeof r->body);
    job->header_len = r->header_len;
    job->encoding = r->encoding;
    job->inflate_limit = r->header_len >= 0 ? s->opt.max_body : s->opt.max_json;
    job->reserve = r->reserve;
    r->reserve = 0;
    r->work = job;
    r->work_free = eval_free;
    r->on_gone = on_gone;
    yls_request_suspend(r);
    yls_pool_queue(s, &job->work, eval_work, eval_done);
    return MHD_YES;
}
