/*
 * golden_case.c: the golden case directories (see golden_case.h).
 */
#include "golden_case.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- golden case directories -------------------------------------------------------- */

static int file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    fclose(f);
    return 1;
}

static void strip(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
}

static int read_config(golden_case *c, char *err, size_t errlen)
{
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/config.txt", c->dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    int n_anchor_values = -1, have_thresh = 0, rc = 0, have_dk = 0, n_layer_lines = 0;
    int layer_mask[YL_MAX_LAYERS][YL_MAX_LAYER_ANCHORS], layer_n[YL_MAX_LAYERS] = {0},
        layer_stride[YL_MAX_LAYERS] = {0};
    yl_darknet_params dk = {0};
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        strip(line);
        if (line[0] == '\0' || line[0] == '#')
            continue;
        if (strncmp(line, "anchors ", 8) == 0) {
            char *p = line + 8, *q;
            n_anchor_values = 0;
            for (;;) {
                double v = strtod(p, &q);
                if (q == p)
                    break;
                if (n_anchor_values == 18) {
                    rc = fail(err, errlen, "%s: more than 18 anchor values", path);
                    break;
                }
                c->cfg.anchors[n_anchor_values++] = v;
                p = q;
            }
        } else if (strncmp(line, "ignore_thresh ", 14) == 0) {
            char *q;
            c->cfg.ignore_thresh = strtod(line + 14, &q);
            have_thresh = q != line + 14;
        } else if (strncmp(line, "definition ", 11) == 0) {
            c->cfg.definition = yl_definition_from_name(line + 11);
            if (c->cfg.definition < 0)
                rc = fail(err, errlen, "%s: unknown definition '%s'", path, line + 11);
        } else if (strncmp(line, "truth_thresh ", 13) == 0) {
            c->cfg.darknet.truth_thresh = strtod(line + 13, NULL);
            have_dk |= 1;
        } else if (strncmp(line, "fp32 ", 5) == 0) {
            c->cfg.darknet.fp32 = atoi(line + 5);
            have_dk |= 2;
        } else if (strncmp(line, "max_truths ", 11) == 0) {
            c->cfg.darknet.max_truths = atoi(line + 11);
            have_dk |= 4;
        } else if (strncmp(line, "layer ", 6) == 0) {
            /* layer L STRIDE MASK... : an explicit descriptor layer */
            int l, st, off, k = 0, v;
            char *q = line + 6;
            if (sscanf(q, "%d %d%n", &l, &st, &off) != 2 || l < 0 || l >= YL_MAX_LAYERS) {
                rc = fail(err, errlen, "%s: bad line '%s'", path, line);
                break;
            }
            q += off;
            while (k < YL_MAX_LAYER_ANCHORS && sscanf(q, "%d%n", &v, &off) == 1) {
                layer_mask[l][k++] = v;
                q += off;
            }
            layer_n[l] = k;
            layer_stride[l] = st;
            n_layer_lines = l + 1 > n_layer_lines ? l + 1 : n_layer_lines;
        } else if (strncmp(line, "bf16 ", 5) == 0) {
            int l;
            char extra;
            if (sscanf(line + 5, "output_%d%c", &l, &extra) == 1 && l >= 0 &&
                l < YL_MAX_LAYERS)
                c->output_bf16[l] = 1;
            else if (sscanf(line + 5, "y_true_%d%c", &l, &extra) == 1 && l >= 0 &&
                     l < YL_MAX_LAYERS)
                c->y_true_bf16[l] = 1;
            else
                rc = fail(err, errlen, "%s: bad line '%s'", path, line);
        } else {
            rc = fail(err, errlen, "%s: unknown line '%s'", path, line);
        }
    }
    fclose(f);
    if (rc != 0)
        return rc;
    if (!have_thresh)
        return fail(err, errlen, "%s: no ignore_thresh", path);
    if (c->cfg.definition != YL_DEF_KERAS) {
        /* the definition's default model for 9 or 6 anchors, then what the file gives */
        yl_config given = c->cfg;
        int na = n_anchor_values / 2;
        dk = given.darknet;
        if (yl_config_model(&c->cfg, given.definition, n_layer_lines ? 9 : na) != YL_OK)
            return fail(err, errlen, "%s: no default model for %d anchors", path, na);
        memcpy(c->cfg.anchors, given.anchors, sizeof given.anchors);
        c->cfg.num_anchors = na;
        c->cfg.ignore_thresh = given.ignore_thresh;
        if (have_dk & 1)
            c->cfg.darknet.truth_thresh = dk.truth_thresh;
        if (have_dk & 2)
            c->cfg.darknet.fp32 = dk.fp32;
        if (have_dk & 4)
            c->cfg.darknet.max_truths = dk.max_truths;
        if (n_layer_lines) {
            c->cfg.num_layers = n_layer_lines;
            for (int l = 0; l < n_layer_lines; l++) {
                c->cfg.layer_anchors[l] = layer_n[l];
                c->cfg.stride[l] = layer_stride[l];
                for (int k = 0; k < layer_n[l]; k++)
                    c->cfg.mask[l][k] = layer_mask[l][k];
            }
        }
        c->num_layers = c->cfg.num_layers;
        return 0;
    }
    if (n_anchor_values != 12 && n_anchor_values != 18)
        return fail(err, errlen, "%s: need 12 or 18 anchor values, got %d", path,
                    n_anchor_values);
    c->cfg.num_anchors = n_anchor_values / 2;
    c->num_layers = c->cfg.num_anchors / 3;
    return 0;
}

/* Read name.npy of the case and make a tensor view of it. */
static int load_tensor(golden_case *c, const char *name, int bf16, npyf_array *a,
                       yl_tensor *t, char *err, size_t errlen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s.npy", c->dir, name);
    if (npyf_read(path, a, err, errlen) != 0)
        return -1;
    if (a->dtype == NPYF_U16 && !bf16)
        return fail(err, errlen, "%s: <u2 data but config.txt has no 'bf16 %s'", path, name);
    if (bf16 && a->dtype != NPYF_U16)
        return fail(err, errlen, "%s: config.txt says bf16 but the dtype is %s", path,
                    npyf_descr(a->dtype));
    memset(t, 0, sizeof *t);
    t->data = a->data;
    t->dtype = a->dtype == NPYF_F16 ? YL_F16
             : a->dtype == NPYF_F32 ? YL_F32
             : a->dtype == NPYF_F64 ? YL_F64
                                   : YL_BF16;
    t->ndim = a->ndim;
    for (int d = 0; d < a->ndim; d++)
        t->shape[d] = a->shape[d];
    return 0;
}

int case_load(const char *dir, golden_case *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (strlen(dir) >= sizeof c->dir)
        return fail(err, errlen, "%s: path too long", dir);
    strcpy(c->dir, dir);
    if (read_config(c, err, errlen) != 0)
        goto bad;
    char name[32], path[600];
    for (int l = 0; l < c->num_layers; l++) {
        snprintf(name, sizeof name, "output_%d", l);
        if (load_tensor(c, name, c->output_bf16[l], &c->output[l], &c->t_output[l], err,
                        errlen) != 0)
            goto bad;
    }
    const char *box_name = c->cfg.definition == YL_DEF_DARKNET ? "truths" : "boxes";
    snprintf(path, sizeof path, "%s/%s.npy", dir, box_name);
    c->has_boxes = file_exists(path);
    if (c->has_boxes) {
        if (load_tensor(c, box_name, 0, &c->boxes, &c->t_boxes, err, errlen) != 0)
            goto bad;
    } else {
        for (int l = 0; l < c->num_layers; l++) {
            snprintf(name, sizeof name, "y_true_%d", l);
            if (load_tensor(c, name, c->y_true_bf16[l], &c->y_true[l], &c->t_y_true[l], err,
                            errlen) != 0)
                goto bad;
        }
    }
    snprintf(path, sizeof path, "%s/expect_error.txt", dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        char line[512];
        int ok = fgets(line, sizeof line, f) != NULL;
        fclose(f);
        if (ok)
            strip(line);
        char *sp = ok ? strchr(line, ' ') : NULL;
        if (sp == NULL || (size_t)(sp - line) >= sizeof c->expect_code ||
            strlen(sp + 1) >= sizeof c->expect_substr) {
            fail(err, errlen, "%s: want 'YL_CODE substring'", path);
            goto bad;
        }
        *sp = '\0';
        strcpy(c->expect_code, line);
        strcpy(c->expect_substr, sp + 1);
        c->is_error = 1;
    }
    return 0;
bad:
    case_free(c);
    return -1;
}

void case_free(golden_case *c)
{
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        npyf_free(&c->output[l]);
        npyf_free(&c->y_true[l]);
    }
    npyf_free(&c->boxes);
}

void case_output_free(case_output *out)
{
    free(out->image_terms);
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(out->grad[l]);
        free(out->grad64[l]);
        free(out->y_true[l]);
    }
    memset(out, 0, sizeof *out);
}

static int harness_oom(yl_error *err)
{
    err->code = YL_ENOMEM;
    snprintf(err->msg, sizeof err->msg, "test harness: out of memory");
    return YL_ENOMEM;
}

int case_run(const golden_case *c, int nthreads, int want_grad, case_output *out,
             yl_error *err)
{
    yl_error local;
    if (err == NULL)
        err = &local;
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    yl_problem p;
    int rc = yl_problem_init(&p, &c->cfg, c->t_output, c->num_layers,
                             c->has_boxes ? &c->t_boxes : NULL,
                             c->has_boxes ? NULL : c->t_y_true,
                             c->has_boxes ? 0 : c->num_layers, err);
    if (rc != YL_OK)
        return rc;
    out->num_layers = p.num_layers;
    out->batch = p.batch;
    out->image_terms = malloc((size_t)p.batch * 4 * sizeof(double) + 1);
    if (out->image_terms == NULL)
        return harness_oom(err);
    memset(out->image_terms, 0xff, (size_t)p.batch * 4 * sizeof(double));
    yl_grads g = {.dtype = want_grad == CASE_GRAD_F64 ? YL_F64 : YL_F32};
    size_t es = yl_dtype_size(g.dtype);
    if (want_grad) {
        for (int l = 0; l < c->num_layers; l++) {
            out->grad_count[l] = c->output[l].count;
            g.layer[l] = malloc((size_t)c->output[l].count * es + 1);
            if (g.layer[l] == NULL)
                return harness_oom(err);
            if (want_grad == CASE_GRAD_F64)
                out->grad64[l] = g.layer[l];
            else
                out->grad[l] = g.layer[l];
            /* 0xff bytes are NaNs: an element the core does not write cannot pass */
            memset(g.layer[l], 0xff, (size_t)c->output[l].count * es);
        }
    }
    memset(&out->r, 0, sizeof out->r);
    rc = yl_compute(&p, nthreads, want_grad ? &g : NULL, &out->r, out->image_terms, err);
    if (rc != YL_OK)
        return rc;
    if (c->has_boxes && c->cfg.definition == YL_DEF_KERAS) {
        for (int l = 0; l < p.num_layers; l++) {
            int64_t *s = out->y_true_shape[l];
            s[0] = p.batch;
            s[1] = p.grid_h[l];
            s[2] = p.grid_w[l];
            s[3] = 3;
            s[4] = 5 + p.num_classes;
            out->y_true_count[l] = s[0] * s[1] * s[2] * s[3] * s[4];
            out->y_true[l] = malloc((size_t)out->y_true_count[l] * sizeof(float) + 1);
            if (out->y_true[l] == NULL)
                return harness_oom(err);
            memset(out->y_true[l], 0xff, (size_t)out->y_true_count[l] * sizeof(float));
        }
        rc = yl_boxes_to_y_true(&p, out->y_true, err);
        if (rc != YL_OK)
            return rc;
    }
    return YL_OK;
}
