/*
 * ylc_compact.h (internal to the C client): the compact exact tensors of the wire contract
 * (docs/protocol.md, "yololoss_compact"), built from the caller's dense head outputs and
 * ground truth, and the compact gradient scattered back to the dense layout.
 *
 * Per layer l the request carries output_l_box [B, H, W, 3, 5] (t_x, t_y, t_w, t_h, t_o of
 * every anchor), output_l_rows [N, 5+C] (the full rows of the chosen anchors) and
 * output_l_index [N] (their flat indices ((b*H + j)*W + i)*3 + k, increasing). The rows
 * chosen are a superset of the truth anchors, computed exactly and cheaply: with boxes, all
 * 3 anchors of the cell of every box (keras's centre arithmetic), in every layer; with
 * y_true, the anchors whose objectness is nonzero. Values are copied in the caller's dtype,
 * never converted, so the daemon sees the very bits of the dense request.
 */
#ifndef YLC_COMPACT_H
#define YLC_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include "yololoss_client.h"

typedef struct {
    int L;
    int dtype[YLC_MAX_LAYERS];        /* the output's dtype (box and rows keep it) */
    int64_t B, H[YLC_MAX_LAYERS], W[YLC_MAX_LAYERS];
    int64_t row_len[YLC_MAX_LAYERS];  /* 5 + C */
    int64_t anchors[YLC_MAX_LAYERS];  /* B*H*W*3 */
    int64_t n_rows[YLC_MAX_LAYERS];
    int64_t *index[YLC_MAX_LAYERS];   /* n_rows flat anchor indices, increasing (malloc'd) */
    const void *src[YLC_MAX_LAYERS];  /* the caller's dense output l */
} ylc_compact_plan;

/* Choose the rows. 0: planned; 1: the tensors cannot be read as a batch (odd shapes or
 * dtypes): send them dense and let the daemon name the problem; -1: out of memory. */
int ylc_compact_plan_make(ylc_compact_plan *p, const ylc_tensor *outputs, int L,
                          const ylc_tensor *boxes, const ylc_tensor *y_true, int n_y_true);
void ylc_compact_plan_free(ylc_compact_plan *p);

/* Bytes of output_l_box, output_l_rows, output_l_index. */
size_t ylc_compact_box_bytes(const ylc_compact_plan *p, int l);
size_t ylc_compact_rows_bytes(const ylc_compact_plan *p, int l);
size_t ylc_compact_index_bytes(const ylc_compact_plan *p, int l);

/* Write output_l_box and output_l_rows into box and rows (sizes above; any alignment). */
void ylc_compact_fill(const ylc_compact_plan *p, int l, void *box, void *rows);

/* The dense gradient of layer l (anchors*row_len elements of es = 4 (float) or 8 (double)
 * bytes) from grad_l_obj (anchors values) and grad_l_rows (n_rows*row_len values) in the
 * same element type, both possibly unaligned: zeros, then channel 4 of every anchor, then
 * the full rows. */
void ylc_compact_scatter(const ylc_compact_plan *p, int l, size_t es, const void *obj,
                         const void *rows, void *dense);

#endif
