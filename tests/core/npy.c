/*
 * npy.c: .npy files, and the golden case directories built from them (see npy.h).
 */
#include "npy.h"

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

static const struct {
    const char *descr;
    int dtype;
    size_t size;
} npy_types[] = {
    {"<f2", NPY_F16, 2},
    {"<f4", NPY_F32, 4},
    {"<f8", NPY_F64, 8},
    {"<u2", NPY_U16, 2},
};
#define NPY_NTYPES (sizeof npy_types / sizeof npy_types[0])

const char *npy_descr(int dtype)
{
    for (size_t i = 0; i < NPY_NTYPES; i++)
        if (npy_types[i].dtype == dtype)
            return npy_types[i].descr;
    return NULL;
}

void npy_free(npy_array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* The whole file into a malloc'd buffer. */
static int read_file(const char *path, unsigned char **buf, size_t *len, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    if (b == NULL) {
        fclose(f);
        return fail(err, errlen, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                fclose(f);
                return fail(err, errlen, "%s: out of memory", path);
            }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return fail(err, errlen, "%s: read error", path);
    }
    *buf = b;
    *len = n;
    return 0;
}

/* Position just after `'key':` (and any spaces) in the header, or NULL. */
static const char *header_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (p == NULL)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ')
        p++;
    return p;
}

static int parse_header(const char *path, const char *h, npy_array *out, char *err,
                        size_t errlen)
{
    const char *p = header_value(h, "descr");
    if (p == NULL || (*p != '\'' && *p != '"'))
        return fail(err, errlen, "%s: header has no 'descr'", path);
    char quote = *p++;
    const char *end = strchr(p, quote);
    if (end == NULL || end - p >= 16)
        return fail(err, errlen, "%s: bad 'descr' in header", path);
    char descr[16];
    memcpy(descr, p, (size_t)(end - p));
    descr[end - p] = '\0';
    size_t t;
    for (t = 0; t < NPY_NTYPES; t++)
        if (strcmp(descr, npy_types[t].descr) == 0)
            break;
    if (t == NPY_NTYPES)
        return fail(err, errlen, "%s: dtype '%s' is not supported (<f2 <f4 <f8 <u2)", path,
                    descr);
    out->dtype = npy_types[t].dtype;
    out->elem_size = npy_types[t].size;

    p = header_value(h, "fortran_order");
    if (p == NULL)
        return fail(err, errlen, "%s: header has no 'fortran_order'", path);
    if (strncmp(p, "True", 4) == 0)
        return fail(err, errlen, "%s: Fortran order is not supported", path);
    if (strncmp(p, "False", 5) != 0)
        return fail(err, errlen, "%s: bad 'fortran_order' in header", path);

    p = header_value(h, "shape");
    if (p == NULL || *p != '(')
        return fail(err, errlen, "%s: header has no 'shape'", path);
    p++;
    out->ndim = 0;
    out->count = 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        if (!isdigit((unsigned char)*p))
            return fail(err, errlen, "%s: bad 'shape' in header", path);
        if (out->ndim == NPY_MAX_DIMS)
            return fail(err, errlen, "%s: more than %d dimensions", path, NPY_MAX_DIMS);
        char *q;
        errno = 0;
        long long v = strtoll(p, &q, 10);
        if (errno != 0 || v < 0 || v > ((int64_t)1 << 40))
            return fail(err, errlen, "%s: dimension out of range", path);
        out->shape[out->ndim++] = v;
        if (v != 0 && out->count > ((int64_t)1 << 40) / v)
            return fail(err, errlen, "%s: array too large", path);
        out->count *= v;
        p = q;
    }
    return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    unsigned char *buf = NULL;
    size_t len = 0;
    if (read_file(path, &buf, &len, err, errlen) != 0)
        return -1;
    int rc = -1;
    size_t hstart, hlen;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        fail(err, errlen, "%s: not a .npy file", path);
        goto out;
    }
    if (buf[6] == 1) {
        hstart = 10;
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    } else if (buf[6] == 2 || buf[6] == 3) {
        if (len < 12) {
            fail(err, errlen, "%s: truncated header", path);
            goto out;
        }
        hstart = 12;
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
               (size_t)buf[11] << 24;
    } else {
        fail(err, errlen, "%s: .npy format version %d.%d is not supported", path, buf[6],
             buf[7]);
        goto out;
    }
    if (hlen > len - hstart) {
        fail(err, errlen, "%s: truncated header", path);
        goto out;
    }
    char *h = malloc(hlen + 1);
    if (h == NULL) {
        fail(err, errlen, "%s: out of memory", path);
        goto out;
    }
    memcpy(h, buf + hstart, hlen);
    h[hlen] = '\0';
    int hrc = parse_header(path, h, out, err, errlen);
    free(h);
    if (hrc != 0)
        goto out;
    size_t want = (size_t)out->count * out->elem_size;
    size_t have = len - hstart - hlen;
    if (have != want) {
        fail(err, errlen, "%s: %zu data bytes, the header says %zu", path, have, want);
        goto out;
    }
    out->data = malloc(want > 0 ? want : 1);
    if (out->data == NULL) {
        fail(err, errlen, "%s: out of memory", path);
        goto out;
    }
    memcpy(out->data, buf + hstart + hlen, want);
    rc = 0;
out:
    free(buf);
    if (rc != 0)
        npy_free(out);
    return rc;
}

int npy_write(const char *path, const char *descr, int ndim, const int64_t *shape,
              const void *data, char *err, size_t errlen)
{
    size_t t;
    for (t = 0; t < NPY_NTYPES; t++)
        if (strcmp(descr, npy_types[t].descr) == 0)
            break;
    if (t == NPY_NTYPES)
        return fail(err, errlen, "%s: dtype '%s' is not supported", path, descr);
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return fail(err, errlen, "%s: %d dimensions", path, ndim);
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[d],
                      ndim == 1 ? "," : (d + 1 < ndim ? ", " : ""));
        count *= (size_t)shape[d];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* pad with spaces and a newline so that the data starts on a 64-byte boundary */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    size_t bytes = count * npy_types[t].size;
    ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return fail(err, errlen, "%s: write error", path);
    return 0;
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
    int n_anchor_values = -1, have_thresh = 0, rc = 0;
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
    if (n_anchor_values != 12 && n_anchor_values != 18)
        return fail(err, errlen, "%s: need 12 or 18 anchor values, got %d", path,
                    n_anchor_values);
    if (!have_thresh)
        return fail(err, errlen, "%s: no ignore_thresh", path);
    c->cfg.num_anchors = n_anchor_values / 2;
    c->num_layers = c->cfg.num_anchors / 3;
    return 0;
}

/* Read name.npy of the case and make a tensor view of it. */
static int load_tensor(golden_case *c, const char *name, int bf16, npy_array *a,
                       yl_tensor *t, char *err, size_t errlen)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s.npy", c->dir, name);
    if (npy_read(path, a, err, errlen) != 0)
        return -1;
    if (a->dtype == NPY_U16 && !bf16)
        return fail(err, errlen, "%s: <u2 data but config.txt has no 'bf16 %s'", path, name);
    if (bf16 && a->dtype != NPY_U16)
        return fail(err, errlen, "%s: config.txt says bf16 but the dtype is %s", path,
                    npy_descr(a->dtype));
    memset(t, 0, sizeof *t);
    t->data = a->data;
    t->dtype = a->dtype == NPY_F16 ? YL_F16
             : a->dtype == NPY_F32 ? YL_F32
             : a->dtype == NPY_F64 ? YL_F64
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
    snprintf(path, sizeof path, "%s/boxes.npy", dir);
    c->has_boxes = file_exists(path);
    if (c->has_boxes) {
        if (load_tensor(c, "boxes", 0, &c->boxes, &c->t_boxes, err, errlen) != 0)
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
        npy_free(&c->output[l]);
        npy_free(&c->y_true[l]);
    }
    npy_free(&c->boxes);
}

void case_output_free(case_output *out)
{
    free(out->image_terms);
    for (int l = 0; l < YL_MAX_LAYERS; l++) {
        free(out->grad[l]);
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
    if (want_grad) {
        for (int l = 0; l < c->num_layers; l++) {
            out->grad_count[l] = c->output[l].count;
            out->grad[l] = malloc((size_t)c->output[l].count * sizeof(float) + 1);
            if (out->grad[l] == NULL)
                return harness_oom(err);
            /* 0xff bytes are NaNs: an element the core does not write cannot pass */
            memset(out->grad[l], 0xff, (size_t)c->output[l].count * sizeof(float));
        }
    }
    memset(&out->r, 0, sizeof out->r);
    rc = yl_compute(&p, nthreads, want_grad ? out->grad : NULL, &out->r, out->image_terms,
                    err);
    if (rc != YL_OK)
        return rc;
    if (c->has_boxes) {
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
