/*
 * eval_case: run the core on one case directory and write what it computed as .npy.
 *
 *     build/eval_case CASE_DIR OUT_DIR [--threads N] [--no-grad | --grad-f64]
 *
 * CASE_DIR holds config.txt, output_<l>.npy and boxes.npy or y_true_<l>.npy (the format
 * of tests/reference/make_golden.py). Writes OUT_DIR/loss.npy (1,), terms.npy (4,),
 * layer_terms.npy (L,4), image_terms.npy (B,4), stats.npy (L,8), cost.npy (L,) as float64, grad_<l>.npy
 * (float32, the shape of output_<l>; float64 with --grad-f64) unless --no-grad, and for
 * boxes cases y_true_<l>.npy
 * (float32, (B,H,W,3,5+C)).
 *
 *     build/eval_case CASE_DIR OUT_DIR --decode SCORE,IOU,MAX_BOXES[,IMAGE_H,IMAGE_W]
 *
 * decodes every image instead (yldecode.h) and writes det_image.npy (N,), det_class.npy
 * (N,), det_score.npy (N,) and det_box.npy (N,4), all float64 (the project's .npy writer
 * has no integer types; image and class ids are exact in float64), the images'
 * detections one after the other. Exit status 0 on success; 2 when the core refuses the input,
 * with `YL_XXX: message` on stderr and in OUT_DIR/error.txt; 1 for usage or I/O errors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "golden_case.h"
#include "yldecode.h"
#include "yololoss.h"

static int usage(void)
{
    fprintf(stderr, "usage: eval_case CASE_DIR OUT_DIR [--threads N] [--no-grad | --grad-f64]\n"
                    "       eval_case CASE_DIR OUT_DIR --decode SCORE,IOU,MAX[,IMAGE_H,IMAGE_W]\n");
    return 1;
}

static int write_f64(const char *dir, const char *name, int ndim, const int64_t *shape,
                     const double *data)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npyf_write(path, "<f8", ndim, shape, data, err, sizeof err) != 0) {
        fprintf(stderr, "eval_case: %s\n", err);
        return -1;
    }
    return 0;
}

static int write_f32(const char *dir, const char *name, int ndim, const int64_t *shape,
                     const float *data)
{
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npyf_write(path, "<f4", ndim, shape, data, err, sizeof err) != 0) {
        fprintf(stderr, "eval_case: %s\n", err);
        return -1;
    }
    return 0;
}

static int write_results(const char *dir, const golden_case *c, const case_output *o)
{
    int L = o->num_layers;
    int64_t one = 1, four = 4, lt[2] = {L, 4}, st[2] = {L, YL_NUM_STATS},
            it[2] = {o->batch, 4};
    if (write_f64(dir, "loss", 1, &one, &o->r.loss) != 0 ||
        write_f64(dir, "terms", 1, &four, o->r.terms) != 0 ||
        write_f64(dir, "layer_terms", 2, lt, &o->r.layer_terms[0][0]) != 0 ||
        write_f64(dir, "image_terms", 2, it, o->image_terms) != 0 ||
        write_f64(dir, "stats", 2, st, &o->r.stats[0][0]) != 0 ||
        write_f64(dir, "cost", 1, lt, o->r.cost) != 0)
        return -1;
    char name[32];
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "grad_%d", l);
        if (o->grad[l] != NULL &&
            write_f32(dir, name, c->output[l].ndim, c->output[l].shape, o->grad[l]) != 0)
            return -1;
        if (o->grad64[l] != NULL &&
            write_f64(dir, name, c->output[l].ndim, c->output[l].shape, o->grad64[l]) != 0)
            return -1;
        if (o->y_true[l] != NULL) {
            snprintf(name, sizeof name, "y_true_%d", l);
            if (write_f32(dir, name, 5, o->y_true_shape[l], o->y_true[l]) != 0)
                return -1;
        }
    }
    return 0;
}

/* Every image's detections, concatenated, as the four det_*.npy. Returns the exit status. */
static int run_decode(const golden_case *c, const yl_decode_config *dc, const char *out_dir,
                      yl_error *err)
{
    yl_problem p;
    int rc = yl_problem_init(&p, &c->cfg, c->t_output, c->num_layers,
                             c->has_boxes ? &c->t_boxes : NULL, c->has_boxes ? NULL : c->t_y_true,
                             c->has_boxes ? 0 : c->num_layers, err);
    if (rc == YL_OK)
        rc = yl_decode_check(&p, dc, err);
    if (rc != YL_OK)
        return rc;
    int64_t per = yl_decode_max_detections(&p, dc), total = 0, n;
    void *scratch = malloc(yl_decode_scratch_size(&p) + 1);
    yl_detection *det = malloc((size_t)(per * p.batch + 1) * sizeof *det);
    double *img = malloc((size_t)(per * p.batch + 1) * sizeof *img);
    double *cls = malloc((size_t)(per * p.batch + 1) * sizeof *cls);
    double *score = malloc((size_t)(per * p.batch + 1) * sizeof *score);
    double *box = malloc((size_t)(per * p.batch + 1) * 4 * sizeof *box);
    if (!scratch || !det || !img || !cls || !score || !box) {
        fprintf(stderr, "eval_case: out of memory\n");
        exit(1);
    }
    for (int64_t b = 0; b < p.batch && rc == YL_OK; b++) {
        rc = yl_decode_image(&p, b, dc, scratch, det + total, &n, err);
        for (int64_t d = 0; rc == YL_OK && d < n; d++) {
            const yl_detection *x = &det[total + d];
            img[total + d] = (double)b;
            cls[total + d] = x->cls;
            score[total + d] = x->score;
            memcpy(box + 4 * (total + d), x->box, sizeof x->box);
        }
        total += rc == YL_OK ? n : 0;
    }
    if (rc == YL_OK) {
        char path[1024], msg[512];
        int64_t shape[2] = {total, 4};
        const struct { const char *name, *descr; const void *data; int ndim; } files[] = {
            {"det_image", "<f8", img, 1}, {"det_class", "<f8", cls, 1},
            {"det_score", "<f8", score, 1}, {"det_box", "<f8", box, 2}};
        for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
            snprintf(path, sizeof path, "%s/%s.npy", out_dir, files[f].name);
            if (npyf_write(path, files[f].descr, files[f].ndim, shape, files[f].data, msg,
                           sizeof msg) != 0) {
                fprintf(stderr, "eval_case: %s\n", msg);
                exit(1);
            }
        }
    }
    free(scratch);
    free(det);
    free(img);
    free(cls);
    free(score);
    free(box);
    return rc;
}

static int parse_decode(const char *arg, yl_decode_config *dc)
{
    double v[5] = {0, 0, 0, 0, 0};
    int n = 0;
    const char *s = arg;
    while (n < 5) {
        char *end;
        v[n++] = strtod(s, &end);
        if (end == s || (*end != ',' && *end != '\0'))
            return -1;
        if (*end == '\0')
            break;
        s = end + 1;
    }
    if (n != 3 && n != 5)
        return -1;
    yl_decode_config_default(dc);
    dc->score_threshold = v[0];
    dc->iou_threshold = v[1];
    dc->max_boxes = (int64_t)v[2];
    dc->image_h = v[3];
    dc->image_w = v[4];
    return 0;
}

int main(int argc, char **argv)
{
    const char *case_dir = NULL, *out_dir = NULL;
    int nthreads = 1, want_grad = CASE_GRAD_F32, decode = 0;
    yl_decode_config dc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v < 1 || v > 1024)
                return usage();
            nthreads = (int)v;
        } else if (strcmp(argv[i], "--no-grad") == 0) {
            want_grad = CASE_GRAD_NONE;
        } else if (strcmp(argv[i], "--grad-f64") == 0) {
            want_grad = CASE_GRAD_F64;
        } else if (strcmp(argv[i], "--decode") == 0 && i + 1 < argc) {
            if (parse_decode(argv[++i], &dc) != 0)
                return usage();
            decode = 1;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage();
        } else if (case_dir == NULL) {
            case_dir = argv[i];
        } else if (out_dir == NULL) {
            out_dir = argv[i];
        } else {
            return usage();
        }
    }
    if (case_dir == NULL || out_dir == NULL)
        return usage();
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "eval_case: %s: %s\n", out_dir, strerror(errno));
        return 1;
    }

    golden_case c;
    char msg[600];
    if (case_load(case_dir, &c, msg, sizeof msg) != 0) {
        fprintf(stderr, "eval_case: %s\n", msg);
        return 1;
    }
    case_output o;
    yl_error err;
    int status = 0;
    memset(&o, 0, sizeof o);
    int rc = decode ? run_decode(&c, &dc, out_dir, &err)
                    : case_run(&c, nthreads, want_grad, &o, &err);
    if (rc != YL_OK) {
        snprintf(msg, sizeof msg, "%s: %s", yl_err_name(rc), err.msg);
        fprintf(stderr, "%s\n", msg);
        char path[1024];
        snprintf(path, sizeof path, "%s/error.txt", out_dir);
        FILE *f = fopen(path, "w");
        if (f != NULL) {
            fprintf(f, "%s\n", msg);
            fclose(f);
        }
        status = 2;
    } else if (!decode && write_results(out_dir, &c, &o) != 0) {
        status = 1;
    }
    case_output_free(&o);
    case_free(&c);
    return status;
}
