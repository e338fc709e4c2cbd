/*
 * compact.c: the compact exact tensors (ylc_compact.h): which rows to send, gathering
 * them, and the gradient scattered back.
 *
 * The cell of a box is computed as keras-yolo3's preprocess_true_boxes (and the core's
 * truth.c) computes it: the row in float32, centre floor((min + max) / 2) in float32,
 * normalised by the input size into float32, times the grid size in double, floored. The
 * cell of the plain float64 formula is taken too when it differs, so that the rows sent
 * are a superset of keras's assignment whichever rounding the daemon uses. All 3 anchors
 * of the cell are sent in every layer (which anchor wins is the daemon's business).
 */
#include "ylc_compact.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static size_t elem_size(int dtype)
{
    return dtype == YLC_F64 ? 8 : dtype == YLC_F32 ? 4 : (dtype == YLC_F16 || dtype == YLC_BF16) ? 2 : 0;
}

/* B, H, W and 5+C of a 4-D [B,H,W,3*(5+C)] or 5-D [B,H,W,3,5+C] tensor; false if neither. */
static bool head_shape(const ylc_tensor *t, int64_t *B, int64_t *H, int64_t *W, int64_t *row)
{
    if (!t->data || elem_size(t->dtype) == 0)
        return false;
    if (t->ndim == 4 && t->shape[3] % 3 == 0)
        *row = t->shape[3] / 3;
    else if (t->ndim == 5 && t->shape[3] == 3)
        *row = t->shape[4];
    else
        return false;
    *B = t->shape[0];
    *H = t->shape[1];
    *W = t->shape[2];
    return *B > 0 && *H > 0 && *W > 0 && *row >= 5;
}

static double load(const void *data, int dtype, int64_t i)
{
    switch (dtype) {
    case YLC_F32: return ((const float *)data)[i];
    case YLC_F64: return ((const double *)data)[i];
    default: return 0; /* boxes are FP32 or FP64, checked by the caller */
    }
}

/* Nonzero objectness of a y_true element, read from its bits: -0 is zero, NaN is not
 * (the daemon refuses it; sending the row keeps the answer the dense one's). */
static bool nonzero(const void *data, int dtype, int64_t i)
{
    switch (dtype) {
    case YLC_F32: return ((const float *)data)[i] != 0.0f || isnan(((const float *)data)[i]);
    case YLC_F64: return ((const double *)data)[i] != 0.0 || isnan(((const double *)data)[i]);
    default: return (((const uint16_t *)data)[i] & 0x7fff) != 0;
    }
}

static void mark_cell(uint8_t *mark, int64_t b, int64_t H, int64_t W, int64_t i, int64_t j)
{
    if (i < 0 || i >= W || j < 0 || j >= H)
        return; /* the daemon refuses the box */
    int64_t a = ((b * H + j) * W + i) * 3;
    mark[a] = mark[a + 1] = mark[a + 2] = 1;
}

static void mark_boxes(const ylc_compact_plan *p, const ylc_tensor *boxes, uint8_t *const *mark)
{
    int64_t T = boxes->shape[1];
    double in_w = 32.0 * (double)p->W[0], in_h = 32.0 * (double)p->H[0];
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t base = (b * T + t) * 5;
            float x0 = (float)load(boxes->data, boxes->dtype, base);
            float y0 = (float)load(boxes->data, boxes->dtype, base + 1);
            float x1 = (float)load(boxes->data, boxes->dtype, base + 2);
            float y1 = (float)load(boxes->data, boxes->dtype, base + 3);
            if (!(x1 - x0 > 0)) /* padding (keras's valid_mask tests the width only) */
                continue;
            float cx = floorf((x0 + x1) / 2.0f), cy = floorf((y0 + y1) / 2.0f);
            if (!(isfinite(cx) && isfinite(cy)))
                continue; /* refused by the daemon */
            for (int l = 0; l < p->L; l++) {
                double W = (double)p->W[l], H = (double)p->H[l];
                int64_t i = (int64_t)floor((double)(float)((double)cx / in_w) * W);
                int64_t j = (int64_t)floor((double)(float)((double)cy / in_h) * H);
                mark_cell(mark[l], b, p->H[l], p->W[l], i, j);
                int64_t i2 = (int64_t)floor((double)cx / in_w * W);
                int64_t j2 = (int64_t)floor((double)cy / in_h * H);
                if (i2 != i || j2 != j)
                    mark_cell(mark[l], b, p->H[l], p->W[l], i2, j2);
            }
        }
}

int ylc_compact_plan_make(ylc_compact_plan *p, const ylc_tensor *outputs, int L,
                          const ylc_tensor *boxes, const ylc_tensor *y_true, int n_y_true)
{
    memset(p, 0, sizeof *p);
    if (L < 1 || L > YLC_MAX_LAYERS)
        return 1;
    p->L = L;
    for (int l = 0; l < L; l++) {
        int64_t B, row;
        if (!head_shape(&outputs[l], &B, &p->H[l], &p->W[l], &row) || (l && B != p->B) ||
            (l && row != p->row_len[0]))
            return 1;
        p->B = B;
        p->row_len[l] = row;
        p->dtype[l] = outputs[l].dtype;
        p->anchors[l] = B * p->H[l] * p->W[l] * 3;
        p->src[l] = outputs[l].data;
    }
    if (boxes) {
        if (boxes->ndim != 3 || boxes->shape[0] != p->B || boxes->shape[2] != 5 ||
            (boxes->dtype != YLC_F32 && boxes->dtype != YLC_F64) ||
            (!boxes->data && boxes->shape[1] > 0))
            return 1;
    } else {
        if (!y_true || n_y_true != L)
            return 1;
        for (int l = 0; l < L; l++) {
            int64_t B, H, W, row;
            if (!head_shape(&y_true[l], &B, &H, &W, &row) || B != p->B || H != p->H[l] ||
                W != p->W[l])
                return 1;
        }
    }

    uint8_t *mark[YLC_MAX_LAYERS] = {0};
    int rc = -1;
    for (int l = 0; l < L; l++)
        if (!(mark[l] = calloc((size_t)p->anchors[l], 1)))
            goto out;
    if (boxes) {
        mark_boxes(p, boxes, mark);
    } else {
        for (int l = 0; l < L; l++) {
            int64_t row = y_true[l].ndim == 4 ? y_true[l].shape[3] / 3 : y_true[l].shape[4];
            for (int64_t a = 0; a < p->anchors[l]; a++)
                mark[l][a] = nonzero(y_true[l].data, y_true[l].dtype, a * row + 4);
        }
    }
    for (int l = 0; l < L; l++) {
        int64_t n = 0;
        for (int64_t a = 0; a < p->anchors[l]; a++)
            n += mark[l][a];
        p->index[l] = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
        if (!p->index[l])
            goto out;
        p->n_rows[l] = 0;
        for (int64_t a = 0; a < p->anchors[l]; a++)
            if (mark[l][a])
                p->index[l][p->n_rows[l]++] = a;
    }
    rc = 0;
out:
    for (int l = 0; l < L; l++)
        free(mark[l]);
    if (rc)
        ylc_compact_plan_free(p);
    return rc;
}

void ylc_compact_plan_free(ylc_compact_plan *p)
{
    for (int l = 0; l < YLC_MAX_LAYERS; l++)
        free(p->index[l]);
    memset(p, 0, sizeof *p);
}

size_t ylc_compact_box_bytes(const ylc_compact_plan *p, int l)
{
    return (size_t)p->anchors[l] * 5 * elem_size(p->dtype[l]);
}

size_t ylc_compact_rows_bytes(const ylc_compact_plan *p, int l)
{
    return (size_t)(p->n_rows[l] * p->row_len[l]) * elem_size(p->dtype[l]);
}

size_t ylc_compact_index_bytes(const ylc_compact_plan *p, int l)
{
    return (size_t)p->n_rows[l] * sizeof(int64_t);
}

void ylc_compact_fill(const ylc_compact_plan *p, int l, void *box, void *rows)
{
    size_t es = elem_size(p->dtype[l]);
    size_t rb = (size_t)p->row_len[l] * es, bb = 5 * es;
    const char *src = p->src[l];
    char *dst = box;
    for (int64_t a = 0; a < p->anchors[l]; a++)
        memcpy(dst + (size_t)a * bb, src + (size_t)a * rb, bb);
    dst = rows;
    for (int64_t r = 0; r < p->n_rows[l]; r++)
        memcpy(dst + (size_t)r * rb, src + (size_t)p->index[l][r] * rb, rb);
}

void ylc_compact_scatter(const ylc_compact_plan *p, int l, size_t es, const void *obj,
                         const void *rows, void *dense)
{
    size_t rb = (size_t)p->row_len[l] * es;
    char *d = dense;
    const char *o = obj, *r = rows;
    memset(d, 0, (size_t)p->anchors[l] * rb);
    for (int64_t a = 0; a < p->anchors[l]; a++)
        memcpy(d + (size_t)a * rb + 4 * es, o + (size_t)a * es, es);
    for (int64_t k = 0; k < p->n_rows[l]; k++)
        memcpy(d + (size_t)p->index[l][k] * rb, r + (size_t)k * rb, rb);
}
