/* One table of error codes (YL_ERRNO_MAP in yololoss.h) and the context-carrying yl_error. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *yl_strerror(int code) {
    switch (code) {
    case YL_OK:
        return "success";
#define YL__ERR_TEXT(name, c, text) \
    case YL_##name:                 \
        return text;
        YL_ERRNO_MAP(YL__ERR_TEXT)
#undef YL__ERR_TEXT
    }
    return "unknown error";
}

const char *yl_err_name(int code) {
    switch (code) {
    case YL_OK:
        return "YL_OK";
#define YL__ERR_NAME(name, c, text) \
    case YL_##name:                 \
        return "YL_" #name;
        YL_ERRNO_MAP(YL__ERR_NAME)
#undef YL__ERR_NAME
    }
    return "YL_UNKNOWN";
}

int yl__fail(yl_error *err, int code, const char *tensor, int64_t image, int64_t index,
             const char *fmt, ...) {
    if (!err)
        return code;
    err->code = code;
    snprintf(err->tensor, sizeof err->tensor, "%s", tensor ? tensor : "");
    err->image = image;
    err->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void yl__format_index(const yl_tensor *t, int64_t flat, char *buf, size_t size) {
    int64_t idx[YL_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = flat % t->shape[d];
        flat /= t->shape[d];
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int d = 0; d < t->ndim && used < size; d++) {
        int w = snprintf(buf + used, size - used, "[%lld]", (long long)idx[d]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

const char *yl__nonfinite_name(double v) {
    if (isnan(v))
        return "NaN";
    return v > 0 ? "+Inf" : "-Inf";
}

int yl__fail_nonfinite(yl_error *err, const char *name, const yl_tensor *t, int64_t b,
                       int64_t flat) {
    char where[96];
    yl__format_index(t, flat, where, sizeof where);
    return yl__fail(err, YL_ENONFINITE, name, b, flat, "%s%s is %s", name, where,
                    yl__nonfinite_name(yl__load(t->data, t->dtype, flat)));
}
