/*
 * eval_case: run the core on one case directory and write what it computed as .npy.
 *
 *     build/eval_case CASE_DIR OUT_DIR [--threads N] [--no-grad | --grad-f64]
 *
 * CASE_DIR holds config.txt, output_<l>.npy and boxes.npy or y_true_<l>.npy (the format
 * of tests/reference/make_golden.py). Writes OUT_DIR/loss.npy (1,), terms.npy (4,),
 * layer_terms.npy (L,4), image_terms.npy (B,4), stats.npy (L,8) as float64, grad_<l>.npy
 * (float32, the shape of output_<l>; float64 with --grad-f64) unless --no-grad, and for
 * boxes cases y_true_<l>.npy
 * (float32, (B,H,W,3,5+C)). Exit status 0 on success; 2 when the core refuses the input,
 * with `YL_XXX: message` on stderr and in OUT_DIR/error.txt; 1 for usage or I/O errors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "golden_case.h"
#include "yololoss.h"

static int usage(void)
{
    fprintf(stderr, "usage: eval_case CASE_DIR OUT_DIR [--threads N] [--no-grad | --grad-f64]\n");
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
        write_f64(dir, "stats", 2, st, &o->r.stats[0][0]) != 0)
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

int main(int argc, char **argv)
{
    const char *case_dir = NULL, *out_dir = NULL;
    int nthreads = 1, want_grad = CASE_GRAD_F32;
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
    int rc = case_run(&c, nthreads, want_grad, &o, &err);
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
    } else if (write_results(out_dir, &c, &o) != 0) {
        status = 1;
    }
    case_output_free(&o);
    case_free(&c);
    return status;
}
