/*
 * api.h: what the /v1 endpoints (api_runs.c, api_images.c, api_config.c, api_eval.c) share: the
 * JSON helpers and the replies to a request that waited on the history thread.
 */
#ifndef YLS_API_H
#define YLS_API_H

#include "history.h"

#include <jansson.h>

/* 200 with o (taken over) as compact JSON. */
enum MHD_Result yls_api_reply_object(yls_request *r, json_t *o);
/* The backend failed (a database outage, say): 503 with Retry-After. */
enum MHD_Result yls_api_reply_failed(yls_request *r, const yls_hop *op);
/* A query answered on the pool: ends r's wait, then 200 with text (taken over; NULL: a 500)
 * when status is 200, else status with msg. */
enum MHD_Result yls_api_reply_pooled(yls_request *r, int status, char *text, const char *msg);
/* A query argument as an integer in [lo, hi]; absent: def. 0, or -1: not one. */
int yls_api_arg_int(yls_request *r, const char *name, int64_t lo, int64_t hi, int64_t def,
                    int64_t *out);
/* A page of steps: after= (a step; default -1: from the start) and limit= (1 to max; default
 * def). 0, or -1 after the 400 (in *ret) naming the bad one. */
int yls_api_page_args(yls_request *r, int64_t max, int64_t def, int64_t *after, int64_t *limit,
                      enum MHD_Result *ret);
/* 0, or -1 after the refusal (in *ret) of a daemon with no history (404) or draining (503). */
int yls_api_refused(yls_request *r, enum MHD_Result *ret);
/* Submit op (NULL: out of memory, 503) for r's run, r suspended until its done callback
 * (which ends the wait with yls_pending_end); refused as above (op freed, its data too when op->free_data is set). */
enum MHD_Result yls_api_submit(yls_request *r, yls_hop *op);

#endif /* YLS_API_H */
