/* The evaluator's tables (errors, conventions), parameters and their checks. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "eval_internal.h"

const char *yle_strerror(int code) {
    switch (code) {
    case YLE_OK:
        return "success";
#define YLE__ERR_TEXT(name, c, text) \
    case YLE_##name:                 \
        return text;
        YLE_ERRNO_MAP(YLE__ERR_TEXT)
#undef YLE__ERR_TEXT
    }
    return "unknown error";
}

const char *yle_err_name(int code) {
    switch (code) {
    case YLE_OK:
        return "YLE_OK";
#define YLE__ERR_NAME(name, c, text) \
    case YLE_##name:                 \
        return "YLE_" #name;
        YLE_ERRNO_MAP(YLE__ERR_NAME)
#undef YLE__ERR_NAME
    }
    return "YLE_UNKNOWN";
}

int yle__fail(yle_error *err, int code, const char *what, int64_t index, const char *fmt, ...) {
    if (!err)
        return code;
    err->code = code;
    snprintf(err->what, sizeof err->what, "%s", what ? what : "");
    err->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

static const char *const conv_names[] = {
#define YLE__CONV_NAME(name, str, text) str,
    YLE_CONVENTION_MAP(YLE__CONV_NAME)
#undef YLE__CONV_NAME
};

const char *yle_convention_name(int convention) {
    if (convention < 0 || convention >= YLE_N_CONVENTIONS)
        return NULL;
    return conv_names[convention];
}

int yle_convention_from_name(const char *name) {
    for (int c = 0; name && c < YLE_N_CONVENTIONS; c++)
        if (strcmp(name, conv_names[c]) == 0)
            return c;
    return -1;
}

int yle_linspace(double start, double stop, int num, double *out) {
    if (num < 1 || num > YLE_MAX_R || !out)
        return YLE_EINVAL;
    /* numpy 1.24 function_base.linspace: y = arange(num) * step + start (or
     * arange(num) / div * delta when step is 0), then y[-1] = stop. */
    int div = num - 1;
    double delta = stop - start;
    if (div == 0) {
        out[0] = 0.0 * delta + start;
        return YLE_OK;
    }
    double step = delta / div;
    for (int i = 0; i < num; i++)
        out[i] = (step == 0 ? (double)i / div * delta : (double)i * step) + start;
    out[num - 1] = stop;
    return YLE_OK;
}

int yle_params_default(yle_params *p, int convention) {
    if (!p || !yle_convention_name(convention))
        return YLE_EINVAL;
    memset(p, 0, sizeof *p);
    p->convention = convention;
    p->use_cats = 1;
    if (convention != YLE_COCO) {
        p->n_iou = 1;
        p->iou_thrs[0] = 0.5; /* voc_eval's ovthresh */
        return YLE_OK;
    }
    /* Params.setDetParams: linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1) is 10
     * values, linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1) 101. */
    p->n_iou = 10;
    yle_linspace(0.5, 0.95, 10, p->iou_thrs);
    p->n_rec = 101;
    yle_linspace(0.0, 1.0, 101, p->rec_thrs);
    p->n_max_dets = 3;
    p->max_dets[0] = 1;
    p->max_dets[1] = 10;
    p->max_dets[2] = 100;
    static const double rng[4][2] = {{0.0, 1e10}, {0.0, 1024.0}, {1024.0, 9216.0}, {9216.0, 1e10}};
    static const char *const lbl[4] = {"all", "small", "medium", "large"};
    p->n_area = 4;
    for (int a = 0; a < 4; a++) {
        p->area_rng[a][0] = rng[a][0];
        p->area_rng[a][1] = rng[a][1];
        snprintf(p->area_lbl[a], YLE_LABEL, "%s", lbl[a]);
    }
    return YLE_OK;
}

int64_t yle_find_id(const int64_t *ids, int64_t n, int64_t id) {
    if (n <= 0)
        return -1;
    /* branch-free lower bound: the comparisons of ids are not predictable */
    const int64_t *base = ids;
    int64_t len = n;
    while (len > 1) {
        int64_t half = len / 2;
        base = base[half - 1] < id ? base + half : base;
        len -= half;
    }
    int64_t lo = (base - ids) + (*base < id);
    return (lo < n && ids[lo] == id) ? lo : -1;
}

int64_t yle__num_k(const yle_params *p) {
    return (p->convention == YLE_COCO && !p->use_cats) ? 1 : p->n_cat;
}

static int check_ids(const int64_t *ids, int64_t n, const char *name, yle_error *err) {
    if (n < 0 || n > INT32_MAX)
        return yle__fail(err, YLE_EPARAM, name, -1, "params.%s: count %lld is not in [0, 2^31)",
                         name, (long long)n);
    if (n > 0 && !ids)
        return yle__fail(err, YLE_EPARAM, name, -1, "params.%s: NULL with %lld ids", name,
                         (long long)n);
    for (int64_t i = 1; i < n; i++)
        if (ids[i] <= ids[i - 1])
            return yle__fail(err, YLE_EPARAM, name, i,
                             "params.%s[%lld]: %lld is not greater than the id before it (ids "
                             "must be sorted and unique)",
                             name, (long long)i, (long long)ids[i]);
    return YLE_OK;
}

int yle_params_check(const yle_params *p, yle_error *err) {
    int rc = yle__params_check_values(p, err);
    if (rc)
        return rc;
    if ((rc = check_ids(p->img_ids, p->n_img, "img_ids", err)) ||
        (rc = check_ids(p->cat_ids, p->n_cat, "cat_ids", err)) ||
        (rc = check_ids(p->known_cat_ids, p->n_known_cat, "known_cat_ids", err)))
        return rc;
    return YLE_OK;
}

/* Everything but the id arrays' order: O(1) in the ids, so yle_image (called once per
 * image) runs it; an unsorted id array gives wrong answers there but reads nothing out of
 * bounds, and yle_params_check / yle_accumulate refuse it. */
int yle__params_check_values(const yle_params *p, yle_error *err) {
    if (!p)
        return yle__fail(err, YLE_EINVAL, "params", -1, "params is NULL");
    if (!yle_convention_name(p->convention))
        return yle__fail(err, YLE_EPARAM, "convention", -1,
                         "params.convention: %d is not coco, voc07 or voc", p->convention);
    if (p->n_iou < 1 || p->n_iou > YLE_MAX_T)
        return yle__fail(err, YLE_EPARAM, "iou_thrs", -1,
                         "params.iou_thrs: %d thresholds, not in [1, %d]", p->n_iou, YLE_MAX_T);
    for (int t = 0; t < p->n_iou; t++)
        if (!isfinite(p->iou_thrs[t]))
            return yle__fail(err, YLE_EPARAM, "iou_thrs", t, "params.iou_thrs[%d] is not finite", t);
    struct {
        const int64_t *ids;
        int64_t n;
        const char *name;
    } arr[3] = {{p->img_ids, p->n_img, "img_ids"}, {p->cat_ids, p->n_cat, "cat_ids"},
                {p->known_cat_ids, p->n_known_cat, "known_cat_ids"}};
    for (int i = 0; i < 3; i++)
        if (arr[i].n < 0 || arr[i].n > INT32_MAX || (arr[i].n > 0 && !arr[i].ids))
            return check_ids(arr[i].ids, arr[i].n, arr[i].name, err);
    if (p->convention != YLE_COCO)
        return YLE_OK;
    if (p->n_rec < 1 || p->n_rec > YLE_MAX_R)
        return yle__fail(err, YLE_EPARAM, "rec_thrs", -1,
                         "params.rec_thrs: %d thresholds, not in [1, %d]", p->n_rec, YLE_MAX_R);
    for (int r = 0; r < p->n_rec; r++)
        if (!isfinite(p->rec_thrs[r]))
            return yle__fail(err, YLE_EPARAM, "rec_thrs", r, "params.rec_thrs[%d] is not finite", r);
    if (p->n_max_dets < 1 || p->n_max_dets > YLE_MAX_M)
        return yle__fail(err, YLE_EPARAM, "max_dets", -1,
                         "params.max_dets: %d entries, not in [1, %d]", p->n_max_dets, YLE_MAX_M);
    for (int m = 0; m < p->n_max_dets; m++)
        if (p->max_dets[m] < 0 || p->max_dets[m] > INT32_MAX ||
            (m > 0 && p->max_dets[m] < p->max_dets[m - 1]))
            return yle__fail(err, YLE_EPARAM, "max_dets", m,
                             "params.max_dets[%d]: %lld (must be in [0, 2^31) and not below the "
                             "entry before it: pycocotools sorts them)",
                             m, (long long)p->max_dets[m]);
    if (p->n_area < 1 || p->n_area > YLE_MAX_A)
        return yle__fail(err, YLE_EPARAM, "area_rng", -1,
                         "params.area_rng: %d ranges, not in [1, %d]", p->n_area, YLE_MAX_A);
    for (int a = 0; a < p->n_area; a++) {
        if (isnan(p->area_rng[a][0]) || isnan(p->area_rng[a][1]))
            return yle__fail(err, YLE_EPARAM, "area_rng", a, "params.area_rng[%d] is NaN", a);
        if (!memchr(p->area_lbl[a], 0, YLE_LABEL))
            return yle__fail(err, YLE_EPARAM, "area_lbl", a,
                             "params.area_lbl[%d] is not NUL-terminated", a);
    }
    if (p->use_cats != 0 && p->use_cats != 1)
        return yle__fail(err, YLE_EPARAM, "use_cats", -1, "params.use_cats: %d is not 0 or 1",
                         p->use_cats);
    return YLE_OK;
}
