/* The per-element kernels of the loss: the finiteness scan, the t_o gather of a grid row
 * and the sums over the anchors without a truth. Each is written once, as a macro over
 * plain C, and instantiated twice: the scalar build (the reference branch, baseline ISA)
 * and an AVX2 build (gcc's target attribute), chosen at run time by yl__kernels_for().
 *
 * Both builds perform the same IEEE operations in the same order: the sums run in four
 * fixed lanes (written out, so no reassociation is needed to vectorise them), the build is
 * ISO C (-std=c11: no FMA contraction), and nothing here calls libm. So the AVX2 branch
 * gives the same bits as the scalar one; tests/core/test_kernels.c checks that on every
 * dtype and both gradient dtypes, and against the reference. (exp is our own, below:
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

/* fp16 and bf16 bits to double, exactly, with integer operations only (so the loops
 * vectorise): a normal fp16 is rebased to float's exponent, a subnormal one is m * 2^-24,
 * and inf/NaN keep their class. */
static inline double half_bits_to_double(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    uint32_t bits = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112) << 23) | (m << 13));
    float f;
    memcpy(&f, &bits, 4);
    double sub = (double)m * 0x1p-24;
    return e == 0 ? (sign ? -sub : sub) : (double)f;
}

static inline double bf16_bits_to_double(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return (double)f;
}

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
        case YL_BF16:                                                                     \
            for (int64_t q = 0; q < n; q++) {                                             \
                uint16_t h;                                                               \
                memcpy(&h, p + 2 * (first + q * stride), 2);                              \
                out[q] = bf16_bits_to_double(h);                                          \
            }                                                                             \
            break;                                                                        \
        default:                                                                          \
            for (int64_t q = 0; q < n; q++) {                                             \
                uint16_t h;                                                               \
                memcpy(&h, p + 2 * (first + q * stride), 2);                              \
                out[q] = half_bits_to_double(h);                                          \
            }                                                                             \
        }                                                                                 \
    }

/* ---------------------------------------------------------------- exp(-|x|) */

/* out[q] = exp(-|x[q]|) for finite x, within 2 ulp (tests/core/test_core.c holds it to that
 * against libm on a million values). Cody-Waite reduction y = n ln2 + r, |r| <= ln2/2,
 * n rounded by the 1.5 * 2^52 trick (no rounding call, and n can be read from the
 * bits, so it vectorises); e^r by its Taylor series to r^13 (remainder below 5e-17
 * relative); then times 2^(n+64) and 2^-64, so 2^(n+64) is always a normal number and a
 * subnormal result is rounded once. y below -746 is clamped there: exp underflows to 0
 * from -745.14 on. No libm call: both builds compute the same bits, and it runs 4 wide
 * under AVX2 where libmvec's SSE exp ran 2. */
/* The loop, a statement over x, out and n, so the fused row kernel below runs it too. */
#define YL__EXP_LOOP(x, out, n)                                                           \
    do {                                                                                  \
        const double shift = 0x1.8p52, log2e = 0x1.71547652b82fep0;                       \
        const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;        \
        for (int64_t q = 0; q < n; q++) {                                                 \
            double y = -fabs(x[q]);                                                       \
            y = y < -746.0 ? -746.0 : y;                                                  \
            double kn = y * log2e + shift;                                                \
            double nf = kn - shift; /* round(y / ln2), exact integer in [-1077, 0] */     \
            double r = (y - nf * ln2_hi) - nf * ln2_lo;                                   \
            /* e^r = 1 + r S(r), S = sum of r^(i-1) / i! for i = 1..13 by Estrin's      \
             * scheme (a tree of depth 4 instead of a chain of 13, so consecutive      \
             * elements overlap in the pipeline); S's rounding is scaled down by |r| <=  \
             * ln2/2 before the one last addition, so this is as accurate as Horner's */ \
            double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;                                \
            double a0 = 1.0 + r * 0.5, a1 = 1.0 / 6.0 + r * (1.0 / 24.0);                 \
            double a2 = 1.0 / 120.0 + r * (1.0 / 720.0);                                  \
            double a3 = 1.0 / 5040.0 + r * (1.0 / 40320.0);                               \
            double a4 = 1.0 / 362880.0 + r * (1.0 / 3628800.0);                           \
            double a5 = 1.0 / 39916800.0 + r * (1.0 / 479001600.0);                       \
            double sr = ((a0 + r2 * a1) + r4 * (a2 + r2 * a3)) +                          \
                        r8 * ((a4 + r2 * a5) + r4 * (1.0 / 6227020800.0));                \
            double p = 1.0 + r * sr;                                                      \
            uint64_t kb, sb;                                                              \
            memcpy(&kb, &kn, 8);                                                          \
            memcpy(&sb, &shift, 8);                                                       \
            uint64_t eb = (kb - sb + 64 + 1023) << 52; /* 2^(n+64), n+64 >= -1013 */      \
            double scale;                                                                 \
            memcpy(&scale, &eb, 8);                                                       \
            out[q] = p * scale * 0x1p-64;                                                 \
        }                                                                                 \
    } while (0)

#define YL__DEF_EXP(name, attr)                                                           \
    attr static void name(const double *restrict x, double *restrict out, int64_t n) {    \
        YL__EXP_LOOP(x, out, n);                                                          \
    }

/* ---------------------------------------------------------------- the row's read */

static inline double f32_bits_to_double(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return (double)f;
}

static inline double f64_bits_to_double(uint64_t b) {
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* The step of a grid row that reads it: proves the n anchors' values finite (n * stride
 * elements from first, as the scan) and gathers each anchor's t_o (its channel ch) into
 * to and exp(-|t_o|) into e, YL__GROUP anchors at a time. Done group by group, the exps of
 * one group run while the next group's reads are under way; a scan of the whole row first
 * left the memory idle while the row's exps ran after it. Returns the index (relative to
 * first) of the first non-finite element, or -1 (then every to and e is written). The
 * test is a running maximum of the exponent fields (an AND and a MAX per vector), which
 * measured 0.3 ms faster on the standard workload than OR-ing comparisons (an AND, a
 * compare and an OR): fewer operations between the loads. Groups of 8 anchors measured
 * best (4, 16 and 32 were 0.2-0.5 ms slower; 8 * 85 values fill AVX2 vectors exactly). */
#define YL__GROUP 8
#define YL__READ_ROW(type, mask, conv)                                                    \
    do {                                                                                  \
        const unsigned char *src = (const unsigned char *)base;                           \
        const int64_t g = n < YL__GROUP ? n : YL__GROUP;                                  \
        for (int64_t g0 = 0; g0 < n; g0 += g) {                                           \
            g0 = g0 + g > n ? n - g : g0; /* the last group ends at n: overlaps, but full */ \
            int64_t lo = first + g0 * stride, cnt = g * stride;                           \
            type hi = 0; /* the largest exponent field: mask only when non-finite */      \
            for (int64_t k = 0; k < cnt; k++) {                                           \
                type v;                                                                   \
                memcpy(&v, src + (lo + k) * (int64_t)sizeof(type), sizeof v);             \
                v &= (type)(mask);                                                        \
                hi = v > hi ? v : hi;                                                     \
            }                                                                             \
            if (hi == (type)(mask))                                                       \
                for (int64_t k = 0; k < cnt; k++) {                                       \
                    type v;                                                               \
                    memcpy(&v, src + (lo + k) * (int64_t)sizeof(type), sizeof v);         \
                    if ((v & (mask)) == (mask))                                           \
                        return g0 * stride + k;                                           \
                }                                                                         \
            for (int64_t k = 0; k < g; k++) {                                             \
                type v;                                                                   \
                memcpy(&v, src + (lo + k * stride + ch) * (int64_t)sizeof(type), sizeof v); \
                to[g0 + k] = conv(v);                                                     \
            }                                                                             \
            const double *gx = to + g0;                                                   \
            double *ge = e + g0;                                                          \
            if (g == YL__GROUP)                                                           \
                YL__EXP_LOOP(gx, ge, YL__GROUP); /* a constant count: no scalar tail */   \
            else                                                                          \
                YL__EXP_LOOP(gx, ge, g);                                                  \
        }                                                                                 \
        return -1;                                                                        \
    } while (0)

#define YL__DEF_READ_ROW(name, attr)                                                      \
    attr static int64_t name(const void *base, int dtype, int64_t first, int64_t n,       \
                             int64_t stride, int64_t ch, double *restrict to,             \
                             double *restrict e) {                                        \
        switch (dtype) {                                                                  \
        case YL_F32:                                                                      \
            YL__READ_ROW(uint32_t, 0x7f800000u, f32_bits_to_double);                      \
        case YL_F16:                                                                      \
            YL__READ_ROW(uint16_t, 0x7c00u, half_bits_to_double);                         \
        case YL_BF16:                                                                     \
            YL__READ_ROW(uint16_t, 0x7f80u, bf16_bits_to_double);                         \
        default:                                                                          \
            YL__READ_ROW(uint64_t, 0x7ff0000000000000ull, f64_bits_to_double);            \
        }                                                                                 \
    }

/* ---------------------------------------------------------------- culling candidates */

/* cand[i] = 1 where b[0] <= tw[i] <= b[1] and b[2] <= th[i] <= b[3] (a truth's t_w, t_h
 * bounds for one anchor; image.c's mark_candidates), other cand[i] left as they are. */
#define YL__DEF_ADMIT(name, attr)                                                         \
    attr static void name(const double *restrict tw, const double *restrict th, int64_t n, \
                          const double b[4], double *restrict cand) {                     \
        const double wlo = b[0], whi = b[1], hlo = b[2], hhi = b[3];                      \
        for (int64_t i = 0; i < n; i++)                                                   \
            cand[i] = tw[i] >= wlo && tw[i] <= whi && th[i] >= hlo && th[i] <= hhi ? 1.0  \
                                                                                 : cand[i]; \
    }

/* keras's yolo_head for n culling candidates of grid row j: raw t and e = exp(-|t|), each 4
 * arrays (t_x, t_y, t_w, t_h) of stride n_at; sigmoid(x) = 1 / (1 + e) or e / (1 + e) and
 * exp(x) = 1 / e or e. ci: the cell column, aw, ah: the anchor in pixels, grid_in: W, H and
 * the input's width and height. Out: centre and size, 4 arrays of stride n_at. The same
 * operations in the same order as image.c's box_of, so the same bits. */
#define YL__DEF_DECODE(name, attr)                                                        \
    attr static void name(const double *restrict t, const double *restrict e,             \
                          const double *restrict ci, const double *restrict aw,           \
                          const double *restrict ah, int64_t n, int64_t n_at, double j,   \
                          const double grid_in[4], double *restrict out) {                \
        const double W = grid_in[0], H = grid_in[1], in_w = grid_in[2], in_h = grid_in[3]; \
        for (int64_t r = 0; r < n; r++) {                                                 \
            double tx = t[r], ty = t[n_at + r], tw = t[2 * n_at + r], th = t[3 * n_at + r]; \
            double ex = e[r], ey = e[n_at + r], ew = e[2 * n_at + r], eh = e[3 * n_at + r]; \
            double sx = (tx >= 0 ? 1.0 : ex) / (1.0 + ex);                                \
            double sy = (ty >= 0 ? 1.0 : ey) / (1.0 + ey);                                \
            double xw = tw >= 0 ? 1.0 / ew : ew, xh = th >= 0 ? 1.0 / eh : eh;            \
            out[r] = (sx + ci[r]) / W;                                                    \
            out[n_at + r] = (sy + j) / H;                                                 \
            out[2 * n_at + r] = xw * aw[r] / in_w;                                        \
            out[3 * n_at + r] = xh * ah[r] / in_h;                                        \
        }                                                                                 \
    }

/* hit[r] = 1 where the box r (4 arrays of stride n_at, as decode writes them) reaches
 * IoU >= thresh with the truth box b (x, y, w, h); other hit[r] are left as they are.
 * keras's box_iou with image.c's operations (the same bits), a NaN IoU counting as 0:
 * computed for every candidate and selected, so the loop has no branch. */
#define YL__DEF_REACH(name, attr)                                                         \
    attr static void name(const double *restrict box, int64_t n, int64_t n_at,            \
                          const double b[4], double thresh, double *restrict hit) {       \
        const double bx0 = b[0] - b[2] / 2, bx1 = b[0] + b[2] / 2;                        \
        const double by0 = b[1] - b[3] / 2, by1 = b[1] + b[3] / 2, barea = b[2] * b[3];   \
        for (int64_t r = 0; r < n; r++) {                                                 \
            double x = box[r], y = box[n_at + r], w = box[2 * n_at + r], h = box[3 * n_at + r]; \
            double ax1 = x + w / 2, ax0 = x - w / 2, ay1 = y + h / 2, ay0 = y - h / 2;    \
            double iw = (ax1 < bx1 ? ax1 : bx1) - (ax0 > bx0 ? ax0 : bx0);                \
            double ih = (ay1 < by1 ? ay1 : by1) - (ay0 > by0 ? ay0 : by0);                \
            double inter = (iw > 0.0 ? iw : 0.0) * (ih > 0.0 ? ih : 0.0);                 \
            double iou = inter / (w * h + barea - inter);                                 \
            iou = iou == iou ? iou : 0.0;                                                 \
            hit[r] = iou >= thresh ? 1.0 : hit[r];                                        \
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
 * (1 + e) of a per-lane product (its log taken once YL__LOG_BLOCKS blocks of 4 have gone
 * by: factors lie in (1, 2], and fewer than 2 * 64 of them per lane stay below 2^128), or
 * as the series e - e^2/2 when e < 2^-20 would lose its digits in 1 + e.
 * s_o[q] = sigmoid(to) for the gradient. n is a multiple of 4 (the row arrays are padded
 * with m = ig = 0). A chunk at a time: first an element-wise map (one division per
 * anchor; gcc vectorises it with selects), then the sums in four written-out lanes (so the
 * order is fixed, the same in both builds, and still vectorised). */
#define YL__LOG_BLOCKS 64
#define YL__CHUNK 256

#define YL__DEF_NOOBJ(name, attr)                                                         \
    attr static void name(const double *restrict to, const double *restrict e,            \
                          const double *restrict m, const double *restrict ig, int64_t n, \
                          double *restrict s_o, yl__noobj_acc *restrict acc) {            \
        double nb[YL__CHUNK], li[YL__CHUNK], fa[YL__CHUNK], sm[YL__CHUNK];                \
        for (int64_t c0 = 0; c0 < n; c0 += YL__CHUNK) {                                   \
            int64_t len = n - c0 < YL__CHUNK ? n - c0 : YL__CHUNK;                        \
            for (int64_t q = 0; q < len; q++) {                                           \
                double t = to[c0 + q], x = e[c0 + q], w = ig[c0 + q];                     \
                /* everything computed, then selected by exact 0/1 factors (w is 0 or 1):  \
                 * no branch, so it vectorises (with -fno-trapping-math, core.mk) */      \
                double one_x = 1.0 + x, series = x - x * x / 2;                           \
                double s = (t >= 0 ? 1.0 : x) / one_x;                                    \
                double big = x >= 0x1p-20 ? 1.0 : 0.0;                                    \
                s_o[c0 + q] = s;                                                          \
                nb[q] = m[c0 + q] * s;                                                    \
                li[q] = w * (t > 0 ? t : 0.0);                                            \
                fa[q] = 1.0 + (w * big) * x;                                              \
                sm[q] = (w * (1.0 - big)) * series;                                       \
            }                                                                             \
            for (int64_t q = 0; q < len; q += 4)                                          \
                for (int k = 0; k < 4; k++) {                                             \
                    acc->noobj[k] += nb[q + k];                                           \
                    acc->linear[k] += li[q + k];                                          \
                    acc->prod[k] *= fa[q + k];                                            \
                    acc->small[k] += sm[q + k];                                           \
                }                                                                         \
            acc->blocks += (int)(len / 4);                                                \
            if (acc->blocks >= YL__LOG_BLOCKS) {                                          \
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
YL__DEF_EXP(exp_scalar, YL__ATTR_SCALAR)
YL__DEF_READ_ROW(read_row_scalar, YL__ATTR_SCALAR)
YL__DEF_ADMIT(admit_scalar, YL__ATTR_SCALAR)
YL__DEF_DECODE(decode_scalar, YL__ATTR_SCALAR)
YL__DEF_REACH(reach_scalar, YL__ATTR_SCALAR)

static const yl__kernels scalar_kernels = {"scalar",      read_row_scalar, gather_scalar,
                                           exp_scalar,    noobj_scalar,    admit_scalar,
                                           decode_scalar, reach_scalar};

#if defined(__x86_64__) && defined(__GNUC__)
#define YL__ATTR_AVX2 __attribute__((target("avx2")))
YL__DEF_GATHER(gather_avx2, YL__ATTR_AVX2)
YL__DEF_NOOBJ(noobj_avx2, YL__ATTR_AVX2)
YL__DEF_EXP(exp_avx2, YL__ATTR_AVX2)
YL__DEF_READ_ROW(read_row_avx2, YL__ATTR_AVX2)
YL__DEF_ADMIT(admit_avx2, YL__ATTR_AVX2)
YL__DEF_DECODE(decode_avx2, YL__ATTR_AVX2)
YL__DEF_REACH(reach_avx2, YL__ATTR_AVX2)

static const yl__kernels avx2_kernels = {"avx2",     read_row_avx2, gather_avx2, exp_avx2,
                                         noobj_avx2, admit_avx2,    decode_avx2,
                                         reach_avx2};
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

void yl__exp_neg_abs(const double *x, double *out, int64_t n) { exp_scalar(x, out, n); }
