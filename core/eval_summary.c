/* COCOeval.summarize(): its 12 stats (one table row each) and the lines it prints. */
#include <stdio.h>
#include <string.h>

#include "eval_internal.h"

/* _summarizeDets: ap (1: precision, 0: recall), iouThr (0: all), areaRng label, maxDets
 * (a literal 100, or -1 - i for params.maxDets[i]). */
static const struct {
    int ap;
    double iou;
    const char *area;
    int64_t max_dets;
} rows[12] = {
    {1, 0, "all", 100},        {1, .5, "all", -3},      {1, .75, "all", -3},
    {1, 0, "small", -3},       {1, 0, "medium", -3},    {1, 0, "large", -3},
    {0, 0, "all", -1},         {0, 0, "all", -2},       {0, 0, "all", -3},
    {0, 0, "small", -3},       {0, 0, "medium", -3},    {0, 0, "large", -3},
};

static int64_t row_max_dets(const yle_params *p, int i) {
    return rows[i].max_dets >= 0 ? rows[i].max_dets : p->max_dets[-rows[i].max_dets - 1];
}

/* _summarize(ap, iouThr, areaRng, maxDets) */
static int summarize_one(const yle_params *p, const double *precision, const double *recall,
                         int i, double *vals, double *out, yle_error *err) {
    int64_t T = p->n_iou, R = p->n_rec, K = yle__num_k(p), A = p->n_area, M = p->n_max_dets;
    int64_t md = row_max_dets(p, i);
    int tsel[YLE_MAX_T], aind[YLE_MAX_A], mind[YLE_MAX_M], nt = 0, na = 0, nm = 0;
    for (int t = 0; t < T; t++)
        if (rows[i].iou == 0 || p->iou_thrs[t] == rows[i].iou) /* np.where(iouThr == iouThrs) */
            tsel[nt++] = t;
    for (int a = 0; a < A; a++)
        if (strcmp(p->area_lbl[a], rows[i].area) == 0)
            aind[na++] = a;
    for (int m = 0; m < M; m++)
        if (p->max_dets[m] == md)
            mind[nm++] = m;
    /* s[..., aind, mind]: two index lists broadcast together (pairs), as numpy does */
    int np_ = na > nm ? na : nm;
    if (na != nm && na != 1 && nm != 1)
        return yle__fail(err, YLE_EPARAM, "area_lbl", i,
                         "summarize line %d: %d area ranges labelled '%s' and %d maxDets of %lld "
                         "do not broadcast (pycocotools raises IndexError)",
                         i, na, rows[i].area, nm, (long long)md);
    if (na == 0 || nm == 0)
        np_ = 0;
    /* the selected values > -1 in C order of s, copied to vals and summed as np.mean
     * sums (one pairwise sum of the contiguous selection) */
    int64_t inner = rows[i].ap ? R * K : K;
    int64_t count = 0;
    for (int ti = 0; ti < nt; ti++)
        for (int64_t j = 0; j < inner; j++)
            for (int q = 0; q < np_; q++) {
                int64_t a = aind[na == 1 ? 0 : q], m = mind[nm == 1 ? 0 : q];
                double v;
                if (rows[i].ap) {
                    int64_t r = j / K, k = j % K;
                    v = precision[(((tsel[ti] * R + r) * K + k) * A + a) * M + m];
                } else {
                    v = recall[((tsel[ti] * K + j) * A + a) * M + m];
                }
                if (v > -1)
                    vals[count++] = v;
            }
    *out = count == 0 ? -1 : yle__pairwise_sum(vals, count) / (double)count;
    return YLE_OK;
}

int64_t yle_summarize_work(const yle_params *p) {
    if (!p || p->convention != YLE_COCO)
        return 0;
    int64_t AM = p->n_area > p->n_max_dets ? p->n_area : p->n_max_dets;
    return (int64_t)p->n_iou * p->n_rec * yle__num_k(p) * AM;
}

int yle_summarize(const yle_params *p, const double *precision, const double *recall,
                  double *work, double stats[12], yle_error *err) {
    int rc = yle_params_check(p, err);
    if (rc)
        return rc;
    if (p->convention != YLE_COCO)
        return yle__fail(err, YLE_EPARAM, "convention", -1, "summarize is for \"coco\"");
    if (p->n_max_dets < 3)
        return yle__fail(err, YLE_EPARAM, "max_dets", -1,
                         "summarize needs 3 maxDets (pycocotools reads maxDets[2]), not %d",
                         p->n_max_dets);
    if (!precision || !recall || !stats || (!work && yle_summarize_work(p) > 0))
        return yle__fail(err, YLE_EINVAL, "summarize", -1, "summarize: NULL array");
    for (int i = 0; i < 12; i++)
        if ((rc = summarize_one(p, precision, recall, i, work, &stats[i], err)))
            return rc;
    return YLE_OK;
}

int yle_summary_line(const yle_params *p, int i, double value, char *buf, size_t size) {
    if (!p || i < 0 || i >= 12 || p->n_max_dets < 3)
        return -1;
    char iou[32];
    if (rows[i].iou == 0)
        snprintf(iou, sizeof iou, "%0.2f:%0.2f", p->iou_thrs[0], p->iou_thrs[p->n_iou - 1]);
    else
        snprintf(iou, sizeof iou, "%0.2f", rows[i].iou);
    /* ' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}' */
    return snprintf(buf, size, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3lld ] = %0.3f",
                    rows[i].ap ? "Average Precision" : "Average Recall",
                    rows[i].ap ? "(AP)" : "(AR)", iou, rows[i].area,
                    (long long)row_max_dets(p, i), value);
}
