/* Element types: fp32, fp16, bf16, fp64, little-endian, converted exactly to double. */
#include <math.h>
#include <string.h>

#include "internal.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [YL_F32] = {"FP32", 4},
    [YL_F16] = {"FP16", 2},
    [YL_BF16] = {"BF16", 2},
    [YL_F64] = {"FP64", 8},
};

size_t yl_dtype_size(int dtype) {
    return dtype >= YL_F32 && dtype <= YL_F64 ? dtype_info[dtype].size : 0;
}

const char *yl_dtype_name(int dtype) {
    return dtype >= YL_F32 && dtype <= YL_F64 ? dtype_info[dtype].name : NULL;
}

int yl_dtype_from_name(const char *name) {
    for (int d = YL_F32; d <= YL_F64; d++)
        if (name && strcmp(name, dtype_info[d].name) == 0)
            return d;
    return -1;
}

double yl_half_to_double(uint16_t h) {
    int exp = (h >> 10) & 0x1f;
    int mant = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp((double)mant, -24); /* subnormal (or zero) */
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp((double)(mant | 0x400), exp - 25);
    return (h & 0x8000) ? -v : v;
}

double yl_bf16_to_double(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return (double)f;
}

uint16_t yl_double_to_half(double x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    if (isnan(x))
        return sign | 0x7e00;
    if (a >= 65520.0) /* rounds to infinity */
        return sign | 0x7c00;
    if (a < ldexp(1.0, -14)) {
        /* subnormal: units of 2^-24, nearbyint rounds to nearest even */
        return sign | (uint16_t)nearbyint(a * ldexp(1.0, 24));
    }
    int e;
    double m = frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    double q = nearbyint(m * 2048.0); /* 11 significant bits */
    if (q == 2048.0) {
        q = 1024.0;
        e++;
    }
    int biased = e - 1 + 15;
    if (biased >= 31)
        return sign | 0x7c00;
    return sign | (uint16_t)(biased << 10) | (uint16_t)((int)q - 1024);
}

/* Rounded once, from the double: going through float first would round twice
 * (1 + 2^-8 + 2^-40 -> float 1 + 2^-8, a tie, -> 0x3f80 instead of 0x3f81). */
uint16_t yl_double_to_bf16(double x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    if (isnan(x))
        return sign | 0x7fc0;
    if (a < 0x1p-126) /* subnormal: units of 2^-133; 128 units carry into the exponent */
        return sign | (uint16_t)nearbyint(a * 0x1p133);
    int e;
    double m = frexp(a, &e);        /* a = m * 2^e, m in [0.5, 1); inf: m = inf */
    if (isinf(m) || e > 128)
        return sign | 0x7f80;
    double q = nearbyint(m * 256.0); /* 8 significant bits, ties to even */
    if (q == 256.0) {
        q = 128.0;
        e++;
    }
    int biased = e - 1 + 127;
    if (biased >= 255)
        return sign | 0x7f80;
    return sign | (uint16_t)(biased << 7) | (uint16_t)((int)q - 128);
}

double yl__load(const void *base, int dtype, int64_t i) {
    const unsigned char *p = base;
    switch (dtype) {
    case YL_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return (double)f;
    }
    case YL_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return yl_half_to_double(h);
    }
    case YL_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return yl_bf16_to_double(h);
    }
    default: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return d;
    }
    }
}
