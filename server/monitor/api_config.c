/*
 * api_config.c: what a training loop tells about a run besides its losses.
 *
 *   PUT  /v1/runs/{run}/config     a JSON object (hyper-parameters...), stored as given and
 *                                  replacing the previous one; {run, config}. Also in
 *                                  GET /v1/runs, as each run's "config".
 *   GET  /v1/runs/{run}/config     {run, config}; 404 when none
 *   POST /v1/runs/{run}/scalars    {"step": N, "name": number, ...}: scalars of that step
 *                                  (learning rate, validation mAP...), stamped with the wall
 *                                  time; {run, step, stored}
 *   GET  /v1/runs/{run}/scalars    {run, scalars: {name: {steps, walls, values}}}, by step
 *
 * The writes need the token (when the daemon has one), like DELETE; bodies are at most
 * YLS_API_BODY_MAX bytes of plain JSON.
 */
#include "api.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCALARS_MAX 256 /* names in one POST */

static void config_put_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc)
        yls_api_reply_failed(r, op);
    else
        yls_api_reply_object(r, json_pack("{s:o,s:o}", "run", yls_run_json(op->run),
                                          "config", json_loads(op->text, 0, NULL)));
    yls_hop_free(op);
}

static void config_get_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc)
        yls_api_reply_failed(r, op);
    else if (!op->text)
        yls_reply_error(r, 404, "run '%s' has no configuration (PUT one)", op->run);
    else
        yls_api_reply_object(r, json_pack("{s:o,s:o}", "run", yls_run_json(op->run), "config",
                                          json_loads(op->text, 0, NULL)));
    yls_hop_free(op);
}

static void scalars_put_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc)
        yls_api_reply_failed(r, op);
    else
        yls_api_reply_object(r, json_pack("{s:o,s:I,s:I}", "run", yls_run_json(op->run),
                                          "step", (json_int_t)op->in_scalars[0].step, "stored",
                                          (json_int_t)op->n_in));
    yls_hop_free(op);
}

static void scalars_get_done(yls_hop *op)
{
    yls_request *r = op->data;
    yls_pending_end(r);
    if (op->rc) {
        yls_api_reply_failed(r, op);
        goto cleanup;
    }
    json_t *all = json_object();
    for (size_t i = 0; i < op->n;) { /* by name, then step */
        json_t *steps = json_array(), *walls = json_array(), *values = json_array();
        size_t j = i;
        for (; j < op->n && !strcmp(op->scalars[j].name, op->scalars[i].name); j++) {
            json_array_append_new(steps, json_integer(op->scalars[j].step));
            json_array_append_new(walls, yls_json_num(op->scalars[j].wall));
            json_array_append_new(values, yls_json_num(op->scalars[j].value));
        }
        json_object_set_new(all, op->scalars[i].name,
                            json_pack("{s:o,s:o,s:o}", "steps", steps, "walls", walls, "values",
                                      values));
        i = j;
    }
    yls_api_reply_object(r, json_pack("{s:o,s:o}", "run", yls_run_json(op->run), "scalars",
                                      all));
cleanup:
    yls_hop_free(op);
}

/* The request body as a JSON object: the object, or NULL with the 400 answered. */
static json_t *body_object(yls_request *r, enum MHD_Result *ret, const char *what)
{
    json_error_t e;
    json_t *o = json_loadb((const char *)r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &e);
    if (!o) {
        *ret = yls_reply_error(r, 400, "%s: invalid JSON at line %d, column %d: %s", what, e.line,
                               e.column, e.text);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        *ret = yls_reply_error(r, 400, "%s must be a JSON object", what);
        return NULL;
    }
    return o;
}

enum MHD_Result yls_api_config_put(yls_request *r)
{
    enum MHD_Result ret;
    json_t *o = body_object(r, &ret, "the configuration");
    if (!o)
        return ret;
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    yls_hop *op = text ? yls_hop_new(YLS_HOP_PUT_CONFIG, config_put_done, r) : NULL;
    if (op)
        op->text = text;
    else
        free(text);
    return yls_api_submit(r, op);
}

static double now_wall(void)
{
    uv_timeval64_t tv;
    return uv_gettimeofday(&tv) == 0 ? (double)tv.tv_sec + (double)tv.tv_usec / 1e6 : 0.0;
}

enum MHD_Result yls_api_scalars_post(yls_request *r)
{
    enum MHD_Result ret;
    json_t *o = body_object(r, &ret, "the scalars");
    if (!o)
        return ret;
    json_t *step = json_object_get(o, "step");
    size_t n = json_object_size(o) - (step != NULL);
    if (!json_is_integer(step)) {
        json_decref(o);
        return yls_reply_error(r, 400, "the scalars need \"step\": an integer (the step they "
                                       "belong to)");
    }
    if (n == 0 || n > SCALARS_MAX) {
        json_decref(o);
        return yls_reply_error(r, 400, "give 1 to %d scalars besides \"step\" (got %zu)",
                               SCALARS_MAX, n);
    }
    yls_hop *op = yls_hop_new(YLS_HOP_PUT_SCALARS, scalars_put_done, r);
    if (op)
        op->in_scalars = calloc(n, sizeof *op->in_scalars);
    if (!op || !op->in_scalars) {
        json_decref(o);
        yls_hop_free(op);
        return yls_reply_error(r, 503, "out of memory; retry later");
    }
    double wall = now_wall();
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (v == step)
            continue;
        size_t len = strlen(key);
        if (len == 0 || len >= YLS_SCALAR_NAME_MAX || !json_is_number(v) ||
            !isfinite(json_number_value(v))) {
            ret = len == 0 || len >= YLS_SCALAR_NAME_MAX
                      ? yls_reply_error(r, 400, "scalar name '%.64s' must have 1 to %d bytes", key,
                                        YLS_SCALAR_NAME_MAX - 1)
                      : yls_reply_error(r, 400, "scalar '%s' must be a finite number", key);
            json_decref(o);
            yls_hop_free(op);
            return ret;
        }
        yls_scalar *sc = &op->in_scalars[op->n_in++];
        snprintf(sc->name, sizeof sc->name, "%s", key);
        sc->step = json_integer_value(step);
        sc->wall = wall;
        sc->value = json_number_value(v);
    }
    json_decref(o);
    return yls_api_submit(r, op);
}

enum MHD_Result yls_api_config_get(yls_request *r)
{
    return yls_api_submit(r, yls_hop_new(YLS_HOP_CONFIG, config_get_done, r));
}

enum MHD_Result yls_api_scalars_get(yls_request *r)
{
    return yls_api_submit(r, yls_hop_new(YLS_HOP_SCALARS, scalars_get_done, r));
}
