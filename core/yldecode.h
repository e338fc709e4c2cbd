/*
 * yldecode.h: raw YOLOv3 heads to detections, as keras-yolo3's `yolo_eval` does.
 *
 * Part of libyololoss (pure C11 + libm), on the yl_problem of yololoss.h: the problem
 * already holds the validated heads, anchors, anchor masks and input size, so the loss and
 * the detections of one batch come from one validation. Per image, in float64:
 *   1. yolo_head: box centre (sigmoid(t_xy) + cell) / grid, size exp(t_wh) * anchor / input
 *      (the core's own formula, the one the loss decodes with), objectness sigmoid(t_o),
 *      class probabilities sigmoid(t_c);
 *   2. yolo_correct_boxes: undo keras's letterbox for an image of image_h x image_w pixels
 *      (new_shape = round(image * min(input / image)), round half to even as tf.round;
 *      offset (input - new_shape) / 2 / input, scale input / new_shape), then scale to the
 *      image's pixels. image_h = image_w = 0 means "the input size" (no letterbox: offset 0,
 *      scale 1, the same bits);
 *   3. score = objectness * class probability, kept when >= score_threshold (keras's mask);
 *   4. per class, tf.image.non_max_suppression: candidates by score, highest first; EQUAL
 *      SCORES GO TO THE LOWER INDEX (tensorflow's non_max_suppression_op.cc orders its
 *      priority queue by score, then by the lower box index), the index being keras's
 *      concatenation order: layer l (coarsest first), then grid row j, column i, anchor k.
 *      A candidate is kept when its IoU with every box already kept for the class is
 *      <= iou_threshold (suppressed when >), at most max_boxes per class. IoU as tensorflow
 *      computes it: 0 when either box has area <= 0; a NaN IoU (boxes of infinite size)
 *      suppresses nothing.
 * Output order is keras's: classes ascending, each class's boxes in the order NMS kept them.
 * What differs from keras: float64 throughout (keras and tensorflow's NMS run in float32),
 * boxes come back as the project's x_min, y_min, x_max, y_max in image pixels (keras
 * returns y_min, x_min, y_max, x_max), and yolo_eval's batch of one becomes any image b.
 *
 * OWNERSHIP as in yololoss.h: the caller owns every buffer; nothing is allocated.
 * yl_decode_image is a pure function of its arguments (any image, any thread, any order).
 *
 * WORKED EXAMPLE (after yl_problem_init of yololoss.h; a 640x480 picture letterboxed to
 * the 416x416 input):
 *
 *     yl_decode_config dc;
 *     yl_decode_config_default(&dc);               // 0.6, 0.5, 20: keras's defaults
 *     dc.image_h = 480, dc.image_w = 640;
 *     if (yl_decode_check(&p, &dc, &err) != YL_OK) { ... err.msg ... }
 *     void *scratch = malloc(yl_decode_scratch_size(&p));
 *     yl_detection *det = malloc(yl_decode_max_detections(&p, &dc) * sizeof *det);
 *     int64_t n;
 *     for (int64_t b = 0; b < p.batch; b++) {
 *         if (yl_decode_image(&p, b, &dc, scratch, det, &n, &err) != YL_OK) { ... }
 *         for (int64_t d = 0; d < n; d++)   // class det[d].cls, det[d].score, det[d].box
 *             ...;
 *     }
 */
#ifndef YOLOLOSS_DECODE_H
#define YOLOLOSS_DECODE_H

#include "yololoss.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double score_threshold; /* keep class scores >= this: 0.6 */
    double iou_threshold;   /* NMS suppresses IoU > this, in [0, 1]: 0.5 */
    int64_t max_boxes;      /* per class, >= 0: 20 */
    double image_h, image_w; /* the picture's size in pixels; both 0: the input size */
} yl_decode_config;

/* keras's defaults: 0.6, 0.5, 20, no letterbox. */
void yl_decode_config_default(yl_decode_config *dc);

/* Refuses a NaN or infinite threshold, an iou_threshold outside [0, 1], a negative
 * max_boxes, image sizes that are not both 0 or both finite and > 0 (tensor "decode"), and
 * compact problems (they do not carry every anchor's class logits), and definitions other
 * than keras-yolo3. */
int yl_decode_check(const yl_problem *p, const yl_decode_config *dc, yl_error *err);

typedef struct {
    double box[4]; /* x_min, y_min, x_max, y_max in the picture's pixels */
    double score;  /* objectness * class probability */
    int32_t cls;
    int32_t layer; /* which output it came from */
    int64_t anchor; /* ((j*W + i)*3 + k) within that layer's image */
} yl_detection;

/* Bytes of scratch one yl_decode_image call needs: 88 per anchor of an image. */
size_t yl_decode_scratch_size(const yl_problem *p);
/* Detections one image can produce at most: C * min(max_boxes, anchors per image). */
int64_t yl_decode_max_detections(const yl_problem *p, const yl_decode_config *dc);

/* Image b's detections into out (yl_decode_max_detections entries), their count in *n.
 * Reads t_o of every anchor and the whole row of the anchors whose objectness reaches
 * score_threshold (no other can score that much: score <= objectness); a non-finite value
 * among those is refused, naming it as yl_image does ("output_1[0][3][4][250] is NaN").
 * dc must have passed yl_decode_check. */
int yl_decode_image(const yl_problem *p, int64_t b, const yl_decode_config *dc, void *scratch,
                    yl_detection *out, int64_t *n, yl_error *err);

#ifdef __cplusplus
}
#endif
#endif /* YOLOLOSS_DECODE_H */
