/*
 * image_rank.c: the images ranking of image_rank.h. Rows are visited in a fixed order
 * (step then image for the batch means, image then step for the scores) whatever order
 * the backend returned them in, so both backends give the same bits.
 */
#include "image_rank.h"

#include <stdlib.h>

double yls_image_value(const yls_image_row *r, int term, int per)
{
    double v = term >= 0 && term < 4 ? r->terms[term]
                                     : r->terms[0] + r->terms[1] + r->terms[2] + r->terms[3];
    if (per == YLS_PER_TRUTH && r->truths > 1)
        v /= (double)r->truths;
    return v;
}

/* A row's sort key with its index (qsort has no context argument). */
typedef struct {
    int64_t image, step;
    size_t i;
} key;

static int by_step_image(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->step != y->step)
        return x->step < y->step ? -1 : 1;
    return x->image < y->image ? -1 : x->image > y->image;
}

/* image ascending, then the newest appearance first */
static int by_image_newest(const void *a, const void *b)
{
    const key *x = a, *y = b;
    if (x->image != y->image)
        return x->image < y->image ? -1 : 1;
    return x->step > y->step ? -1 : x->step < y->step;
}

/* The row indices in the order of cmp (malloc'd), or NULL. */
static size_t *sorted(const yls_image_row *rows, size_t n, int (*cmp)(const void *, const void *))
{
    key *k = malloc((n ? n : 1) * sizeof *k);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!k || !idx) {
        free(k);
        free(idx);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        k[i] = (key){rows[i].image, rows[i].step, i};
    qsort(k, n, sizeof *k, cmp);
    for (size_t i = 0; i < n; i++)
        idx[i] = k[i].i;
    free(k);
    return idx;
}

int yls_images_relative(const yls_image_row *rows, size_t n, int term, int per,
                        double *batch_mean, double *relative)
{
    size_t *idx = sorted(rows, n, by_step_image);
    if (!idx)
        return -1;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double sum = 0;
        for (; j < n && rows[idx[j]].step == rows[idx[i]].step; j++)
            sum += yls_image_value(&rows[idx[j]], term, per);
        double mean = sum / (double)(j - i);
        for (size_t k = i; k < j; k++) {
            double v = yls_image_value(&rows[idx[k]], term, per);
            batch_mean[idx[k]] = mean;
            relative[idx[k]] = mean > 0 ? v / mean : 1.0;
        }
        i = j;
    }
    free(idx);
    return 0;
}

static int by_score(const void *a, const void *b)
{
    const yls_image_score *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->image < y->image ? -1 : x->image > y->image;
}

int yls_images_rank(const yls_image_row *rows, size_t n, int term, int per, int64_t window,
                    yls_image_score **out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    double *mean = malloc((n ? n : 1) * sizeof *mean);
    double *rel = malloc((n ? n : 1) * sizeof *rel);
    yls_image_score *v = malloc((n ? n : 1) * sizeof *v);
    size_t *idx = NULL;
    if (!mean || !rel || !v || yls_images_relative(rows, n, term, per, mean, rel) ||
        !(idx = sorted(rows, n, by_image_newest))) {
        free(mean);
        free(rel);
        free(v);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        const yls_image_row *first = &rows[idx[i]];
        size_t j = i;
        while (j < n && rows[idx[j]].image == first->image)
            j++;
        yls_image_score *s = &v[m++];
        s->image = first->image;
        s->appearances = (int64_t)(j - i);
        s->used = s->appearances < window ? s->appearances : window;
        s->last_step = first->step;
        s->last_value = yls_image_value(first, term, per);
        s->last_truths = first->truths;
        double sr = 0, sv = 0;
        for (size_t k = i; k < i + (size_t)s->used; k++) {
            sr += rel[idx[k]];
            sv += yls_image_value(&rows[idx[k]], term, per);
        }
        s->score = sr / (double)s->used;
        s->mean_value = sv / (double)s->used;
        i = j;
    }
    qsort(v, m, sizeof *v, by_score);
    free(idx);
    free(mean);
    free(rel);
    *out = v;
    *nout = m;
    return 0;
}
