/*
 * yololoss_eval.c: `yololoss-eval`, COCO or VOC detection metrics of a results file against
 * an instances file, on the core's evaluator (core/yleval.h); no daemon.
 *
 * Prints what pycocotools' COCOeval.summarize() prints (its 12 lines), or for --voc07 and
 * --voc what py-faster-rcnn's pascal_voc.py prints ("AP for <class> = 0.xxxx" per class,
 * then "Mean AP = 0.xxxx"). Exit status: 0 done, 1 bad input (the message names the file's
 * array and index), 2 bad usage or an unreadable file.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "coco_json.h"
#include "npyfile.h"
#include "yleval.h"

static const char usage[] =
    "usage: yololoss-eval --gt INSTANCES.json --dt RESULTS.json [--voc07 | --voc] [options]\n"
    "COCO bbox metrics as pycocotools' COCOeval (default), or PASCAL VOC AP as\n"
    "py-faster-rcnn's voc_eval.py: --voc07 (11-point), --voc (all-point, VOC2010+).\n"
    "\n"
    "  --iou-thrs X,Y,...   IoU thresholds (COCO: linspace(.5, .95, 10); VOC: 0.5)\n"
    "  --rec-thrs X,Y,...   recall thresholds (linspace(0, 1, 101))\n"
    "  --max-dets N,N,...   maxDets (1,10,100)\n"
    "  --area-rng LO:HI,... area ranges (0:1e10,0:1024,1024:9216,9216:1e10)\n"
    "  --area-lbl A,B,...   their labels (all,small,medium,large)\n"
    "  --img-ids N,...      evaluate these images only (default: all)\n"
    "  --cat-ids N,...      these categories only (default: all)\n"
    "  --no-cats            useCats = 0: categories ignored (proposal scoring)\n"
    "  --dump DIR           also write DIR/precision.npy [T,R,K,A,M], recall.npy [T,K,A,M],\n"
    "                       scores.npy, stats.npy (COCO) or ap.npy [T,K] (VOC), float64\n"
    "  --time               print {\"images\": N, ..., \"eval_ms\": X, ...} on stderr: the\n"
    "                       evaluation alone (files read and parsed before it), in parts\n"
    "  --repeat N           evaluate N times in the same buffers (--time prints each: the\n"
    "                       first touches fresh memory, the others run as a service's do)\n";

static int read_file(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        return -1;
    }
    *len = (size_t)st.st_size;
    *text = malloc(*len + 1);
    if (!*text || fread(*text, 1, *len, f) != *len) {
        fclose(f);
        free(*text);
        return -1;
    }
    fclose(f);
    return 0;
}

/* A comma-separated list of doubles; returns the count or -1. */
static int parse_doubles(const char *s, double *out, int max) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno || n >= max || (*end && *end != ','))
            return -1;
        out[n++] = v;
        s = *end ? end + 1 : end;
    }
    return n;
}

static int64_t parse_ints(const char *s, int64_t **out) {
    int64_t n = 0, cap = 16;
    *out = malloc((size_t)cap * sizeof **out);
    while (*out && *s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || (*end && *end != ','))
            return -1;
        if (n == cap) {
            int64_t *grown = realloc(*out, (size_t)(cap *= 2) * sizeof **out);
            if (!grown)
                return -1;
            *out = grown;
        }
        (*out)[n++] = v;
        s = *end ? end + 1 : end;
    }
    return *out ? n : -1;
}

static int dump(const char *dir, const char *name, int ndim, const int64_t *shape,
                const double *data) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (npyf_write(path, "<f8", ndim, shape, data, err, sizeof err)) {
        fprintf(stderr, "yololoss-eval: %s\n", err);
        return -1;
    }
    return 0;
}

/* Python's '{:.4f}': "nan" for a NaN (printf writes "-nan" for 0/0's sign bit) */
static const char *fmt4(double v, char *buf, size_t size) {
    if (isnan(v))
        snprintf(buf, size, "nan");
    else
        snprintf(buf, size, "%.4f", v);
    return buf;
}

static double clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

int main(int argc, char **argv) {
    const char *gt_path = NULL, *dt_path = NULL, *dump_dir = NULL;
    const char *iou = NULL, *rec = NULL, *maxd = NULL, *arng = NULL, *albl = NULL;
    const char *img_arg = NULL, *cat_arg = NULL;
    int convention = YLE_COCO, no_cats = 0, timing = 0, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = !strcmp(a, "--gt")         ? &gt_path
                           : !strcmp(a, "--dt")       ? &dt_path
                           : !strcmp(a, "--dump")     ? &dump_dir
                           : !strcmp(a, "--iou-thrs") ? &iou
                           : !strcmp(a, "--rec-thrs") ? &rec
                           : !strcmp(a, "--max-dets") ? &maxd
                           : !strcmp(a, "--area-rng") ? &arng
                           : !strcmp(a, "--area-lbl") ? &albl
                           : !strcmp(a, "--img-ids")  ? &img_arg
                           : !strcmp(a, "--cat-ids")  ? &cat_arg
                                                      : NULL;
        if (dst) {
            if (++i >= argc) {
                fprintf(stderr, "yololoss-eval: %s needs a value\n%s", a, usage);
                return 2;
            }
            *dst = argv[i];
        } else if (!strcmp(a, "--voc07")) {
            convention = YLE_VOC07;
        } else if (!strcmp(a, "--voc")) {
            convention = YLE_VOC;
        } else if (!strcmp(a, "--no-cats")) {
            no_cats = 1;
        } else if (!strcmp(a, "--time")) {
            timing = 1;
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
            if (repeat < 1 || repeat > 1000) {
                fprintf(stderr, "yololoss-eval: --repeat takes 1..1000\n");
                return 2;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "yololoss-eval: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (!gt_path || !dt_path) {
        fputs(usage, stderr);
        return 2;
    }
    char *gt_text = NULL, *dt_text = NULL;
    size_t gt_len = 0, dt_len = 0;
    if (read_file(gt_path, &gt_text, &gt_len) || read_file(dt_path, &dt_text, &dt_len)) {
        fprintf(stderr, "yololoss-eval: cannot read %s\n", gt_text ? dt_path : gt_path);
        return 2;
    }
    ycj_set set;
    char msg[512];
    int status = 1;
    if (ycj_load_gt(gt_text, gt_len, &set, msg, sizeof msg) ||
        ycj_load_dt(dt_text, dt_len, &set, msg, sizeof msg)) {
        fprintf(stderr, "yololoss-eval: %s\n", msg);
        free(gt_text);
        free(dt_text);
        ycj_free(&set);
        return 1;
    }
    free(gt_text);
    free(dt_text);

    yle_params p;
    yle_params_default(&p, convention);
    int bad = 0;
    if (iou)
        bad |= (p.n_iou = parse_doubles(iou, p.iou_thrs, YLE_MAX_T)) < 1;
    if (rec)
        bad |= (p.n_rec = parse_doubles(rec, p.rec_thrs, YLE_MAX_R)) < 1;
    if (maxd) {
        double v[YLE_MAX_M];
        int n = parse_doubles(maxd, v, YLE_MAX_M);
        bad |= n < 1;
        for (int m = 0; m < n; m++)
            p.max_dets[m] = (int64_t)v[m];
        p.n_max_dets = n;
        for (int m = 1; m < n; m++) /* pycocotools sorts maxDets (an insertion sort) */
            for (int j = m; j > 0 && p.max_dets[j] < p.max_dets[j - 1]; j--) {
                int64_t t = p.max_dets[j];
                p.max_dets[j] = p.max_dets[j - 1];
                p.max_dets[j - 1] = t;
            }
    }
    if (arng) {
        double v[2 * YLE_MAX_A];
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", arng);
        for (char *c = buf; *c; c++)
            if (*c == ':')
                *c = ',';
        int n = parse_doubles(buf, v, 2 * YLE_MAX_A);
        bad |= n < 2 || n % 2;
        p.n_area = n / 2;
        for (int a = 0; a < p.n_area; a++) {
            p.area_rng[a][0] = v[2 * a];
            p.area_rng[a][1] = v[2 * a + 1];
            if (a >= 4)
                p.area_lbl[a][0] = 0;
        }
    }
    if (albl) {
        int a = 0;
        for (const char *c = albl; a < YLE_MAX_A;) {
            size_t l = strcspn(c, ",");
            snprintf(p.area_lbl[a++], YLE_LABEL, "%.*s", (int)l, c);
            if (!c[l])
                break;
            c += l + 1;
        }
    }
    p.use_cats = !no_cats;
    int64_t *img_ids = NULL, *cat_ids = NULL;
    p.img_ids = set.img_ids;
    p.n_img = set.n_img;
    p.cat_ids = set.cat_ids;
    p.n_cat = set.n_cat;
    p.known_cat_ids = set.cat_ids;
    p.n_known_cat = set.n_cat;
    if (img_arg) {
        int64_t n = parse_ints(img_arg, &img_ids);
        bad |= n < 0;
        p.img_ids = img_ids;
        p.n_img = n < 0 ? 0 : ycj_sort_unique(img_ids, n);
    }
    if (cat_arg) {
        int64_t n = parse_ints(cat_arg, &cat_ids);
        bad |= n < 0;
        p.cat_ids = cat_ids;
        p.n_cat = n < 0 ? 0 : ycj_sort_unique(cat_ids, n);
    }
    yle_error err;
    if (bad) {
        fprintf(stderr, "yololoss-eval: a list option is malformed\n%s", usage);
        status = 2;
        goto out_params;
    }
    if (yle_params_check(&p, &err)) {
        fprintf(stderr, "yololoss-eval: %s\n", err.msg);
        status = 2;
        goto out_params;
    }

    /* group truths and detections by image (stable: file order within an image) */
    int64_t NI = set.n_img;
    int64_t *gstart = calloc((size_t)NI + 1, sizeof *gstart);
    int64_t *dstart = calloc((size_t)NI + 1, sizeof *dstart);
    yle_truth *gts = malloc(((size_t)set.n_gt + 1) * sizeof *gts);
    yle_det *dts = malloc(((size_t)set.n_dt + 1) * sizeof *dts);
    yle_image_result *res = calloc((size_t)NI + 1, sizeof *res);
    int64_t *goff = calloc((size_t)NI + 1, sizeof *goff), *roff = calloc((size_t)NI + 1, sizeof *roff);
    yle_group *groups = NULL;
    yle_det_rec *recs = NULL;
    void *scratch = NULL, *ascratch = NULL;
    double *prec = NULL, *recl = NULL, *scores = NULL, *ap = NULL, *work = NULL;
    if (!gstart || !dstart || !gts || !dts || !res || !goff || !roff)
        goto oom;
    for (int64_t i = 0; i < set.n_gt; i++)
        gstart[yle_find_id(set.img_ids, NI, set.gt_img[i]) + 1]++;
    for (int64_t i = 0; i < set.n_dt; i++)
        dstart[yle_find_id(set.img_ids, NI, set.dt_img[i]) + 1]++;
    for (int64_t i = 0; i < NI; i++) {
        gstart[i + 1] += gstart[i];
        dstart[i + 1] += dstart[i];
    }
    {
        int64_t *gf = calloc((size_t)NI + 1, sizeof *gf), *df = calloc((size_t)NI + 1, sizeof *df);
        if (!gf || !df) {
            free(gf);
            free(df);
            goto oom;
        }
        for (int64_t i = 0; i < set.n_gt; i++) {
            int64_t pos = yle_find_id(set.img_ids, NI, set.gt_img[i]);
            yle_truth t = set.gt[i];
            if (convention != YLE_COCO) { /* VOC boxes: xmin, ymin, xmax = x + w, ymax = y + h */
                t.box[2] += t.box[0];
                t.box[3] += t.box[1];
            }
            gts[gstart[pos] + gf[pos]++] = t;
        }
        for (int64_t i = 0; i < set.n_dt; i++) {
            int64_t pos = yle_find_id(set.img_ids, NI, set.dt_img[i]);
            yle_det d = set.dt[i];
            if (convention != YLE_COCO) {
                d.box[2] += d.box[0];
                d.box[3] += d.box[1];
            }
            dts[dstart[pos] + df[pos]++] = d;
        }
        free(gf);
        free(df);
    }
    size_t max_scratch = 0;
    for (int64_t i = 0; i < NI; i++) {
        yle_image_size sz;
        if (yle_image_bounds(&p, gstart[i + 1] - gstart[i], dstart[i + 1] - dstart[i], &sz))
            goto oom;
        goff[i + 1] = goff[i] + sz.groups;
        roff[i + 1] = roff[i] + sz.recs;
        if (sz.scratch > max_scratch)
            max_scratch = sz.scratch;
    }
    groups = malloc(((size_t)goff[NI] + 1) * sizeof *groups);
    recs = malloc(((size_t)roff[NI] + 1) * sizeof *recs);
    scratch = malloc(max_scratch + 1);
    if (!groups || !recs || !scratch)
        goto oom;

    double stats[12];
    int have_stats = 0;
    for (int round = 0; round < repeat; round++) {
    double t0 = now_ms(), c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
    for (int64_t i = 0; i < NI; i++) {
        int64_t ng = gstart[i + 1] - gstart[i], nd = dstart[i + 1] - dstart[i];
        if (yle_image(&p, set.img_ids[i], gts + gstart[i], ng, dts + dstart[i], nd,
                      groups + goff[i], goff[i + 1] - goff[i], recs + roff[i],
                      roff[i + 1] - roff[i], scratch, max_scratch, &res[i], &err)) {
            fprintf(stderr, "yololoss-eval: image %lld: %s\n", (long long)set.img_ids[i], err.msg);
            goto out;
        }
    }
    double t_img = now_ms();
    yle_accum_size asz;
    if (yle_accumulate_bounds(&p, res, NI, &asz))
        goto oom;
    if (!ascratch) { /* the first round allocates; the sizes are the same every round */
        ascratch = malloc(asz.scratch + 1);
        prec = malloc(((size_t)asz.precision + 1) * sizeof(double));
        recl = malloc(((size_t)asz.recall + 1) * sizeof(double));
        scores = malloc(((size_t)asz.scores + 1) * sizeof(double));
        ap = malloc(((size_t)asz.ap + 1) * sizeof(double));
        work = malloc(((size_t)yle_summarize_work(&p) + 1) * sizeof(double));
        if (!ascratch || !prec || !recl || !scores || !ap || !work)
            goto oom;
    }
    if (yle_accumulate(&p, res, NI, ascratch, asz.scratch, prec, recl, scores, ap, &err)) {
        fprintf(stderr, "yololoss-eval: %s\n", err.msg);
        goto out;
    }
    double t_acc = now_ms();
    have_stats = 0;
    if (convention == YLE_COCO && p.n_max_dets >= 3) {
        if (yle_summarize(&p, prec, recl, work, stats, &err)) {
            fprintf(stderr, "yololoss-eval: %s\n", err.msg);
            goto out;
        }
        have_stats = 1;
    }
    double t1 = now_ms(), c1 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
    if (timing)
        fprintf(stderr, "{\"images\": %lld, \"truths\": %lld, \"detections\": %lld, "
                "\"eval_ms\": %.3f, \"image_ms\": %.3f, \"accumulate_ms\": %.3f, "
                "\"summarize_ms\": %.3f, \"eval_cpu_ms\": %.3f}\n", (long long)NI,
                (long long)set.n_gt, (long long)set.n_dt, t1 - t0, t_img - t0, t_acc - t_img,
                t1 - t_acc, c1 - c0);

    }
    int64_t T = p.n_iou, R = p.n_rec, K = p.use_cats || convention != YLE_COCO ? p.n_cat : 1;
    int64_t A = p.n_area, M = p.n_max_dets;
    if (convention == YLE_COCO) {
        for (int i = 0; have_stats && i < 12; i++) {
            char line[256];
            yle_summary_line(&p, i, stats[i], line, sizeof line);
            puts(line);
        }
        if (!have_stats)
            fprintf(stderr, "yololoss-eval: summarize needs 3 maxDets; use --dump for the arrays\n");
    } else {
        for (int64_t t = 0; t < T; t++) {
            if (T > 1)
                printf("IoU threshold %g\n", p.iou_thrs[t]);
            for (int64_t k = 0; k < K; k++) {
                int64_t gk = yle_find_id(set.cat_ids, set.n_cat, p.cat_ids[k]);
                const char *name = gk >= 0 && set.cat_names[gk][0] ? set.cat_names[gk] : NULL;
                char id[32], v[32];
                snprintf(id, sizeof id, "%lld", (long long)p.cat_ids[k]);
                printf("AP for %s = %s\n", name ? name : id, fmt4(ap[t * K + k], v, sizeof v));
            }
            char v[32];
            printf("Mean AP = %s\n", fmt4(yle_voc_map(&p, ap, (int)t), v, sizeof v));
        }
    }
    status = 0;
    if (dump_dir) {
        mkdir(dump_dir, 0777);
        if (convention == YLE_COCO) {
            int64_t s5[5] = {T, R, K, A, M}, s4[4] = {T, K, A, M}, s1[1] = {12};
            if (dump(dump_dir, "precision.npy", 5, s5, prec) ||
                dump(dump_dir, "recall.npy", 4, s4, recl) ||
                dump(dump_dir, "scores.npy", 5, s5, scores) ||
                (have_stats && dump(dump_dir, "stats.npy", 1, s1, stats)))
                status = 2;
        } else {
            int64_t s2[2] = {T, K};
            if (dump(dump_dir, "ap.npy", 2, s2, ap))
                status = 2;
        }
    }
    goto out;
oom:
    fprintf(stderr, "yololoss-eval: out of memory\n");
    status = 1;
out:
    free(gstart);
    free(dstart);
    free(gts);
    free(dts);
    free(res);
    free(goff);
    free(roff);
    free(groups);
    free(recs);
    free(scratch);
    free(ascratch);
    free(prec);
    free(recl);
    free(scores);
    free(ap);
    free(work);
out_params:
    free(img_ids);
    free(cat_ids);
    ycj_free(&set);
    return status;
}
