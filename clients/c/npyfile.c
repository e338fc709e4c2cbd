/*
 * npyfile.c: NumPy .npy files (see npyfile.h), for the CLI and the core's tests.
 */
#include "npyfile.h"

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
} npyf_types[] = {
    {"<f2", NPYF_F16, 2},
    {"<f4", NPYF_F32, 4},
    {"<f8", NPYF_F64, 8},
    {"<u2", NPYF_U16, 2},
};
#define NPYF_NTYPES (sizeof npyf_types / sizeof npyf_types[0])

const char *npyf_descr(int dtype)
{
    for (size_t i = 0; i < NPYF_NTYPES; i++)
        if (npyf_types[i].dtype == dtype)
            return npyf_types[i].descr;
    return "?";
}

void npyf_free(npyf_array *a)
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

static int parse_header(const char *path, const char *h, npyf_array *out, char *err,
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
    for (t = 0; t < NPYF_NTYPES; t++)
        if (strcmp(descr, npyf_types[t].descr) == 0)
            break;
    if (t == NPYF_NTYPES)
        return fail(err, errlen, "%s: dtype '%s' is not supported (<f2 <f4 <f8 <u2)", path,
                    descr);
    out->dtype = npyf_types[t].dtype;
    out->elem_size = npyf_types[t].size;

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
        if (out->ndim == NPYF_MAX_DIMS)
            return fail(err, errlen, "%s: more than %d dimensions", path, NPYF_MAX_DIMS);
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

int npyf_read(const char *path, npyf_array *out, char *err, size_t errlen)
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
        npyf_free(out);
    return rc;
}

int npyf_write(const char *path, const char *descr, int ndim, const int64_t *shape,
              const void *data, char *err, size_t errlen)
{
    size_t t;
    for (t = 0; t < NPYF_NTYPES; t++)
        if (strcmp(descr, npyf_types[t].descr) == 0)
            break;
    if (t == NPYF_NTYPES)
        return fail(err, errlen, "%s: dtype '%s' is not supported", path, descr);
    if (ndim < 0 || ndim > NPYF_MAX_DIMS)
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
    size_t bytes = count * npyf_types[t].size;
    ok = ok && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        return fail(err, errlen, "%s: write error", path);
    return 0;
}
