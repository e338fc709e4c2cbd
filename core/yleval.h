/*
 * yleval.h: detection metrics, exactly as their reference implementations compute them.
 *
 * Conventions (yle_params.convention, named as the rest of the project names them):
 *   "coco"   pycocotools' COCOeval, iouType "bbox" (cocodataset/cocoapi,
 *            PythonAPI/pycocotools/cocoeval.py and common/maskApi.c bbIou): precision
 *            [T,R,K,A,M], recall [T,K,A,M], scores [T,R,K,A,M] and summarize()'s 12 stats,
 *            the same float64 values, bit for bit.
 *   "voc07"  py-faster-rcnn's lib/datasets/voc_eval.py with use_07_metric=True (11 points).
 *   "voc"    the same with use_07_metric=False (VOC 2010+ all-point AP).
 * docs/metrics.md lists every rule reproduced and every choice the references leave open
 * (tie orders, a truth without "area", what is refused).
 *
 * OWNERSHIP (as in yololoss.h). The library never allocates memory and never frees memory
 * it was given. Every buffer (inputs, records, scratch, results) belongs to the caller and
 * must stay valid for the call that uses it; yle_params borrows its img_ids/cat_ids arrays.
 * Nothing has global state: any function may run on any thread; calls only read params.
 *
 * THE SPLIT. Evaluation is two steps, so that it scales across threads, processes and
 * replicas:
 *   1. yle_image: a pure function of one image's truths and detections. It writes that
 *      image's records: one yle_group per (category, area range) that holds a truth or a
 *      detection, and one yle_det_rec per kept detection of each group (score, and per IoU
 *      threshold whether it is a true positive, a false positive or ignored). Records are
 *      flat structs of fixed-size fields (no pointers): store them anywhere (SQLite,
 *      PostgreSQL, a file), in any order, and merge later.
 *   2. yle_accumulate: merges the records of any set of images, given in any order, into
 *      exactly the order pycocotools (or voc_eval.py) produces: score descending, then
 *      image order (img_ids order), then the detection's order within its image.
 * yle_summarize then gives COCO's 12 stats; yle_summary_line formats them as pycocotools
 * prints them.
 *
 * WORKED EXAMPLE (COCO, default parameters, one image of category 1 and 2):
 *
 *     int64_t imgs[] = {42}, cats[] = {1, 2};         // sorted, unique: pycocotools' defaults
 *     yle_params p;                                   // are the dataset's sorted ids
 *     yle_params_default(&p, YLE_COCO);
 *     p.img_ids = imgs; p.n_img = 1; p.cat_ids = cats; p.n_cat = 2;
 *     yle_truth gt[] = {{.box = {10, 10, 50, 40}, .area = 2000, .id = 1, .category_id = 1}};
 *     yle_det dt[] = {{.box = {12, 9, 50, 42}, .score = 0.9, .category_id = 1},
 *                     {.box = {0, 0, 5, 5}, .score = 0.3, .category_id = 2}};
 *     yle_image_size sz;                              // bounds for this image's buffers
 *     yle_image_bounds(&p, 1, 2, &sz);
 *     yle_group *g = malloc(sz.groups * sizeof *g);
 *     yle_det_rec *r = malloc(sz.recs * sizeof *r);
 *     void *scratch = malloc(sz.scratch);
 *     yle_image_result img;
 *     yle_error err;
 *     if (yle_image(&p, 42, gt, 1, dt, 2, g, sz.groups, r, sz.recs, scratch, sz.scratch,
 *                   &img, &err) != YLE_OK)
 *         fprintf(stderr, "%s\n", err.msg);          // "truth[0].box[2]: width -3 is negative"
 *     // ... yle_image for every image (any thread, any order), then once:
 *     yle_accum_size asz;
 *     yle_accumulate_bounds(&p, &img, 1, &asz);
 *     double *prec = malloc(asz.precision * sizeof(double)), ... recall, scores;
 *     void *ascratch = malloc(asz.scratch);
 *     yle_accumulate(&p, &img, 1, ascratch, asz.scratch, prec, rec, scores, NULL, &err);
 *     double stats[12], *work = malloc(yle_summarize_work(&p) * sizeof(double));
 *     yle_summarize(&p, prec, rec, work, stats, &err); // stats[0] = AP@[.50:.95], ...
 *     for (int i = 0; i < 12; i++) { char line[128];
 *         yle_summary_line(&p, i, stats[i], line, sizeof line); puts(line); }
 *
 * For "voc07"/"voc", yle_accumulate fills ap[T*K] (per IoU threshold t and class k; VOC's
 * single 0.5 by default, so T = 1) instead of precision/recall/scores (pass NULL for those),
 * and yle_voc_map gives the mean over classes as py-faster-rcnn's np.mean(aps).
 */
#ifndef YLEVAL_H
#define YLEVAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors: negative codes from one table; yle_strerror names them, yle_error says where. */
#define YLE_ERRNO_MAP(X)                                                        \
    X(EINVAL, -1, "invalid argument")                                           \
    X(ENONFINITE, -2, "non-finite value")                                       \
    X(ESIZE, -3, "negative size")                                               \
    X(ESCORE, -4, "score outside [0, 1]")                                       \
    X(EIMAGE, -5, "unknown image id")                                           \
    X(ECATEGORY, -6, "unknown category id")                                     \
    X(EPARAM, -7, "invalid parameter")                                          \
    X(ESPACE, -8, "buffer too small")                                           \
    X(EDUP, -9, "duplicate image")                                              \
    X(EOVERFLOW, -10, "size overflow")

typedef enum {
    YLE_OK = 0,
#define YLE__ERR_ENUM(name, code, text) YLE_##name = code,
    YLE_ERRNO_MAP(YLE__ERR_ENUM)
#undef YLE__ERR_ENUM
} yle_status;

/* "invalid argument", ...; "unknown error" for anything else. */
const char *yle_strerror(int code);
/* "YLE_EINVAL", ...; "YLE_UNKNOWN" for anything else. */
const char *yle_err_name(int code);

/* An error with its context. what is "truth", "det", "params.iou_thrs", "image", ...;
 * index the offending element's index in that array (-1 where none applies). msg is
 * complete, e.g. "det[7].score: 1.5 is outside [0, 1]". */
typedef struct {
    int code;
    char what[24];
    int64_t index;
    char msg[256];
} yle_error;

/* The conventions: one row each (enum value, name, what it is). */
#define YLE_CONVENTION_MAP(X)                                                   \
    X(COCO, "coco", "pycocotools COCOeval, bbox")                               \
    X(VOC07, "voc07", "py-faster-rcnn voc_eval.py, VOC2007 11-point AP")        \
    X(VOC, "voc", "py-faster-rcnn voc_eval.py, VOC2010+ all-point AP")

typedef enum {
#define YLE__CONV_ENUM(name, str, text) YLE_##name,
    YLE_CONVENTION_MAP(YLE__CONV_ENUM)
#undef YLE__CONV_ENUM
    YLE_N_CONVENTIONS
} yle_convention;

/* "coco", "voc07", "voc"; NULL for anything else. */
const char *yle_convention_name(int convention);
/* The convention for a name, or -1. */
int yle_convention_from_name(const char *name);

#define YLE_MAX_T 64    /* IoU thresholds (the per-detection bit masks are 64 bits) */
#define YLE_MAX_R 1024  /* recall thresholds */
#define YLE_MAX_A 16    /* area ranges */
#define YLE_MAX_M 16    /* maxDets entries */
#define YLE_LABEL 16    /* bytes of an area range label, NUL included */

/* Evaluation parameters, pycocotools' Params by the same names. Treat as a value: copy it,
 * change fields, pass it (const) to every call of one evaluation. */
typedef struct {
    int convention;                 /* yle_convention */
    int n_iou;                      /* T */
    double iou_thrs[YLE_MAX_T];     /* iouThrs; "voc*": voc_eval's ovthresh, one per T */
    int n_rec;                      /* R ("coco" only) */
    double rec_thrs[YLE_MAX_R];     /* recThrs */
    int n_max_dets;                 /* M ("coco" only) */
    int64_t max_dets[YLE_MAX_M];    /* maxDets, non-decreasing (pycocotools sorts them) */
    int n_area;                     /* A ("coco" only) */
    double area_rng[YLE_MAX_A][2];  /* areaRng, bounds inclusive */
    char area_lbl[YLE_MAX_A][YLE_LABEL]; /* areaRngLbl: summarize finds "all", "small", ... */
    int use_cats;                   /* useCats ("coco"; "voc*" is always per class) */
    /* imgIds and catIds, strictly increasing (pycocotools' np.unique of them). Truths and
     * detections of other categories are left out, as pycocotools' getAnnIds leaves them;
     * yle_image of an image not in img_ids writes no records. Borrowed, not copied. */
    const int64_t *img_ids;
    int64_t n_img;
    const int64_t *cat_ids;
    int64_t n_cat;
    /* Optional (NULL: no check): every category id of the dataset, strictly increasing; a
     * truth or detection whose category is not among them is refused (YLE_ECATEGORY). */
    const int64_t *known_cat_ids;
    int64_t n_known_cat;
} yle_params;

/* Defaults of the convention: "coco": pycocotools' setDetParams (iouThrs = linspace(.5,
 * .95, 10), recThrs = linspace(0, 1, 101), maxDets 1 10 100, the 4 area ranges with their
 * labels, useCats 1); "voc07"/"voc": ovthresh 0.5. Ids are left NULL/0: set them. */
int yle_params_default(yle_params *p, int convention);
/* numpy's linspace(start, stop, num, endpoint=True), value for value (step = (stop -
 * start) / (num - 1); i * step + start; the last is stop). num in [1, YLE_MAX_R]. */
int yle_linspace(double start, double stop, int num, double *out);
/* Checks p (sizes, finiteness, orders); YLE_EPARAM naming the field otherwise. Every other
 * call checks p too, except that yle_image (once per image) leaves out the O(n) order of
 * the id arrays: unsorted ids give it wrong answers, never an out-of-bounds read. */
int yle_params_check(const yle_params *p, yle_error *err);
/* Index of id in the strictly increasing ids[0..n), or -1. */
int64_t yle_find_id(const int64_t *ids, int64_t n, int64_t id);

/* One ground-truth annotation. box: "coco": x, y, width, height (the annotation's bbox);
 * "voc*": xmin, ymin, xmax, ymax (voc_eval's). area: the annotation's "area" (loaders fill
 * width * height where the annotation has none: pycocotools needs it, see docs/metrics.md);
 * "voc*" ignores it. iscrowd: nonzero for a crowd region; pycocotools' ignore flag IS this
 * (its _prepare overwrites an annotation's "ignore" with "iscrowd"). difficult: voc_eval's
 * flag ("coco" ignores it). id: the annotation id ("coco": a match to a truth of id 0 counts
 * as no match, as pycocotools' dtm == 0 test does). */
typedef struct {
    double box[4];
    double area;
    int64_t id;
    int64_t category_id;
    int32_t iscrowd;
    int32_t difficult;
} yle_truth;

/* One detection, box as yle_truth's; score finite in [0, 1]. Its area ("coco") is
 * width * height, as pycocotools' loadRes sets it. */
typedef struct {
    double box[4];
    double score;
    int64_t category_id;
} yle_det;

/* THE RECORDS. One group per (category k, area range a) of an image holding a truth or a
 * detection of category k ("voc*": a = 0 only; use_cats 0: k = 0 for all). Its detections
 * are recs[first .. first + n_det) of the image's array, in pycocotools' per-image order
 * (score descending, ties in input order; at most max_dets[M-1] of them for "coco").
 * 32 bytes each, no padding, no pointers. */
typedef struct {
    int32_t k;      /* category index in cat_ids (0 with use_cats 0) */
    int32_t a;      /* area range index */
    int32_t n_gt;   /* truths not ignored: this image's share of npig ("voc*": npos) */
    int32_t n_det;  /* detections kept */
    int64_t first;  /* index of the first of them in the image's yle_det_rec array */
    int64_t reserved; /* 0 */
} yle_group;

/* One kept detection in one group: 32 bytes (for "coco" each detection is stored once per
 * area range: 32 * A bytes, 128 with the default 4 ranges). Bit t of tp: a true positive at
 * iou_thrs[t] (matched, not ignored); of fp: a false positive (unmatched, not ignored);
 * neither: ignored (pycocotools' dtIgnore; voc_eval's difficult truths). */
typedef struct {
    double score;
    uint64_t tp;
    uint64_t fp;
    int32_t det;    /* the detection's index in the image's input array (pycocotools' dtIds) */
    int32_t gt;     /* index in the image's truth array of the truth it matched at
                       iou_thrs[0], -1 for none */
} yle_det_rec;

/* One image's records as yle_image wrote them: pointers into the caller's arrays. Store
 * image_id, the groups and the recs; rebuild this struct around them to accumulate. */
typedef struct {
    int64_t image_id;
    const yle_group *groups;
    int64_t n_groups;
    const yle_det_rec *recs;
    int64_t n_recs;
} yle_image_result;

/* Buffer sizes for yle_image on an image of n_gt truths and n_dt detections: groups and
 * recs are element counts (upper bounds), scratch a byte count. */
typedef struct {
    int64_t groups;
    int64_t recs;
    size_t scratch;
} yle_image_size;
int yle_image_bounds(const yle_params *p, int64_t n_gt, int64_t n_dt, yle_image_size *out);

/* Evaluate one image (pure; any thread). Checks every truth and detection first (the first
 * bad one in array order, truths before detections, is reported: NaN or infinite values,
 * negative width/height or area, a score outside [0, 1], an unknown category), then writes
 * out (its pointers point into groups and recs). Groups come in (k, a) order. */
int yle_image(const yle_params *p, int64_t image_id, const yle_truth *gt, int64_t n_gt,
              const yle_det *dt, int64_t n_dt, yle_group *groups, int64_t max_groups,
              yle_det_rec *recs, int64_t max_recs, void *scratch, size_t scratch_size,
              yle_image_result *out, yle_error *err);

/* Sizes for yle_accumulate over these images: element counts of the outputs and the
 * scratch byte count. "coco": precision = scores = T*R*K*A*M, recall = T*K*A*M, ap = 0;
 * "voc*": ap = T*K and the others 0. K is n_cat (1 with use_cats 0). */
typedef struct {
    int64_t precision, recall, scores, ap;
    size_t scratch;
} yle_accum_size;
int yle_accumulate_bounds(const yle_params *p, const yle_image_result *images, int64_t n,
                          yle_accum_size *out);

/* Merge the images' records (any order; images not in img_ids are skipped, one id twice is
 * YLE_EDUP). "coco": precision[t][r][k][a][m], recall[t][k][a][m], scores[t][r][k][a][m]
 * (row-major, -1 where a setting has no truth, as pycocotools); ap may be NULL. "voc*":
 * ap[t][k] (voc_ap of the class at iou_thrs[t]; NaN where the class has detections but no
 * truth, as voc_eval's tp / npos gives), the others may be NULL. */
int yle_accumulate(const yle_params *p, const yle_image_result *images, int64_t n,
                   void *scratch, size_t scratch_size, double *precision, double *recall,
                   double *scores, double *ap, yle_error *err);

/* summarize()'s 12 stats from "coco" arrays: AP, AP50, AP75, AP small/medium/large, AR@1,
 * AR@10, AR@100, AR small/medium/large (means over the entries > -1 with numpy's pairwise
 * sum; -1 where none), selecting by area labels and maxDets values exactly as pycocotools.
 * Needs n_max_dets >= 3 (pycocotools indexes maxDets[2]). */
int yle_summarize(const yle_params *p, const double *precision, const double *recall,
                  double *work, double stats[12], yle_error *err);
/* Doubles of yle_summarize's work array: T*R*K*max(A, M). */
int64_t yle_summarize_work(const yle_params *p);
/* Line i (0..11) as pycocotools prints it, e.g.
 * " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.512";
 * returns the length snprintf would write. */
int yle_summary_line(const yle_params *p, int i, double value, char *buf, size_t size);
/* np.mean of ap[t][0..K) (pairwise sum / K): py-faster-rcnn's "Mean AP". */
double yle_voc_map(const yle_params *p, const double *ap, int t);

#ifdef __cplusplus
}
#endif

#endif
