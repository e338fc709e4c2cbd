/*
 * eval.h: the one-shot evaluation models (coco-bbox, voc07, voc), shared by eval.c (the
 * request's life on the pool) and eval_run.c (the core's evaluation and the response body).
 */
#ifndef YLS_EVAL_H
#define YLS_EVAL_H

#include "eval_request.h"

/* Which conventions an output belongs to. */
enum { YLS_EVC_COCO = 1, YLS_EVC_VOC = 2 };

/* The outputs: one row each (enum, name, datatype, conventions), in the order of a response
 * without "outputs". Shapes: yls_eval_shape. */
#define YLS_EVAL_OUTPUT_MAP(X)                                                       \
    X(STATS, "stats", "FP64", YLS_EVC_COCO)                  /* [12] summarize() */  \
    X(AP, "ap", "FP64", YLS_EVC_COCO | YLS_EVC_VOC)          /* coco [K], voc [T,K] */ \
    X(MAP, "map", "FP64", YLS_EVC_VOC)                       /* [T] */               \
    X(PRECISION, "precision", "FP64", YLS_EVC_COCO)          /* [T,R,K,A,M] */       \
    X(RECALL, "recall", "FP64", YLS_EVC_COCO)                /* [T,K,A,M] */         \
    X(SCORES, "scores", "FP64", YLS_EVC_COCO)                /* [T,R,K,A,M] */       \
    X(COUNTS, "counts", "INT64", YLS_EVC_COCO | YLS_EVC_VOC) /* [T,R,K,A,M] / [T,K] */

typedef enum {
#define YLS__EV_OUT_ENUM(e, name, datatype, conv) YLS_EVOUT_##e,
    YLS_EVAL_OUTPUT_MAP(YLS__EV_OUT_ENUM)
#undef YLS__EV_OUT_ENUM
    YLS_EVOUT_COUNT
} yls_eval_output_id;

typedef struct {
    const char *name, *datatype;
    int conv;
} yls_eval_output_row;
extern const yls_eval_output_row yls_eval_outputs[YLS_EVOUT_COUNT];

/* Output out's shape and element count under p. */
void yls_eval_shape(const yle_params *p, int out, int *ndim, int64_t shape[5]);
int64_t yls_eval_elems(const yle_params *p, int out);

/* The arrays of one evaluation (yls_big_alloc'd; counts is int64). */
typedef struct {
    yle_params p;
    double *v[YLS_EVOUT_COUNT];
    bool has_stats; /* "coco" with 3 maxDets or more (summarize needs maxDets[2]) */
} yls_eval_result;

/* Evaluate s under p (p's ids set). want: outputs asked for. 0, or -1 with f set. */
int yls_eval_run(yls_eval_result *res, const yle_params *p, const yls_eval_sets *s,
                 const bool want[YLS_EVOUT_COUNT], yls_fail *f);
void yls_eval_result_free(yls_eval_result *res);

/* The outputs to answer, in order, and which go as binary data. */
typedef struct {
    int out[YLS_EVOUT_COUNT];
    bool binary[YLS_EVOUT_COUNT];
    int n;
} yls_eval_want;

/* A response body: iov[0] the JSON, then the binary outputs' arrays (borrowed from the
 * result, which must outlive the body). */
typedef struct {
    struct MHD_IoVec iov[1 + YLS_EVOUT_COUNT];
    int nblobs;
    uint64_t total;
    size_t json_len;
    bool binary;
    char *json;
} yls_eval_body;

/* Upper bound of the JSON text of the response. */
uint64_t yls_eval_json_bound(const yls_eval_result *res, const yls_eval_want *w);
int yls_eval_respond(yls_eval_body *out, const yls_eval_result *res, const yls_eval_want *w,
                     const char *model_name, const char *id, yls_fail *f);

#endif /* YLS_EVAL_H */
