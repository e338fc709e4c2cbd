/*
 * endpoints.c: everything but infer, answered at once on the loop thread: health, server
 * metadata, model metadata, model readiness, model configuration, statistics.
 */
#include "server.h"
#include "eval.h"
#include "infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static enum MHD_Result reply_empty(yls_request *r, unsigned status)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    return yls_reply(r, status, resp, 0);
}

static enum MHD_Result reply_object(yls_request *r, json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return yls_reply_json(r, 200, text);
}

/* [d0, d1, ...] */
static json_t *dims(int n, const int64_t *d)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(d[i]));
    return a;
}

/* The model's inputs and outputs as {name, datatype, shape} (metadata) or
 * {name, data_type, dims} (configuration). */
static void add_typed(json_t *list, bool config, const char *name, const char *datatype, int n,
                      const int64_t *d, bool optional)
{
    char type[24];
    snprintf(type, sizeof type, "TYPE_%s", datatype);
    json_t *t = config ? json_pack("{s:s,s:s,s:o}", "name", name, "data_type", type, "dims",
                                   dims(n, d))
                       : json_pack("{s:s,s:s,s:o}", "name", name, "datatype", datatype, "shape",
                                   dims(n, d));
    if (config && optional)
        json_object_set_new(t, "optional", json_true());
    json_array_append_new(list, t);
}

static void add_tensor(json_t *list, bool config, const char *name, int n, const int64_t *d,
                       bool optional)
{
    add_typed(list, config, name, "FP32", n, d, optional);
}

/* An evaluation model's tensors (v2/eval_request.h and eval.h: one table row each). Ids are
 * INT64 (INT32 accepted), flags INT32 (INT64, BOOL, UINT8 accepted), values FP64; the
 * outputs' shapes depend on the parameters (-1). */
static void eval_tensors(const yls_model *m, bool config, json_t *inputs, json_t *outputs)
{
    static const int64_t one[1] = {-1}, box[2] = {-1, 4};
    static const bool optional[YLS_EVIN_COUNT] = {
#define YLS__EV_OPT(e, name, kind, count, req) !(req),
        YLS_EVAL_INPUT_MAP(YLS__EV_OPT)
#undef YLS__EV_OPT
    };
    for (int k = 0; k < YLS_EVIN_COUNT; k++) {
        const char *name = yls_eval_input_names[k];
        bool is_box = strstr(name, "_bbox") != NULL;
        const char *dt = is_box || !strcmp(name, "gt_area") || !strcmp(name, "dt_score") ? "FP64"
                         : strstr(name, "iscrowd") || strstr(name, "difficult")          ? "INT32"
                                                                                           : "INT64";
        add_typed(inputs, config, name, dt, is_box ? 2 : 1, is_box ? box : one, optional[k]);
    }
    int conv = m->eval == YLE_COCO ? YLS_EVC_COCO : YLS_EVC_VOC;
    static const int64_t any[5] = {-1, -1, -1, -1, -1};
    for (int o = 0; o < YLS_EVOUT_COUNT; o++) {
        if (!(yls_eval_outputs[o].conv & conv))
            continue;
        yle_params p;
        yle_params_default(&p, m->eval);
        int ndim;
        int64_t shape[5];
        yls_eval_shape(&p, o, &ndim, shape);
        add_typed(outputs, config, yls_eval_outputs[o].name, yls_eval_outputs[o].datatype, ndim,
                  o == YLS_EVOUT_STATS || o == YLS_EVOUT_COUNTS ? shape : any, false);
    }
}

static void model_tensors(const yls_model *m, bool config, json_t *inputs, json_t *outputs)
{
    int L = m->num_layers;
    char name[32];
    static const int64_t raw[4] = {-1, -1, -1, -1}, box[3] = {-1, -1, 5},
                         dense[5] = {-1, -1, -1, 3, -1};
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "output_%d", l);
        add_tensor(inputs, config, name, 4, raw, false);
    }
    if (m->cfg.definition == YL_DEF_DARKNET) {
        add_tensor(inputs, config, "truths", 3, box, false);
    } else {
        add_tensor(inputs, config, "boxes", 3, box, true);
        for (int l = 0; l < L; l++) {
            snprintf(name, sizeof name, "y_true_%d", l);
            add_tensor(inputs, config, name, 5, dense, true);
        }
    }
    /* the outputs' shapes with what a request decides unknown (-1) */
    static const int64_t unknown[4] = {-1, -1, -1, -1};
    yls_shape_ctx c = {.num_layers = L, .batch = -1, .grid_h = -1, .grid_w = -1, .c5 = -1,
                       .rows = -1, .dense_ndim = 4, .dense_shape = unknown};
    for (int k = 0; k < YLS_OUT_COUNT; k++) {
        const yls_output_def *d = &yls_outputs[k];
        if (!d->meta || !yls_output_of((yls_output_kind)k, m->cfg.definition))
            continue;
        for (int l = 0; l < (d->layered ? L : 1); l++) {
            int64_t shape[YL_MAX_DIMS];
            c.layer = l;
            int n = d->shape(&c, shape);
            add_tensor(outputs, config, yls_output_name((yls_output_kind)k, l, name, sizeof name),
                       n, shape, false);
        }
    }
}

static enum MHD_Result server_metadata(yls_request *r)
{
    json_t *ext = json_pack("[s,s,s,s]", "binary_tensor_data", "statistics",
                            "model_configuration", "yololoss_compact");
    if (r->srv->shm)
        json_array_append_new(ext, json_string("system_shared_memory"));
    return reply_object(r, json_pack("{s:s,s:s,s:o}", "name", YLS_NAME, "version", YLS_VERSION,
                                     "extensions", ext));
}

static enum MHD_Result model_metadata(yls_request *r, const yls_model *m)
{
    json_t *inputs = json_array(), *outputs = json_array();
    if (m->eval >= 0)
        eval_tensors(m, false, inputs, outputs);
    else
        model_tensors(m, false, inputs, outputs);
    if (m->eval >= 0)
        return reply_object(r, json_pack("{s:s,s:[s],s:s,s:o,s:o}", "name", m->name, "versions",
                                         "1", "platform", "yololoss", "inputs", inputs, "outputs",
                                         outputs));
    /* which loss definition the model computes, and the source it reproduces */
    return reply_object(r, json_pack("{s:s,s:[s],s:s,s:o,s:o,s:{s:s,s:s}}", "name", m->name,
                                     "versions", "1", "platform", "yololoss", "inputs", inputs,
                                     "outputs", outputs, "parameters", "definition",
                                     yl_definition_name(m->cfg.definition), "source",
                                     yl_definition_source(m->cfg.definition)));
}

static enum MHD_Result model_config(yls_request *r, const yls_model *m)
{
    json_t *inputs = json_array(), *outputs = json_array();
    if (m->eval >= 0) {
        eval_tensors(m, true, inputs, outputs);
        return reply_object(
            r, json_pack("{s:s,s:s,s:s,s:{s:{s:i}},s:i,s:o,s:o,s:{s:{s:s}}}", "name", m->name,
                         "platform", "yololoss", "backend", "yololoss", "version_policy",
                         "latest", "num_versions", 1, "max_batch_size", 0, "input", inputs,
                         "output", outputs, "parameters", "convention", "string_value",
                         yle_convention_name(m->eval)));
    }
    model_tensors(m, true, inputs, outputs);
    char anchors[512], thresh[32], layers[8];
    yls_anchors_format(&m->cfg, anchors, sizeof anchors);
    snprintf(thresh, sizeof thresh, "%.17g", m->cfg.ignore_thresh);
    snprintf(layers, sizeof layers, "%d", m->num_layers);
    return reply_object(
        r, json_pack("{s:s,s:s,s:s,s:{s:{s:i}},s:i,s:o,s:o,s:{s:{s:s},s:{s:s},s:{s:s}}}", "name",
                     m->name, "platform", "yololoss", "backend", "yololoss", "version_policy",
                     "latest", "num_versions", 1, "max_batch_size", 0, "input", inputs, "output",
                     outputs, "parameters", "anchors", "string_value", anchors, "ignore_thresh",
                     "string_value", thresh, "num_layers", "string_value", layers));
}

enum MHD_Result yls_ep_live(yls_request *r) { return reply_empty(r, 200); }

enum MHD_Result yls_ep_ready(yls_request *r)
{
    const yls_server *s = r->srv;
    if (s->ready && !s->draining)
        return reply_empty(r, 200);
    return yls_reply_error(r, 400, s->signalled ? "the server is shutting down"
                                                : "the server is starting");
}

enum MHD_Result yls_ep_server_meta(yls_request *r) { return server_metadata(r); }

enum MHD_Result yls_ep_model_meta(yls_request *r) { return model_metadata(r, r->route.model); }

enum MHD_Result yls_ep_model_ready(yls_request *r)
{
    const yls_server *s = r->srv;
    if (s->ready && !s->draining)
        return reply_empty(r, 200);
    return yls_reply_error(r, 400, "model '%s' is not ready: the server is %s",
                           r->route.model->name, s->signalled ? "shutting down" : "starting");
}

enum MHD_Result yls_ep_model_config(yls_request *r) { return model_config(r, r->route.model); }

enum MHD_Result yls_ep_model_stats(yls_request *r)
{
    return yls_reply_json(r, 200, yls_stats_json(&r->srv->models, r->route.model));
}

enum MHD_Result yls_ep_all_stats(yls_request *r)
{
    return yls_reply_json(r, 200, yls_stats_json(&r->srv->models, NULL));
}
