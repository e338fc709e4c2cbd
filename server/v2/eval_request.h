/*
 * eval_request.h: an evaluation's truths, detections and parameters from the wire.
 *
 * One form for every request that carries detections to score (the one-shot evaluation
 * models coco-bbox / voc07 / voc, and any other endpoint that takes the same tensors):
 * column tensors named by the table below, boxes always x, y, width, height (COCO's bbox;
 * the VOC conventions turn them into xmin, ymin, xmax, ymax as yololoss-eval does), and
 * pycocotools' Params by pycocotools' names. Pure functions (no libuv, no libmicrohttpd);
 * every array is allocated with yls_big_alloc, so it counts in the memory budget.
 */
#ifndef YLS_EVAL_REQUEST_H
#define YLS_EVAL_REQUEST_H

#include "server.h"
#include "yleval.h"

#include <jansson.h>

/* Element kinds of the input tensors. */
enum { YLS_EV_ID, YLS_EV_BOX, YLS_EV_REAL, YLS_EV_FLAG };
/* Which count a tensor's first dimension is. */
enum { YLS_EV_NGT, YLS_EV_NDT, YLS_EV_NIMG, YLS_EV_NCAT };

/* The input tensors: one row each (enum, wire name, kind, count, required). */
#define YLS_EVAL_INPUT_MAP(X)                                                        \
    X(GT_IMAGE_ID, "gt_image_id", YLS_EV_ID, YLS_EV_NGT, true)                       \
    X(GT_CATEGORY_ID, "gt_category_id", YLS_EV_ID, YLS_EV_NGT, true)                 \
    X(GT_BBOX, "gt_bbox", YLS_EV_BOX, YLS_EV_NGT, true)                              \
    X(GT_AREA, "gt_area", YLS_EV_REAL, YLS_EV_NGT, false)                            \
    X(GT_ISCROWD, "gt_iscrowd", YLS_EV_FLAG, YLS_EV_NGT, false)                      \
    X(GT_DIFFICULT, "gt_difficult", YLS_EV_FLAG, YLS_EV_NGT, false)                  \
    X(GT_ID, "gt_id", YLS_EV_ID, YLS_EV_NGT, false)                                  \
    X(DT_IMAGE_ID, "dt_image_id", YLS_EV_ID, YLS_EV_NDT, true)                       \
    X(DT_CATEGORY_ID, "dt_category_id", YLS_EV_ID, YLS_EV_NDT, true)                 \
    X(DT_BBOX, "dt_bbox", YLS_EV_BOX, YLS_EV_NDT, true)                              \
    X(DT_SCORE, "dt_score", YLS_EV_REAL, YLS_EV_NDT, true)                           \
    X(IMAGE_IDS, "image_ids", YLS_EV_ID, YLS_EV_NIMG, true)                          \
    X(CATEGORY_IDS, "category_ids", YLS_EV_ID, YLS_EV_NCAT, true)

typedef enum {
#define YLS__EV_IN(e, name, kind, count, req) YLS_EVIN_##e,
    YLS_EVAL_INPUT_MAP(YLS__EV_IN)
#undef YLS__EV_IN
    YLS_EVIN_COUNT
} yls_eval_input_id;

extern const char *const yls_eval_input_names[YLS_EVIN_COUNT];

/* A dataset to score: truths and detections in request order, as the core takes them, with
 * the image each belongs to; the dataset's image and category ids (strictly increasing). */
typedef struct {
    int64_t n_gt, n_dt, n_img, n_cat;
    yle_truth *gt;
    int64_t *gt_image;
    yle_det *dt;
    int64_t *dt_image;
    int64_t *image_ids, *category_ids;
} yls_eval_sets;

/* The "inputs" array of a request (body: the whole body, json_len bytes of JSON first, then
 * the blobs in input order; has_header: the request had Inference-Header-Content-Length)
 * to sets, checked: every value finite, no negative width, height or area, scores in
 * [0, 1], ids strictly increasing, every truth's and detection's image in image_ids and
 * category in category_ids. 0, or -1 with f set (400 naming tensor and index; 503 for
 * memory). yls_eval_sets_free either way. */
int yls_eval_sets_parse(yls_eval_sets *s, int convention, const json_t *inputs,
                        const uint8_t *body, size_t len, size_t json_len, bool has_header,
                        yls_fail *f);
void yls_eval_sets_free(yls_eval_sets *s);

/* The parameters pycocotools' Params names (iouThrs, recThrs, maxDets, areaRng, areaRngLbl,
 * useCats, imgIds, catIds), each a JSON value or a string holding its JSON text (Open
 * Inference Protocol parameters are scalars). key is one request parameter; 1 when it is
 * one of them (p updated), 0 when not, -1 with f set when its value is bad. imgIds/catIds
 * are sorted and made unique (np.unique) into *img_ids / *cat_ids (malloc'd, replaced). */
int yls_eval_param(yle_params *p, const char *key, const json_t *v, int64_t **img_ids,
                   int64_t *n_img, int64_t **cat_ids, int64_t *n_cat, yls_fail *f);
/* The names yls_eval_param takes, for messages: "iouThrs, recThrs, ..." */
#define YLS_EVAL_PARAM_NAMES "iouThrs, recThrs, maxDets, areaRng, areaRngLbl, useCats, imgIds, catIds"

#endif /* YLS_EVAL_REQUEST_H */
