/*
 * image_rank.h: which training images keep a high loss (the per-image table of a run, see
 * docs/monitoring.md "Images"). Pure functions over rows already read from the history, so
 * that tests/server links this file alone and checks it against hand-computed numbers.
 *
 * THE SCORE. An image's value at a step is its loss (the sum of its four terms, or one
 * term when ranking by a term), per truth by default: divided by max(1, truths), its number
 * of anchors with a truth at that step (YLS_PER_TRUTH; YLS_PER_IMAGE leaves it whole). Its
 * relative value is its value divided by the mean value of the images of its batch at that
 * step (1 is an average image of that batch). Its score is the
 * mean of its relative values over its last `window` appearances. Dividing by the batch
 * mean takes out what the step does to every image (a falling overall loss, a learning-rate
 * change), so an image seen early is not ranked high just because the loss was high then;
 * averaging the last few appearances takes out the noise of one batch. A batch whose mean
 * is 0 (every image exactly 0 for that term) gives its images the relative value 1.
 * Per truth, because most of an image's loss is keras's xy term, a cross-entropy against
 * soft targets whose floor (the targets' entropy) every box pays: per image the ranking
 * mostly counts boxes, per truth a wrong box stands out (examples/README.md measures it).
 */
#ifndef YLS_IMAGE_RANK_H
#define YLS_IMAGE_RANK_H

#include <stddef.h>
#include <stdint.h>

/* One row of the per-image table: an image's four terms at a step (not divided by B). */
typedef struct {
    int64_t image, step;
    double terms[4]; /* xy, wh, confidence, class */
    int64_t truths;  /* anchors with a truth (objectness > 0) in the image at that step;
                        0 in rows stored before the column existed */
} yls_image_row;

#define YLS_RANK_LOSS 4 /* rank by the loss; 0..3: by one term */

#define YLS_PER_IMAGE 0 /* the value of a row: the image's loss (or term) */
#define YLS_PER_TRUTH 1 /* ... divided by max(1, truths) */

typedef struct {
    int64_t image;
    double score;        /* mean relative value over the last `used` appearances */
    int64_t appearances; /* rows of the image */
    int64_t used;        /* min(appearances, window) */
    int64_t last_step;
    double last_value;   /* its value at last_step (per truth with YLS_PER_TRUTH) */
    double mean_value;   /* mean value over the used appearances */
    int64_t last_truths; /* its truths at last_step */
} yls_image_score;

/* The value of a row: one term, or (YLS_RANK_LOSS) the sum of the four; with per
 * YLS_PER_TRUTH divided by max(1, r->truths). */
double yls_image_value(const yls_image_row *r, int term, int per);

/* For each row, the mean value of its batch (the rows of its step) and its relative value.
 * 0, or -1 (out of memory). */
int yls_images_relative(const yls_image_row *rows, size_t n, int term, int per,
                        double *batch_mean, double *relative);

/* Every image's score, highest first (ties: the smaller id first); *out malloc'd.
 * window >= 1. 0, or -1 (out of memory). */
int yls_images_rank(const yls_image_row *rows, size_t n, int term, int per, int64_t window,
                    yls_image_score **out, size_t *nout);

#endif /* YLS_IMAGE_RANK_H */
