/* The per-element kernels of the loss: the finiteness scan, the t_o gather of a grid row
 * and the sums over the anchors without a truth. Each is written once, as a macro over
 * plain C, and instantiated twice: the scalar build (the reference branch, baseline ISA)
 * and an AVX2 build (gcc's target attribute), chosen at run time by yl__kernels_for().
 *
 * Both builds perform the same IEEE operations in the same order: the sums run in four
 * fixed lanes (written out, so no reassociation is needed to vectorise them), the build is
 * ISO C (-std=c11: no FMA contraction), and nothing here calls libm. So the AVX2 branch
 * gives the same bits as the scalar one; tests/core/test_kernels.c checks that on every
 * dtype and both gradient dtypes, and against the reference. (exp stays in vexp.c for both:
 * libmvec's AVX2 exp differs from its SSE one in the last bit of about 1 value in 10^4.)
 */
#include <math.h>
#include <string.h>

#include "internal.h"

/* ---------------------------------------------------------------- finiteness scan */

/* A plain OR over exponent tests, in blocks, so gcc vectorises it. */
#define YL__SCAN(type, mask)                                                           \
    do {                                                                               \
        const unsigned char *v = (const unsigned char *)base + first * sizeof(type);   \
        int64_t i = 0;                                                                 \
        while (i < n) {                                                                \
            int64_t end = i + 1024 < n ? i + 1024 : n;                                 \
            type bad = 0;                                                              \
            for (int64_t k = i; k < end; k++) {                                        \
                type x;                                                                \
                memcpy(&x, v + k * sizeof(type), sizeof x); /* any alignment */        \
                bad |= (type)((x & (mask)) == (mask));                                 \
            }                                                                          \
            if (bad)                                                                   \
                for (int64_t k = i; k < end; k++) {                                    \
                    type x;                                                            \
                    memcpy(&x, v + k * sizeof(type), sizeof x);                        \
                    if ((x & (mask)) == (mask))                                        \
                        return k;                                                      \
                }                                                                      \
            i = end;                                                                   \
        }                                                                              \
        return -1;                                                                     \
    } while (0)

#define YL__DEF_SCAN(name, attr)                                                          \
    attr static int64_t name(const void *base, int dtype, int64_t first, int64_t n) {     \
        switch (dtype) {                                                                  \
        case YL_F32:                                                                      \
            YL__SCAN(uint32_t, 0x7f800000u);                                              \
        case YL_F16:                                                                      \
            YL__SCAN(uint16_t, 0x7c00u);                                                  \
        case YL_BF16:                                                                     \
            YL__SCAN(uint16_t, 0x7f80u);                                                  \
        default:                                                                          \
            YL__SCAN(uint64_t, 0x7ff0000000000000ull);                                    \
        }                                                                                 \
    }

/* ---------------------------------------------------------------- t_o gather */

/* out[q] = element first + q*stride of base, q < n, converted exactly; one loop per dtype
 * instead of a dtype switch per element. */
#define YL__DEF_GATHER(name, attr)                                                        \
    attr static void name(const void *base, int dtype, int64_t first, int64_t stride,     \
                          int64_t n, double *restrict out) {                              \
        const unsigned char *p = base;                                                    \
        switch (dtype) {                                                                  \
        case YL_F32:                                                                      \
            for (int64_t q = 0; q < n; q++) {                                             \
                float f;                                                                  \
                memcpy(&f, p + 4 * (first + q * stride), 4);                              \
                out[q] = (double)f;                                                       \
            }                                                                             \
            break;                                                                        \
        case YL_F64:                                                                      \
            for (int64_t q = 0; q < n; q++)                                               \
                memcpy(&out[q], p + 8 * (first + q * stride), 8);                         \
            break;                                                                        \
        default:                                                                          \
            for (int64_t q = 0; q < n; q++)                                               \
                out[q] = yl__load(base, dtype, first + q * stride);                       \
        }                                                                                 \
    }

/* ---------------------------------------------------------------- anchors without a truth */

void yl__noobj_init(yl__noobj_acc *acc) {
    memset(acc, 0, sizeof *acc);
    for (int k = 0; k < 4; k++)
        acc->prod[k] = 1.0;
}

/* Per anchor q of a row: to, e = exp(-|to|), m = 1 for an anchor without a truth (0 for a
 * truth anchor or padding), ig = 1 when its confidence loss counts (not ignored). Adds
 * m * sigmoid(to) to noobj, ig * max(to, 0) to linear, and ig * log1p(e) as one factor
 * (1 + e) of a per-lane product (its log taken every YL__LOG_BLOCKS blocks: factors lie
 * in (1, 2], so 4 * 64 of them stay below 2^256), or as the series e - e^2/2 when
 * e < 2^-20 would lose its digits in 1 + e. s_o[q] = sigmoid(to) for the gradient. n is a
 * multiple of 4 (the row arrays are padded with m = ig = 0). The division per anchor and
 * the four independent lanes are what let both builds vectorise it. */
#define YL__LOG_BLOCKS 64

#define YL__DEF_NOOBJ(name, attr)                                                         \
    attr static void name(const double *restrict to, const double *restrict e,            \
                          const double *restrict m, const double *restrict ig, int64_t n, \
                          double *restrict s_o, yl__noobj_acc *restrict acc) {            \
        for (int64_t q = 0; q < n; q += 4) {                                              \
            for (int k = 0; k < 4; k++) {                                                 \
                double t = to[q + k], x = e[q + k], w = ig[q + k];                        \
                double s = (t >= 0 ? 1.0 : x) / (1.0 + x);                                \
                s_o[q + k] = s;                                                           \
                acc->noobj[k] += m[q + k] * s;                                            \
                acc->linear[k] += w * (t > 0 ? t : 0.0);                                  \
                int big = x >= 0x1p-20;                                                   \
                acc->prod[k] *= w != 0 && big ? 1.0 + x : 1.0;                            \
                acc->small[k] += w != 0 && !big ? x - x * x / 2 : 0.0;                    \
            }                                                                             \
            if (++acc->blocks == YL__LOG_BLOCKS) {                                        \
                acc->blocks = 0;                                                          \
                yl__noobj_flush(acc);                                                     \
            }                                                                             \
        }                                                                                 \
    }

/* The logs are libm calls: one place, called by both builds. */
void yl__noobj_flush(yl__noobj_acc *acc) {
    for (int k = 0; k < 4; k++) {
        acc->logs[k] += log(acc->prod[k]);
        acc->prod[k] = 1.0;
    }
}

double yl__noobj_total(const yl__noobj_acc *acc, double *noobj_sum) {
    double linear = 0, logs = 0, small = 0, noobj = 0;
    for (int k = 0; k < 4; k++) {
        linear += acc->linear[k];
        logs += acc->logs[k] + log(acc->prod[k]);
        small += acc->small[k];
        noobj += acc->noobj[k];
    }
    *noobj_sum = noobj;
    return linear + logs + small;
}

#define YL__ATTR_SCALAR
YL__DEF_SCAN(scan_scalar, YL__ATTR_SCALAR)
YL__DEF_GATHER(gather_scalar, YL__ATTR_SCALAR)
YL__DEF_NOOBJ(noobj_scalar, YL__ATTR_SCALAR)

static const yl__kernels scalar_kernels = {"scalar", scan_scalar, gather_scalar, noobj_scalar};

#if defined(__x86_64__) && defined(__GNUC__)
#define YL__ATTR_AVX2 __attribute__((target("avx2")))
YL__DEF_SCAN(scan_avx2, YL__ATTR_AVX2)
YL__DEF_GATHER(gather_avx2, YL__ATTR_AVX2)
YL__DEF_NOOBJ(noobj_avx2, YL__ATTR_AVX2)

static const yl__kernels avx2_kernels = {"avx2", scan_avx2, gather_avx2, noobj_avx2};
#endif

const char *yl_kernel_name(const yl_problem *p) { return yl__kernels_for(p->kernel)->name; }

const yl__kernels *yl__kernels_for(int kernel) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (kernel == YL_KERNEL_AUTO)
        kernel = __builtin_cpu_supports("avx2") ? YL_KERNEL_AVX2 : YL_KERNEL_SCALAR;
    if (kernel == YL_KERNEL_AVX2 && __builtin_cpu_supports("avx2"))
        return &avx2_kernels;
#else
    (void)kernel;
#endif
    return &scalar_kernels;
}

int64_t yl__find_nonfinite(const void *base, int dtype, int64_t first, int64_t n) {
    return scan_scalar(base, dtype, first, n);
}
