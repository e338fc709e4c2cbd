/* The evaluator's order-defining primitives: numpy's mergesort order and numpy's
 * pairwise sum. Both must be exactly numpy's: pycocotools' results depend on them. */
#include "eval_internal.h"

#include <stdint.h>
#include <string.h>

/* Insertion sort below this run length: stable (moves an element only past strictly
 * greater keys), so the merge sort stays stable. */
#define YLE__RUN 16

static void sort_rec(int32_t *a, int32_t *tmp, int64_t n, const double *key) {
    if (n <= YLE__RUN) {
        for (int64_t i = 1; i < n; i++) {
            int32_t v = a[i];
            double kv = key[v];
            int64_t j = i;
            while (j > 0 && key[a[j - 1]] > kv) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = v;
        }
        return;
    }
    int64_t h = n / 2;
    sort_rec(a, tmp, h, key);
    sort_rec(a + h, tmp, n - h, key);
    if (!(key[a[h - 1]] > key[a[h]]))
        return; /* already in order */
    memcpy(tmp, a, (size_t)h * sizeof *a);
    int64_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        /* equal keys: the left (earlier) one first */
        if (key[a[j]] < key[tmp[i]])
            a[o++] = a[j++];
        else
            a[o++] = tmp[i++];
    }
    while (i < h)
        a[o++] = tmp[i++];
}

void yle__sort_idx(int32_t *idx, int32_t *tmp, int64_t n, const double *key) {
    if (n > 1)
        sort_rec(idx, tmp, n, key);
}

/* numpy/core/src/umath/loops_utils.h.src pairwise_sum_DOUBLE, for a contiguous array. */
static double pairwise(const double *a, int64_t n) {
    if (n < 8) {
        double res = 0.;
        for (int64_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

/* np.add.reduce goes through its iterator's buffer of 8192 elements (np.getbufsize()):
 * each chunk is summed pairwise and the chunks' sums are added in order. */
double yle__pairwise_sum(const double *a, int64_t n) {
    double res = 0.;
    for (int64_t i = 0; i < n; i += 8192)
        res += pairwise(a + i, n - i < 8192 ? n - i : 8192);
    return res;
}

size_t yle__bytes(int64_t n, size_t each) {
    if (n < 0 || (uint64_t)n > (SIZE_MAX - 16) / (each ? each : 1) / 2)
        return SIZE_MAX;
    size_t b = (size_t)n * each;
    return (b + 15) & ~(size_t)15;
}

size_t yle__carve(const yle__part *parts, size_t n_parts, char *base) {
    size_t off = 0;
    for (size_t i = 0; i < n_parts; i++) {
        size_t b = yle__bytes(parts[i].n, parts[i].each);
        if (b == SIZE_MAX || off > SIZE_MAX - b)
            return SIZE_MAX;
        if (base)
            *parts[i].ptr = base + off;
        off += b;
    }
    return off;
}
