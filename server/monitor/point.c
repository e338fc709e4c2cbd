/*
 * point.c: a recorded point as JSON and the names of its fields, one module for the /v1
 * API (api_runs.c), the points recorded and published (record.c) and the event streams.
 */
#include "history.h"

#include <jansson.h>
#include <math.h>

const char *const yls_stat_names[YL_NUM_STATS] = {"count",    "avg_iou",   "avg_class",
                                                  "avg_obj",  "avg_noobj", "recall50",
                                                  "recall75", "ignored"};
const char *const yls_term_names[4] = {"xy", "wh", "confidence", "class"};

/* JSON has no NaN or Inf: such a value is written as null. */
json_t *yls_json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* [[a,b,..],..]: rows x cols doubles, non-finite ones as null; how both history backends
 * store a point's per-layer terms and statistics. */
char *yls_matrix_json(const double *v, int rows, int cols)
{
    json_t *a = json_array();
    for (int i = 0; i < rows; i++) {
        json_t *row = json_array();
        for (int j = 0; j < cols; j++)
            json_array_append_new(row, yls_json_num(v[i * cols + j]));
        json_array_append_new(a, row);
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* The reverse: what is not a number there (null, a value missing, text that is not such a
 * matrix) reads as NaN, which the API writes as null again. */
void yls_matrix_parse(const char *text, double *v, int rows, int cols)
{
    json_t *a = text ? json_loads(text, 0, NULL) : NULL;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            json_t *x = json_array_get(json_array_get(a, (size_t)i), (size_t)j);
            v[i * cols + j] = json_is_number(x) ? json_number_value(x) : NAN;
        }
    json_decref(a);
}

/* Any bytes a JSON string holds; invalid UTF-8 cannot be stored at all (the infer parser
 * took the name from a JSON string). */
json_t *yls_run_json(const char *run)
{
    json_t *s = json_string(run);
    return s ? s : json_string("?");
}

json_t *yls_point_json(const yls_point *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "run", yls_run_json(p->run));
    json_object_set_new(o, "step", json_integer(p->step));
    json_object_set_new(o, "wall", yls_json_num(p->wall));
    json_object_set_new(o, "batch", json_integer(p->batch));
    json_object_set_new(o, "total", yls_json_num(p->total));
    for (int t = 0; t < 4; t++)
        json_object_set_new(o, yls_term_names[t], yls_json_num(p->terms[t]));
    json_t *layers = json_array();
    for (int l = 0; l < p->num_layers; l++) {
        json_t *lo = json_object();
        for (int t = 0; t < 4; t++)
            json_object_set_new(lo, yls_term_names[t], yls_json_num(p->layer_terms[l][t]));
        for (int k = 0; k < YL_NUM_STATS; k++)
            json_object_set_new(lo, yls_stat_names[k], yls_json_num(p->stats[l][k]));
        json_array_append_new(layers, lo);
    }
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "latency", yls_json_num(p->latency));
    return o;
}
