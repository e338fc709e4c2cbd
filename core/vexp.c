/* exp(-|x|) over an array: the one transcendental every anchor needs (for BCE(0, t_o) and
 * sigmoid(t_o)), so it runs through glibc's vector exp (libmvec, at most 4 ulp: double
 * quality). gcc only calls libmvec under -ffast-math, so this file, and nothing else, is
 * built with it (core.mk); its inputs are finite (scanned first), which is all fast-math
 * assumes here. Elsewhere the loop simply stays scalar. */
#include <math.h>

#include "internal.h"

void yl__exp_neg_abs(const double *restrict x, double *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = exp(-fabs(x[i]));
}
