/* eval_records.c: one image of a loss batch decoded (keras's yolo_eval, core/yldecode.h) and
 * evaluated against the boxes given to the loss (COCO records, core/yleval.h), as one
 * self-contained blob the history stores per (run, step, image). A pure function of the
 * problem and the image: any pool thread, any order. */
#include <stdio.h>
#include <string.h>

#include "server.h"
#include "yldecode.h"
#include "yleval.h"

/* The blob: this header, then n_groups yle_group, then n_recs yle_det_rec (host byte order:
 * replicas sharing a history run on one architecture). */
typedef struct {
    int64_t n_groups, n_recs;
} blob_header;

static double box_value(const yl_tensor *t, int64_t i)
{
    return t->dtype == YL_F64 ? ((const double *)t->data)[i] : (double)((const float *)t->data)[i];
}

int yls_eval_params(yle_params *ep, int num_classes, const int64_t *img_ids, int64_t n_img,
                    int64_t *cat_ids)
{
    if (yle_params_default(ep, YLE_COCO) != YLE_OK)
        return -1;
    for (int c = 0; c < num_classes; c++)
        cat_ids[c] = c;
    ep->cat_ids = cat_ids;
    ep->n_cat = num_classes;
    ep->img_ids = img_ids;
    ep->n_img = n_img;
    return 0;
}

int yls_eval_image(const yl_problem *p, int64_t b, const yl_decode_config *dc, int64_t image_id,
                   void **blob, size_t *blob_len, yl_error *err)
{
    *blob = NULL;
    *blob_len = 0;
    const int C = p->num_classes;
    const int64_t T = p->boxes.shape[1];
    int64_t max_det = yl_decode_max_detections(p, dc);
    size_t dscratch = yl_decode_scratch_size(p);
    /* one block: decode scratch, detections, truths, yle detections, category ids */
    size_t bytes = dscratch + (size_t)max_det * (sizeof(yl_detection) + sizeof(yle_det)) +
                   (size_t)T * sizeof(yle_truth) + (size_t)C * sizeof(int64_t) + 64;
    uint8_t *work = yls_big_alloc(bytes);
    if (!work)
        return -2;
    yl_detection *det = (yl_detection *)(work + dscratch);
    yle_det *dt = (yle_det *)(det + max_det);
    yle_truth *gt = (yle_truth *)(dt + max_det);
    int64_t *cats = (int64_t *)(gt + T);
    int64_t n_det = 0, n_gt = 0;
    int rc = yl_decode_image(p, b, dc, work, det, &n_det, err);
    if (rc != YL_OK) {
        yls_big_free(work);
        return -1;
    }
    for (int64_t d = 0; d < n_det; d++) {
        const double *x = det[d].box;
        dt[d] = (yle_det){{x[0], x[1], x[2] - x[0], x[3] - x[1]}, det[d].score, det[d].cls};
    }
    for (int64_t t = 0; t < T; t++) {
        int64_t o = (b * T + t) * 5;
        double x0 = box_value(&p->boxes, o), y0 = box_value(&p->boxes, o + 1);
        double w = box_value(&p->boxes, o + 2) - x0, h = box_value(&p->boxes, o + 3) - y0;
        if (!(w > 0))
            continue; /* a padding row, as the loss reads it */
        gt[n_gt] = (yle_truth){{x0, y0, w, h}, w * h, t + 1, (int64_t)box_value(&p->boxes, o + 4),
                               0, 0};
        n_gt++;
    }
    yle_params ep;
    yle_error ee;
    yle_image_size sz;
    yls_eval_params(&ep, C, &image_id, 1, cats);
    rc = yle_image_bounds(&ep, n_gt, n_det, &sz);
    size_t out_bytes = sizeof(blob_header) + (size_t)sz.groups * sizeof(yle_group) +
                       (size_t)sz.recs * sizeof(yle_det_rec);
    uint8_t *out = rc == YLE_OK ? yls_big_alloc(out_bytes) : NULL;
    void *escratch = out ? yls_big_alloc(sz.scratch + 1) : NULL;
    if (rc == YLE_OK && !escratch) {
        yls_big_free(out);
        yls_big_free(work);
        return -2;
    }
    yle_image_result res;
    if (rc == YLE_OK) {
        yle_group *g = (yle_group *)(out + sizeof(blob_header));
        yle_det_rec *r = (yle_det_rec *)(g + sz.groups);
        rc = yle_image(&ep, image_id, gt, n_gt, dt, n_det, g, sz.groups, r, sz.recs, escratch,
                       sz.scratch, &res, &ee);
    } else {
        ee.index = -1;
        snprintf(ee.msg, sizeof ee.msg, "%s", yle_strerror(rc));
    }
    yls_big_free(escratch);
    yls_big_free(work);
    if (rc != YLE_OK) {
        yls_big_free(out);
        err->code = YL_EINVAL;
        err->image = b;
        err->index = ee.index;
        snprintf(err->tensor, sizeof err->tensor, "eval");
        snprintf(err->msg, sizeof err->msg, "eval of image %lld: %.200s", (long long)b, ee.msg);
        return -1;
    }
    /* the records, packed: groups then recs, right after the header */
    blob_header h = {res.n_groups, res.n_recs};
    memcpy(out, &h, sizeof h);
    uint8_t *recs_to = out + sizeof h + (size_t)res.n_groups * sizeof(yle_group);
    memmove(recs_to, res.recs, (size_t)res.n_recs * sizeof(yle_det_rec));
    *blob = out;
    *blob_len = (size_t)(recs_to - out) + (size_t)res.n_recs * sizeof(yle_det_rec);
    return 0;
}

int yls_eval_blob_view(const void *blob, size_t len, int64_t image_id, yle_image_result *out)
{
    blob_header h;
    if (len < sizeof h)
        return -1;
    memcpy(&h, blob, sizeof h);
    if (h.n_groups < 0 || h.n_recs < 0 ||
        (uint64_t)h.n_groups > (len - sizeof h) / sizeof(yle_group) ||
        sizeof h + (size_t)h.n_groups * sizeof(yle_group) + (size_t)h.n_recs * sizeof(yle_det_rec) !=
            len)
        return -1;
    const uint8_t *g = (const uint8_t *)blob + sizeof h;
    out->image_id = image_id;
    out->groups = (const yle_group *)g;
    out->n_groups = h.n_groups;
    out->recs = (const yle_det_rec *)(g + (size_t)h.n_groups * sizeof(yle_group));
    out->n_recs = h.n_recs;
    for (int64_t i = 0; i < h.n_groups; i++) {
        yle_group gr;
        memcpy(&gr, g + (size_t)i * sizeof gr, sizeof gr);
        if (gr.first < 0 || gr.n_det < 0 || gr.first + gr.n_det > h.n_recs)
            return -1;
    }
    return 0;
}
