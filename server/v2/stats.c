/*
 * stats.c: Triton's statistics extension. Per model: the count and total nanoseconds of
 * successful and failed requests, and of the time they waited for a pool thread (queue),
 * parsed their inputs (compute_input), ran their images (compute_infer) and built their
 * responses (compute_output); images (inference_count) and requests (execution_count).
 * Updated on the loop thread only, when a request completes.
 */
#include "server.h"

#include <jansson.h>

void yls_stats_add(yls_duration *d, uint64_t ns)
{
    d->count++;
    d->ns += ns;
}

static json_t *duration(const yls_duration *d)
{
    return json_pack("{s:I,s:I}", "count", (json_int_t)d->count, "ns", (json_int_t)d->ns);
}

static json_t *model_stats(const yls_model *m)
{
    const yls_model_stats *s = &m->stats;
    static const yls_duration zero;
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o},s:[]}", "name",
                     m->name, "version", "1", "last_inference", (json_int_t)s->last_inference_ms,
                     "inference_count", (json_int_t)s->inference_count, "execution_count",
                     (json_int_t)s->execution_count, "inference_stats", "success",
                     duration(&s->success), "fail", duration(&s->fail), "queue",
                     duration(&s->queue), "compute_input", duration(&s->compute_input),
                     "compute_infer", duration(&s->compute_infer), "compute_output",
                     duration(&s->compute_output), "cache_hit", duration(&zero), "cache_miss",
                     duration(&zero), "batch_stats");
}

char *yls_stats_json(const yls_models *models, const yls_model *only)
{
    json_t *list = json_array();
    for (size_t i = 0; i < models->n; i++)
        if (!only || only == &models->v[i])
            json_array_append_new(list, model_stats(&models->v[i]));
    json_t *o = json_pack("{s:o}", "model_stats", list);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}
