/* yle_accumulate: COCOeval.accumulate ("coco") and voc_eval's cumulative sums and voc_ap
 * ("voc07", "voc") over per-image records given in any order. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "eval_internal.h"

typedef struct {
    int64_t img; /* index into images[] */
    int64_t grp; /* index into its groups */
} gref;

/* B: the most detections one (k, a) can hold: the records of the fullest area range. */
typedef struct {
    int64_t *pos_img;   /* n_img: images[] index at each img_ids position, -1: none */
    int64_t *bucket;    /* K*A + 1 offsets into refs */
    int64_t *fill;      /* K*A */
    gref *refs;         /* every group, by (k, a), image order inside */
    int32_t *idx, *tmp; /* B: the sort's permutation of a bucket's detections */
    double *key, *key0; /* B: -score in build order (key0: the first area's, kept) */
    uint64_t *b_tp, *b_fp; /* B: the bucket's detections' bits in build order */
    int32_t *b_rank;    /* B: and their rank in their image's group */
    uint64_t *e_tp, *e_fp; /* B: the bucket's detections in sorted order */
    int32_t *e_rank;    /* B: rank in its image's group (maxDets cut) */
    double *e_score;    /* B */
    int32_t *tp_fp;     /* B: a threshold's true positives: the false positives before each */
    double *tp_score, *env; /* B: their scores; precision envelope at each */
    double *rc, *pr, *vt; /* B, B, B + 1: voc_eval's rec, prec and voc_ap's terms */
    int64_t *cth;       /* R: the fewest true positives reaching each recall threshold */
} acc_scratch;

static int64_t max_bucket(const yle_params *p, const yle_image_result *images, int64_t n,
                          int64_t n_recs) {
    int64_t A = p->convention == YLE_COCO ? p->n_area : 1, per[YLE_MAX_A] = {0}, best = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t g = 0; g < images[i].n_groups; g++) {
            const yle_group *gr = &images[i].groups[g];
            if (gr->a < 0 || gr->a >= A || gr->n_det < 0)
                return n_recs; /* refused later; any bound will do */
            per[gr->a] += gr->n_det;
        }
    for (int64_t a = 0; a < A; a++)
        if (per[a] > best)
            best = per[a];
    return best < n_recs ? best : n_recs;
}

static size_t acc_layout(const yle_params *p, int64_t n_groups, int64_t B, char *base,
                         acc_scratch *s) {
    int64_t KA = yle__num_k(p) * (p->convention == YLE_COCO ? p->n_area : 1);
    const yle__part parts[] = {
        {(void **)&s->pos_img, p->n_img, 8}, {(void **)&s->bucket, KA + 1, 8},
        {(void **)&s->fill, KA, 8},          {(void **)&s->refs, n_groups, sizeof(gref)},
        {(void **)&s->idx, B, 4},            {(void **)&s->tmp, B, 4},
        {(void **)&s->key, B, 8},            {(void **)&s->key0, B, 8},
        {(void **)&s->b_tp, B, 8},           {(void **)&s->b_fp, B, 8},
        {(void **)&s->b_rank, B, 4},
        {(void **)&s->e_tp, B, 8},           {(void **)&s->e_fp, B, 8},
        {(void **)&s->e_rank, B, 4},         {(void **)&s->e_score, B, 8},
        {(void **)&s->tp_fp, B, 4},
        {(void **)&s->tp_score, B, 8},       {(void **)&s->env, B, 8},
        {(void **)&s->rc, B, 8},             {(void **)&s->pr, B, 8},
        {(void **)&s->vt, B + 1, 8},         {(void **)&s->cth, p->n_rec, 8},
    };
    return yle__carve(parts, sizeof parts / sizeof parts[0], base);
}

static int totals(const yle_image_result *images, int64_t n, int64_t *groups, int64_t *recs) {
    *groups = *recs = 0;
    for (int64_t i = 0; i < n; i++) {
        if (images[i].n_groups < 0 || images[i].n_recs < 0 ||
            images[i].n_groups > INT32_MAX - *groups || images[i].n_recs > INT32_MAX - *recs ||
            (images[i].n_groups && !images[i].groups) || (images[i].n_recs && !images[i].recs))
            return YLE_EOVERFLOW;
        *groups += images[i].n_groups;
        *recs += images[i].n_recs;
    }
    return YLE_OK;
}

int yle_accumulate_bounds(const yle_params *p, const yle_image_result *images, int64_t n,
                          yle_accum_size *out) {
    if (!p || !out || n < 0 || (n && !images))
        return YLE_EINVAL;
    int64_t ng, nr;
    if (totals(images, n, &ng, &nr))
        return YLE_EOVERFLOW;
    int64_t K = yle__num_k(p), T = p->n_iou;
    memset(out, 0, sizeof *out);
    if (p->convention == YLE_COCO) {
        int64_t R = p->n_rec, A = p->n_area, M = p->n_max_dets;
        out->precision = out->scores = T * R * K * A * M;
        out->recall = T * K * A * M;
    } else {
        out->ap = T * K;
    }
    acc_scratch s;
    out->scratch = acc_layout(p, ng, max_bucket(p, images, n, nr), NULL, &s);
    return out->scratch == SIZE_MAX ? YLE_EOVERFLOW : YLE_OK;
}

/* voc_eval.py's voc_ap(rec, prec, use_07_metric) for nd points; rc/pr are overwritten. */
static double voc_ap(double *rec, double *prec, int64_t nd, int use07, double *tmp) {
    if (use07) {
        double ap = 0.;
        for (int i = 0; i < 11; i++) {
            double t = 0.0 + i * 0.1; /* np.arange(0., 1.1, 0.1): start + i * delta */
            double pmax = 0;          /* p = 0 when no rec >= t; prec is never NaN */
            for (int64_t d = 0; d < nd; d++)
                if (rec[d] >= t && prec[d] > pmax)
                    pmax = prec[d];
            ap = ap + pmax / 11.;
        }
        return ap;
    }
    /* mrec = [0, rec, 1], mpre = [0, prec, 0] kept in place: index i of the padded arrays
     * is rec[i - 1]. The envelope runs backwards (np.maximum; prec is never NaN). */
#define MREC(i) ((i) == 0 ? 0.0 : (i) == nd + 1 ? 1.0 : rec[(i) - 1])
    double next = 0.0; /* mpre[nd + 1] */
    for (int64_t i = nd; i >= 1; i--) {
        prec[i - 1] = fmax(prec[i - 1], next);
        next = prec[i - 1];
    }
    int64_t nt = 0;
    for (int64_t i = 0; i <= nd; i++) {
        double a = MREC(i), b = MREC(i + 1);
        if (a != b) {
            double mp = (i + 1 == nd + 1) ? 0.0 : prec[i];
            tmp[nt++] = (b - a) * mp;
        }
    }
#undef MREC
    return yle__pairwise_sum(tmp, nt);
}

int yle_accumulate(const yle_params *p, const yle_image_result *images, int64_t n,
                   void *scratch, size_t scratch_size, double *precision, double *recall,
                   double *scores, double *ap, yle_error *err) {
    int rc = yle_params_check(p, err);
    if (rc)
        return rc;
    yle_accum_size sz;
    if ((rc = yle_accumulate_bounds(p, images, n, &sz)))
        return yle__fail(err, rc, "images", -1, "yle_accumulate: %s", yle_strerror(rc));
    int coco = p->convention == YLE_COCO;
    if (scratch_size < sz.scratch || (sz.scratch && !scratch) ||
        (coco && (!precision || !recall || !scores)) || (!coco && !ap))
        return yle__fail(err, YLE_ESPACE, "images", -1,
                         "yle_accumulate: %zu scratch bytes and the output arrays are needed",
                         sz.scratch);
    int64_t ng, nr;
    totals(images, n, &ng, &nr);
    acc_scratch s;
    acc_layout(p, ng, max_bucket(p, images, n, nr), scratch, &s);

    int64_t T = p->n_iou, K = yle__num_k(p), A = coco ? p->n_area : 1;
    int64_t R = coco ? p->n_rec : 0, M = coco ? p->n_max_dets : 1;
    for (int64_t i = 0; i < p->n_img; i++)
        s.pos_img[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = yle_find_id(p->img_ids, p->n_img, images[i].image_id);
        if (pos < 0)
            continue; /* not in imgIds */
        if (s.pos_img[pos] >= 0)
            return yle__fail(err, YLE_EDUP, "images", i, "images[%lld]: image %lld is also "
                             "images[%lld]", (long long)i, (long long)images[i].image_id,
                             (long long)s.pos_img[pos]);
        s.pos_img[pos] = i;
        for (int64_t g = 0; g < images[i].n_groups; g++) {
            const yle_group *gr = &images[i].groups[g];
            if (gr->k < 0 || gr->k >= K || gr->a < 0 || gr->a >= A || gr->n_det < 0 ||
                gr->n_gt < 0 || gr->first < 0 || gr->first > images[i].n_recs - gr->n_det ||
                (g > 0 && (gr->k * A + gr->a) <= (gr[-1].k * A + gr[-1].a)))
                return yle__fail(err, YLE_EINVAL, "images", i,
                                 "images[%lld].groups[%lld]: k %d, a %d, records %lld+%d do not "
                                 "fit these parameters and %lld records, or groups are not in "
                                 "(k, a) order", (long long)i, (long long)g, gr->k, gr->a,
                                 (long long)gr->first, gr->n_det, (long long)images[i].n_recs);
        }
    }
    /* bucket the groups by (k, a), images in img_ids order within each */
    int64_t KA = K * A;
    memset(s.fill, 0, (size_t)KA * sizeof *s.fill);
    for (int64_t pos = 0; pos < p->n_img; pos++) {
        int64_t i = s.pos_img[pos];
        for (int64_t g = 0; i >= 0 && g < images[i].n_groups; g++)
            s.fill[images[i].groups[g].k * A + images[i].groups[g].a]++;
    }
    s.bucket[0] = 0;
    for (int64_t b = 0; b < KA; b++) {
        s.bucket[b + 1] = s.bucket[b] + s.fill[b];
        s.fill[b] = s.bucket[b];
    }
    for (int64_t pos = 0; pos < p->n_img; pos++) {
        int64_t i = s.pos_img[pos];
        for (int64_t g = 0; i >= 0 && g < images[i].n_groups; g++) {
            const yle_group *gr = &images[i].groups[g];
            s.refs[s.fill[gr->k * A + gr->a]++] = (gref){i, g};
        }
    }

    if (coco) {
        for (int64_t e = 0; e < T * R * K * A * M; e++)
            precision[e] = scores[e] = -1;
        for (int64_t e = 0; e < T * K * A * M; e++)
            recall[e] = -1;
    }
    for (int64_t k = 0; k < K; k++) {
        int64_t sorted_b = -1; /* the bucket whose order idx holds */
        for (int64_t a = 0; a < A; a++) {
            int64_t b = k * A + a, ne = 0, npig = 0;
            for (int64_t r = s.bucket[b]; r < s.bucket[b + 1]; r++) {
                const yle_image_result *im = &images[s.refs[r].img];
                const yle_group *gr = &im->groups[s.refs[r].grp];
                npig += gr->n_gt;
                for (int32_t d = 0; d < gr->n_det; d++, ne++) {
                    const yle_det_rec *e = &im->recs[gr->first + d];
                    s.key[ne] = -e->score;
                    s.b_tp[ne] = e->tp;
                    s.b_fp[ne] = e->fp;
                    s.b_rank[ne] = d;
                }
            }
            /* np.argsort(-dtScores, kind='mergesort') over the concatenation in image order.
             * Every area range of a category holds the same detections in the same order
             * (yle_image keeps them whatever the range), so one sort serves them all: reused
             * when the same images hold the same scores, else sorted again. */
            int64_t nb = s.bucket[b + 1] - s.bucket[b];
            int reuse = sorted_b >= 0 && nb == s.bucket[sorted_b + 1] - s.bucket[sorted_b];
            for (int64_t r = 0; reuse && r < nb; r++) {
                const gref *x = &s.refs[s.bucket[b] + r], *y = &s.refs[s.bucket[sorted_b] + r];
                reuse = x->img == y->img &&
                        images[x->img].groups[x->grp].n_det == images[y->img].groups[y->grp].n_det;
            }
            for (int64_t j = 0; reuse && j < ne; j++)
                reuse = s.key[j] == s.key0[j];
            if (!reuse) {
                for (int64_t j = 0; j < ne; j++) {
                    s.idx[j] = (int32_t)j;
                    s.key0[j] = s.key[j];
                }
                yle__sort_idx(s.idx, s.tmp, ne, s.key0);
                sorted_b = b;
            }
            for (int64_t q = 0; q < ne; q++) {
                int32_t j = s.idx[q];
                s.e_tp[q] = s.b_tp[j];
                s.e_fp[q] = s.b_fp[j];
                s.e_rank[q] = s.b_rank[j];
                s.e_score[q] = -s.key[j]; /* the score, exactly */
            }
            if (!coco) {
                /* voc_eval: fp = cumsum(fp), tp = cumsum(tp), rec = tp / float(npos),
                 * prec = tp / maximum(tp + fp, eps) */
                for (int64_t t = 0; t < T; t++) {
                    uint64_t bit = (uint64_t)1 << t;
                    double tp = 0, fp = 0;
                    for (int64_t j = 0; j < ne; j++) {
                        fp += (s.e_fp[j] & bit) ? 1. : 0.;
                        tp += (s.e_tp[j] & bit) ? 1. : 0.;
                        s.rc[j] = tp / (double)npig;
                        s.pr[j] = tp / fmax(tp + fp, DBL_EPSILON);
                    }
                    ap[t * K + k] = voc_ap(s.rc, s.pr, ne, p->convention == YLE_VOC07, s.vt);
                }
                continue;
            }
            if (npig == 0)
                continue; /* no truth: -1 stays, as pycocotools' `if npig == 0: continue` */
            /* rc = tp / npig rises only at true positives, so searchsorted(rc, v, 'left') is 0
             * when fl(0 / npig) >= v, else the position of the c-th true positive, c the
             * fewest with fl(c / npig) >= v (division is monotone), else past the end. */
            for (int64_t r = 0; r < R; r++) {
                double v = p->rec_thrs[r];
                int64_t lo = 0, hi = npig + 1; /* npig + 1: never */
                while (lo < hi) {
                    int64_t mid = lo + (hi - lo) / 2;
                    if ((double)mid / (double)npig < v)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                s.cth[r] = lo;
            }
            for (int64_t m = 0; m < M; m++) {
                /* dtScores[0:maxDet] of each image: the cut list's positions, once per m */
                int64_t maxdet = p->max_dets[m], nd = 0;
                for (int64_t j = 0; j < ne; j++) {
                    s.tmp[nd] = (int32_t)j;
                    nd += s.e_rank[j] < maxdet;
                }
                for (int64_t t = 0; t < T; t++) {
                    int64_t ntp = 0, fpc = 0;
                    double first_score = nd ? s.e_score[s.tmp[0]] : 0;
                    /* branch-free: every slot is written, kept only at a true positive */
                    for (int64_t q = 0; q < nd; q++) {
                        int32_t j = s.tmp[q];
                        int64_t is_tp = (int64_t)((s.e_tp[j] >> t) & 1);
                        s.tp_fp[ntp] = (int32_t)fpc;
                        s.tp_score[ntp] = s.e_score[j];
                        ntp += is_tp;
                        fpc += (int64_t)((s.e_fp[j] >> t) & 1) & (is_tp ^ 1);
                    }
                    /* pr = tp / (fp + tp + np.spacing(1)) at each true positive, and its
                     * envelope (the maximum from there on). Elsewhere pr only falls (a false
                     * positive: the same tp over a larger sum) or stays (ignored), so the
                     * envelope at a true positive is the maximum over the later true
                     * positives, and at position 0 over all of them (pr[0] is 0 there). */
                    double run = 0;
                    for (int64_t i = ntp - 1; i >= 0; i--) {
                        double tp = (double)(i + 1), fp = (double)s.tp_fp[i];
                        double pr = tp / (fp + tp + DBL_EPSILON);
                        if (pr > run)
                            run = pr;
                        s.env[i] = run;
                    }
                    recall[((t * K + k) * A + a) * M + m] = nd ? (double)ntp / (double)npig : 0;
                    for (int64_t r = 0; r < R; r++) {
                        int64_t c = s.cth[r];
                        int64_t o = (((t * R + r) * K + k) * A + a) * M + m;
                        if (nd == 0 || c > ntp) {
                            /* pr[pi] raised IndexError: this and every later entry stay 0 */
                            for (int64_t r2 = r; r2 < R; r2++) {
                                int64_t o2 = (((t * R + r2) * K + k) * A + a) * M + m;
                                precision[o2] = scores[o2] = 0;
                            }
                            break;
                        }
                        if (c == 0) {
                            precision[o] = ntp ? s.env[0] : 0;
                            scores[o] = first_score;
                        } else {
                            precision[o] = s.env[c - 1];
                            scores[o] = s.tp_score[c - 1];
                        }
                    }
                }
            }
        }
    }
    return YLE_OK;
}

double yle_voc_map(const yle_params *p, const double *ap, int t) {
    if (!p || !ap || t < 0 || t >= p->n_iou || p->n_cat == 0)
        return NAN;
    return yle__pairwise_sum(ap + (int64_t)t * p->n_cat, p->n_cat) / (double)p->n_cat;
}
