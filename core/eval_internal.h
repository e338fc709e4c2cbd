/* Internal declarations shared by the evaluator's files (eval_*.c). Never installed. */
#ifndef YLEVAL_INTERNAL_H
#define YLEVAL_INTERNAL_H

#include "yleval.h"

#if defined(__GNUC__)
#define YLE__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define YLE__PRINTF(f, a)
#endif

/* eval_params.c: fill err (may be NULL) and return code. */
int yle__fail(yle_error *err, int code, const char *what, int64_t index, const char *fmt, ...)
    YLE__PRINTF(5, 6);
/* yle_params_check less the order of the id arrays (O(1) in their lengths). */
int yle__params_check_values(const yle_params *p, yle_error *err);
/* K of the arrays: n_cat, or 1 with use_cats 0 ("coco"). */
int64_t yle__num_k(const yle_params *p);

/* eval_sort.c: a stable sort of the indices idx[0..n) by key[idx[i]] ascending (a merge
 * sort: numpy's kind='mergesort' order); tmp holds n indices. */
void yle__sort_idx(int32_t *idx, int32_t *tmp, int64_t n, const double *key);
/* numpy's sum of a contiguous float64 array (np.sum, np.mean's sum): chunks of 8192 (its
 * buffer) added in order, each summed pairwise (blocks of 128 in 8 lanes, halves above
 * that), in numpy's exact order. */
double yle__pairwise_sum(const double *a, int64_t n);

/* Bytes of n elements of size each, rounded up to 16, or SIZE_MAX on overflow. */
size_t yle__bytes(int64_t n, size_t each);
/* A scratch buffer cut into arrays: each part gets n elements of `each` bytes, 16-aligned,
 * in order. Returns the bytes needed (SIZE_MAX on overflow); points *ptr into base when
 * base is not NULL. */
typedef struct {
    void **ptr;
    int64_t n;
    size_t each;
} yle__part;
size_t yle__carve(const yle__part *parts, size_t n_parts, char *base);

#endif
