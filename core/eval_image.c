/* yle_image: one image's evaluation, a pure function of its truths and detections.
 * "coco" is COCOeval.computeIoU + evaluateImg (bbox) for every category and area range;
 * "voc*" is voc_eval.py's matching loop restricted to the image (its det flags are per
 * image, and the global score order restricted to one image is the image's own order). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "eval_internal.h"

static int is_voc(const yle_params *p) { return p->convention != YLE_COCO; }

/* The most detections a group keeps: maxDets[-1] ("coco"), all ("voc*"). */
static int64_t det_cap(const yle_params *p, int64_t n_dt) {
    if (is_voc(p))
        return n_dt;
    int64_t m = p->max_dets[p->n_max_dets - 1];
    return n_dt < m ? n_dt : m;
}

/* Scratch layout, in this order. */
typedef struct {
    int32_t *gk, *dk;      /* category index of each truth / detection, -1: left out */
    int32_t *gord, *dord;  /* kept truths / detections sorted by (k, input index) */
    int32_t *tmp;          /* the sort's */
    double *key;           /* sort keys */
    int32_t *gsort;        /* a group's truths, ignored last (evaluateImg's gtind) */
    uint8_t *gig;          /* their _ignore flags, in gsort order */
    uint64_t *gtm;         /* bit t: truth (gsort position) matched at iou_thrs[t] */
    double *iou;           /* a group's IoU matrix, D x G in input truth order */
} scratch_t;

static size_t layout(const yle_params *p, int64_t n_gt, int64_t n_dt, char *base,
                     scratch_t *s) {
    int64_t nmax = n_gt > n_dt ? n_gt : n_dt;
    int64_t cap = det_cap(p, n_dt);
    if (n_gt > 0 && cap > INT64_MAX / n_gt)
        return SIZE_MAX;
    const yle__part parts[] = {
        {(void **)&s->gk, n_gt, 4},   {(void **)&s->dk, n_dt, 4},    {(void **)&s->gord, n_gt, 4},
        {(void **)&s->dord, n_dt, 4}, {(void **)&s->tmp, nmax, 4},   {(void **)&s->key, nmax, 8},
        {(void **)&s->gsort, n_gt, 4}, {(void **)&s->gig, n_gt, 1},  {(void **)&s->gtm, n_gt, 8},
        {(void **)&s->iou, cap * n_gt, 8},
    };
    return yle__carve(parts, sizeof parts / sizeof parts[0], base);
}

int yle_image_bounds(const yle_params *p, int64_t n_gt, int64_t n_dt, yle_image_size *out) {
    if (!p || !out || n_gt < 0 || n_dt < 0)
        return YLE_EINVAL;
    if (n_gt > INT32_MAX || n_dt > INT32_MAX)
        return YLE_EOVERFLOW;
    int64_t A = is_voc(p) ? 1 : p->n_area;
    int64_t K = yle__num_k(p);
    int64_t present = n_gt + n_dt < K ? n_gt + n_dt : K;
    out->groups = present * A;
    out->recs = n_dt * A;
    scratch_t s;
    out->scratch = layout(p, n_gt, n_dt, NULL, &s);
    return out->scratch == SIZE_MAX ? YLE_EOVERFLOW : YLE_OK;
}

static int check_box(const double *box, int voc, const char *what, int64_t i, yle_error *err) {
    static const char *const coco_names[4] = {"x", "y", "width", "height"};
    static const char *const voc_names[4] = {"xmin", "ymin", "xmax", "ymax"};
    for (int c = 0; c < 4; c++)
        if (!isfinite(box[c]))
            return yle__fail(err, YLE_ENONFINITE, what, i, "%s[%lld].box[%d] (%s) is %s", what,
                             (long long)i, c, (voc ? voc_names : coco_names)[c],
                             isnan(box[c]) ? "NaN" : "infinite");
    for (int c = 2; c < 4; c++) {
        double size = voc ? box[c] - box[c - 2] : box[c];
        if (size < 0)
            return yle__fail(err, YLE_ESIZE, what, i, "%s[%lld].box[%d]: %s %.17g is negative", what,
                             (long long)i, c, voc ? (c == 2 ? "xmax - xmin" : "ymax - ymin")
                                                  : coco_names[c], size);
    }
    return YLE_OK;
}

static int check_cat(const yle_params *p, int64_t cat, const char *what, int64_t i,
                     yle_error *err) {
    if (p->known_cat_ids && yle_find_id(p->known_cat_ids, p->n_known_cat, cat) < 0)
        return yle__fail(err, YLE_ECATEGORY, what, i,
                         "%s[%lld].category_id: %lld is not a category of the dataset", what,
                         (long long)i, (long long)cat);
    return YLE_OK;
}

static int check_inputs(const yle_params *p, const yle_truth *gt, int64_t n_gt,
                        const yle_det *dt, int64_t n_dt, yle_error *err) {
    int voc = is_voc(p), rc;
    for (int64_t i = 0; i < n_gt; i++) {
        if ((rc = check_box(gt[i].box, voc, "truth", i, err)))
            return rc;
        if (!voc && !isfinite(gt[i].area))
            return yle__fail(err, YLE_ENONFINITE, "truth", i, "truth[%lld].area is %s",
                             (long long)i, isnan(gt[i].area) ? "NaN" : "infinite");
        if (!voc && gt[i].area < 0)
            return yle__fail(err, YLE_ESIZE, "truth", i, "truth[%lld].area: %.17g is negative",
                             (long long)i, gt[i].area);
        if ((rc = check_cat(p, gt[i].category_id, "truth", i, err)))
            return rc;
    }
    for (int64_t i = 0; i < n_dt; i++) {
        if ((rc = check_box(dt[i].box, voc, "det", i, err)))
            return rc;
        double s = dt[i].score;
        if (!(s >= 0 && s <= 1))
            return yle__fail(err, YLE_ESCORE, "det", i, "det[%lld].score: %.17g is outside [0, 1]",
                             (long long)i, s);
        if ((rc = check_cat(p, dt[i].category_id, "det", i, err)))
            return rc;
    }
    return YLE_OK;
}

/* maskApi.c bbIou for one pair, in its operation order. */
static double bb_iou(const double *D, const double *G, int crowd) {
    double w = fmin(D[2] + D[0], G[2] + G[0]) - fmax(D[0], G[0]);
    if (w <= 0)
        return 0;
    double h = fmin(D[3] + D[1], G[3] + G[1]) - fmax(D[1], G[1]);
    if (h <= 0)
        return 0;
    double i = w * h, da = D[2] * D[3], ga = G[2] * G[3];
    double u = crowd ? da : da + ga - i;
    return i / u;
}

/* voc_eval.py's overlap of detection bb with truth g (+1 pixel, its operation order). */
static double voc_iou(const double *bb, const double *g) {
    double ixmin = fmax(g[0], bb[0]), iymin = fmax(g[1], bb[1]);
    double ixmax = fmin(g[2], bb[2]), iymax = fmin(g[3], bb[3]);
    double iw = fmax(ixmax - ixmin + 1., 0.), ih = fmax(iymax - iymin + 1., 0.);
    double inters = iw * ih;
    double uni = (bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                 (g[2] - g[0] + 1.) * (g[3] - g[1] + 1.) - inters;
    return inters / uni;
}

/* One (category, area range) of "coco": evaluateImg's matching. G truths gidx (input
 * order), D detections didx (score order, already cut at maxDets[-1]). */
static void coco_group(const yle_params *p, const yle_truth *gt, const yle_det *dt,
                       const int32_t *gidx, int64_t G, const int32_t *didx, int64_t D, int a,
                       const scratch_t *s, yle_det_rec *rec, int32_t *n_gt_out) {
    double lo = p->area_rng[a][0], hi = p->area_rng[a][1];
    /* _ignore = iscrowd or area outside [lo, hi]; gtind = argsort(_ignore, mergesort) */
    for (int64_t g = 0; g < G; g++) {
        const yle_truth *t = &gt[gidx[g]];
        s->key[g] = (t->iscrowd || t->area < lo || t->area > hi) ? 1.0 : 0.0;
        s->gsort[g] = (int32_t)g;
    }
    yle__sort_idx(s->gsort, s->tmp, G, s->key);
    int32_t npig = 0;
    for (int64_t g = 0; g < G; g++) {
        s->gig[g] = s->key[s->gsort[g]] != 0;
        npig += !s->gig[g];
        s->gtm[g] = 0;
    }
    *n_gt_out = npig;
    for (int64_t d = 0; d < D; d++) {
        const yle_det *x = &dt[didx[d]];
        rec[d].score = x->score;
        rec[d].tp = rec[d].fp = 0;
        rec[d].det = didx[d];
        rec[d].gt = -1;
    }
    for (int t = 0; t < p->n_iou; t++) {
        uint64_t bit = (uint64_t)1 << t;
        double start = p->iou_thrs[t];
        if (1 - 1e-10 < start) /* Python's min([t, 1-1e-10]) */
            start = 1 - 1e-10;
        for (int64_t d = 0; d < D; d++) {
            const double *row = s->iou + d * G;
            double iou = start;
            int64_t m = -1;
            for (int64_t gi = 0; gi < G; gi++) {
                int32_t g = s->gsort[gi];
                if ((s->gtm[gi] & bit) && !gt[gidx[g]].iscrowd)
                    continue;
                if (m > -1 && !s->gig[m] && s->gig[gi])
                    break;
                if (row[g] < iou)
                    continue; /* an equal IoU replaces m: the later truth wins */
                iou = row[g];
                m = gi;
            }
            int matched = 0, ignore = 0; /* dtm != 0, dtIg */
            if (m > -1) {
                const yle_truth *mt = &gt[gidx[s->gsort[m]]];
                ignore = s->gig[m];
                matched = mt->id != 0; /* dtm stores the truth's id: id 0 reads as no match */
                s->gtm[m] |= bit;
                if (t == 0)
                    rec[d].gt = gidx[s->gsort[m]];
            }
            if (!matched) {
                const double *b = dt[didx[d]].box;
                double area = b[2] * b[3];
                if (area < lo || area > hi)
                    ignore = 1;
            }
            if (!ignore) {
                if (matched)
                    rec[d].tp |= bit;
                else
                    rec[d].fp |= bit;
            }
        }
    }
}

/* One class of "voc*": voc_eval's loop over the image's detections of the class. */
static void voc_group(const yle_params *p, const yle_truth *gt, const yle_det *dt,
                      const int32_t *gidx, int64_t G, const int32_t *didx, int64_t D,
                      const scratch_t *s, yle_det_rec *rec, int32_t *n_gt_out) {
    int32_t npos = 0;
    for (int64_t g = 0; g < G; g++) {
        npos += !gt[gidx[g]].difficult;
        s->gtm[g] = 0;
    }
    *n_gt_out = npos;
    for (int64_t d = 0; d < D; d++) {
        rec[d].score = dt[didx[d]].score;
        rec[d].tp = rec[d].fp = 0;
        rec[d].det = didx[d];
        rec[d].gt = -1;
    }
    for (int64_t d = 0; d < D; d++) {
        const double *row = s->iou + d * G;
        double ovmax = -INFINITY;
        int64_t jmax = 0;
        for (int64_t g = 0; g < G; g++)
            if (row[g] > ovmax) { /* np.argmax: the first maximum */
                ovmax = row[g];
                jmax = g;
            }
        for (int t = 0; t < p->n_iou; t++) {
            uint64_t bit = (uint64_t)1 << t;
            if (ovmax > p->iou_thrs[t]) {
                if (!gt[gidx[jmax]].difficult) {
                    if (!(s->gtm[jmax] & bit)) {
                        rec[d].tp |= bit;
                        s->gtm[jmax] |= bit;
                        if (t == 0)
                            rec[d].gt = gidx[jmax];
                    } else {
                        rec[d].fp |= bit;
                    }
                }
            } else {
                rec[d].fp |= bit;
            }
        }
    }
}

int yle_image(const yle_params *p, int64_t image_id, const yle_truth *gt, int64_t n_gt,
              const yle_det *dt, int64_t n_dt, yle_group *groups, int64_t max_groups,
              yle_det_rec *recs, int64_t max_recs, void *scratch, size_t scratch_size,
              yle_image_result *out, yle_error *err) {
    int rc = yle__params_check_values(p, err);
    if (rc)
        return rc;
    if (!out || n_gt < 0 || n_dt < 0 || (n_gt && !gt) || (n_dt && !dt))
        return yle__fail(err, YLE_EINVAL, "image", -1, "yle_image: NULL or negative argument");
    yle_image_size sz;
    if ((rc = yle_image_bounds(p, n_gt, n_dt, &sz)))
        return yle__fail(err, rc, "image", -1, "image %lld: %lld truths and %lld detections are "
                         "too many", (long long)image_id, (long long)n_gt, (long long)n_dt);
    if (scratch_size < sz.scratch || (sz.scratch && !scratch) || max_groups < sz.groups ||
        max_recs < sz.recs || (sz.groups && !groups) || (sz.recs && !recs))
        return yle__fail(err, YLE_ESPACE, "image", -1,
                         "image %lld: buffers too small (need %lld groups, %lld recs, %zu "
                         "scratch bytes)", (long long)image_id, (long long)sz.groups,
                         (long long)sz.recs, sz.scratch);
    if ((rc = check_inputs(p, gt, n_gt, dt, n_dt, err)))
        return rc;
    out->image_id = image_id;
    out->groups = groups;
    out->recs = recs;
    out->n_groups = out->n_recs = 0;
    if (yle_find_id(p->img_ids, p->n_img, image_id) < 0)
        return YLE_OK; /* not in imgIds: pycocotools never looks at it */

    scratch_t s;
    layout(p, n_gt, n_dt, scratch, &s);
    int voc = is_voc(p);
    int per_cat = voc || p->use_cats;
    /* Keep the truths and detections of categories in cat_ids, sorted by (k, input index):
     * with use_cats 0 pycocotools concatenates them category by category in catIds order. */
    int64_t ng = 0, nd = 0;
    for (int64_t i = 0; i < n_gt; i++) {
        int64_t k = yle_find_id(p->cat_ids, p->n_cat, gt[i].category_id);
        if (k >= 0) {
            s.key[i] = (double)k;
            s.gord[ng++] = (int32_t)i;
        }
    }
    yle__sort_idx(s.gord, s.tmp, ng, s.key);
    for (int64_t i = 0; i < ng; i++)
        s.gk[i] = (int32_t)s.key[s.gord[i]];
    for (int64_t i = 0; i < n_dt; i++) {
        int64_t k = yle_find_id(p->cat_ids, p->n_cat, dt[i].category_id);
        if (k >= 0) {
            s.key[i] = (double)k;
            s.dord[nd++] = (int32_t)i;
        }
    }
    yle__sort_idx(s.dord, s.tmp, nd, s.key);
    for (int64_t i = 0; i < nd; i++)
        s.dk[i] = (int32_t)s.key[s.dord[i]];

    int A = voc ? 1 : p->n_area;
    int64_t gi = 0, di = 0, ngroups = 0, nrecs = 0;
    while (gi < ng || di < nd) {
        /* the next group: category k (per_cat), or everything (use_cats 0) */
        int64_t g0 = gi, d0 = di, k = 0;
        if (per_cat) {
            k = gi < ng ? s.gk[gi] : INT32_MAX;
            if (di < nd && s.dk[di] < k)
                k = s.dk[di];
            while (gi < ng && s.gk[gi] == k)
                gi++;
            while (di < nd && s.dk[di] == k)
                di++;
        } else {
            gi = ng;
            di = nd;
        }
        int64_t G = gi - g0, Dall = di - d0;
        const int32_t *gidx = s.gord + g0;
        int32_t *didx = s.dord + d0;
        /* score descending, stable: argsort(-score, kind='mergesort') */
        for (int64_t d = 0; d < Dall; d++)
            s.key[didx[d]] = -dt[didx[d]].score;
        yle__sort_idx(didx, s.tmp, Dall, s.key);
        int64_t D = det_cap(p, Dall);
        for (int64_t d = 0; d < D; d++)
            for (int64_t g = 0; g < G; g++)
                s.iou[d * G + g] = voc ? voc_iou(dt[didx[d]].box, gt[gidx[g]].box)
                                       : bb_iou(dt[didx[d]].box, gt[gidx[g]].box,
                                                gt[gidx[g]].iscrowd != 0);
        for (int a = 0; a < A; a++) {
            yle_group *grp = &groups[ngroups];
            grp->k = (int32_t)k;
            grp->a = a;
            grp->n_det = (int32_t)D;
            grp->first = nrecs;
            grp->reserved = 0;
            if (voc)
                voc_group(p, gt, dt, gidx, G, didx, D, &s, recs + nrecs, &grp->n_gt);
            else
                coco_group(p, gt, dt, gidx, G, didx, D, a, &s, recs + nrecs, &grp->n_gt);
            if (grp->n_gt == 0 && D == 0)
                continue; /* adds nothing to any sum: not stored */
            ngroups++;
            nrecs += D;
        }
    }
    out->n_groups = ngroups;
    out->n_recs = nrecs;
    return YLE_OK;
}
