/*
 * encoding.c: HTTP content codings with zlib: gzip and deflate request bodies (inflated
 * with a hard output limit, so a small bomb cannot take memory) and compressed responses.
 */
#include "server.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

/* Trim spaces and tabs at both ends of s[0..*n); returns the new start. */
static const char *trim(const char *s, size_t *n)
{
    while (*n && (*s == ' ' || *s == '\t')) {
        s++;
        (*n)--;
    }
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

static bool token_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

int yls_encoding_parse(const char *value, yls_encoding *enc)
{
    *enc = YLS_ENC_IDENTITY;
    if (!value)
        return 0;
    size_t n = strlen(value);
    const char *s = trim(value, &n);
    if (n == 0 || token_is(s, n, "identity"))
        return 0;
    if (token_is(s, n, "gzip") || token_is(s, n, "x-gzip")) {
        *enc = YLS_ENC_GZIP;
        return 0;
    }
    if (token_is(s, n, "deflate")) {
        *enc = YLS_ENC_DEFLATE;
        return 0;
    }
    return -1;
}

yls_encoding yls_encoding_accept(const char *value)
{
    if (!value)
        return YLS_ENC_IDENTITY;
    double q_gzip = -1, q_deflate = -1, q_any = -1;
    const char *p = value;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *semi = memchr(p, ';', len);
        size_t tlen = semi ? (size_t)(semi - p) : len;
        const char *tok = trim(p, &tlen);
        double q = 1;
        if (semi) {
            const char *qs = semi + 1;
            while (qs < p + len && (*qs == ' ' || *qs == '\t'))
                qs++;
            if (qs + 2 <= p + len && (qs[0] == 'q' || qs[0] == 'Q') && qs[1] == '=')
                q = strtod(qs + 2, NULL);
        }
        if (token_is(tok, tlen, "gzip") || token_is(tok, tlen, "x-gzip"))
            q_gzip = q;
        else if (token_is(tok, tlen, "deflate"))
            q_deflate = q;
        else if (token_is(tok, tlen, "*"))
            q_any = q;
        p += len;
        if (*p == ',')
            p++;
    }
    if (q_gzip < 0)
        q_gzip = q_any;
    if (q_deflate < 0)
        q_deflate = q_any;
    if (q_gzip > 0 && q_gzip >= q_deflate)
        return YLS_ENC_GZIP;
    if (q_deflate > 0)
        return YLS_ENC_DEFLATE;
    return YLS_ENC_IDENTITY;
}

const char *yls_encoding_name(yls_encoding enc)
{
    return enc == YLS_ENC_GZIP ? "gzip" : enc == YLS_ENC_DEFLATE ? "deflate" : "identity";
}

/* --------------------------------------------------------------------------------------- */

/* One inflate pass with the given window bits. 1: the data is not in this format (for the
 * deflate fallback to raw), 0: done, -1: failure in f. */
static int inflate_with(int wbits, yls_encoding enc, const uint8_t *in, size_t in_len,
                        size_t limit, size_t pad, uint8_t **base_out, size_t *out_len,
                        yls_fail *f)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, wbits) != Z_OK)
        return yls_fail_set(f, 500, "zlib: cannot start inflating");
    size_t cap = in_len < limit / 4 ? in_len * 4 : limit;
    if (cap < 65536)
        cap = limit < 65536 ? limit : 65536;
    uint8_t *base = yls_big_alloc(pad + cap + 1);
    if (!base) {
        inflateEnd(&zs);
        return yls_fail_set(f, 500, "out of memory inflating the body");
    }
    size_t in_pos = 0, len = 0;
    int rc = -1, zr;
    for (;;) {
        if (len == cap) {
            if (cap == limit) {
                /* full: is there any more output? inflate into a one-byte spare */
                uint8_t spare;
                zs.next_out = &spare;
                zs.avail_out = 1;
                zs.next_in = (Bytef *)(in + in_pos);
                zs.avail_in = (uInt)(in_len - in_pos < UINT_MAX ? in_len - in_pos : UINT_MAX);
                size_t before = zs.avail_in;
                zr = inflate(&zs, Z_NO_FLUSH);
                in_pos += before - zs.avail_in;
                if (zr == Z_STREAM_END && zs.avail_out == 1)
                    goto ended;
                if (zs.avail_out == 0) {
                    yls_fail_set(f, 413,
                                 "the %s body inflates past the limit of %zu bytes",
                                 yls_encoding_name(enc), limit);
                    goto out;
                }
                goto check;
            }
            size_t ncap = cap * 2 < limit && cap * 2 > cap ? cap * 2 : limit;
            uint8_t *nb = yls_big_realloc(base, pad + ncap + 1);
            if (!nb) {
                yls_fail_set(f, 500, "out of memory inflating the body");
                goto out;
            }
            base = nb;
            cap = ncap;
        }
        zs.next_out = base + pad + len;
        zs.avail_out = (uInt)(cap - len < UINT_MAX ? cap - len : UINT_MAX);
        zs.next_in = (Bytef *)(in + in_pos);
        zs.avail_in = (uInt)(in_len - in_pos < UINT_MAX ? in_len - in_pos : UINT_MAX);
        size_t before_in = zs.avail_in, before_out = zs.avail_out;
        zr = inflate(&zs, Z_NO_FLUSH);
        in_pos += before_in - zs.avail_in;
        len += before_out - zs.avail_out;
        if (zr == Z_STREAM_END)
            goto ended;
    check:
        if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
            if (len == 0 && wbits == 15) {
                rc = 1; /* not zlib-wrapped: the caller retries raw deflate */
                goto out;
            }
            yls_fail_set(f, 400, "the %s body is corrupt (%s)", yls_encoding_name(enc),
                         zs.msg ? zs.msg : "bad data");
            goto out;
        }
        if (zr == Z_MEM_ERROR) {
            yls_fail_set(f, 500, "out of memory inflating the body");
            goto out;
        }
        if (in_pos == in_len && zs.avail_out > 0) {
            yls_fail_set(f, 400, "the %s body is truncated (the stream does not end)",
                         yls_encoding_name(enc));
            goto out;
        }
    }
ended:
    if (in_pos != in_len) {
        yls_fail_set(f, 400, "the %s body has %zu bytes after the end of its stream",
                     yls_encoding_name(enc), in_len - in_pos);
        goto out;
    }
    *base_out = base;
    *out_len = len;
    base = NULL;
    rc = 0;
out:
    yls_big_free(base);
    inflateEnd(&zs);
    return rc;
}

int yls_inflate(yls_encoding enc, const uint8_t *in, size_t in_len, size_t limit, size_t pad,
                uint8_t **base, uint8_t **out, size_t *out_len, yls_fail *f)
{
    int rc = inflate_with(enc == YLS_ENC_GZIP ? 15 + 16 : 15, enc, in, in_len, limit, pad, base,
                          out_len, f);
    if (rc == 1) /* "deflate" that is raw deflate, as some clients send it */
        rc = inflate_with(-15, enc, in, in_len, limit, pad, base, out_len, f);
    if (rc == 0)
        *out = *base + pad;
    return rc ? -1 : 0;
}

/* Run deflate until it has taken all input (flush Z_NO_FLUSH) or ended (Z_FINISH), growing
 * the output buffer when it fills. */
static int deflate_step(z_stream *zs, int flush, uint8_t **buf, size_t *cap, size_t *len)
{
    for (;;) {
        if (*len == *cap) {
            size_t ncap = *cap * 2;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = ncap;
        }
        zs->next_out = *buf + *len;
        zs->avail_out = (uInt)(*cap - *len < UINT_MAX ? *cap - *len : UINT_MAX);
        size_t before = zs->avail_out;
        int zr = deflate(zs, flush);
        *len += before - zs->avail_out;
        if (zr == Z_STREAM_END)
            return 0;
        if (zr != Z_OK && zr != Z_BUF_ERROR)
            return -1;
        if (flush == Z_NO_FLUSH && zs->avail_in == 0)
            return 0;
    }
}

int yls_deflate(yls_encoding enc, const struct MHD_IoVec *iov, int niov, uint8_t **out,
                size_t *out_len, yls_fail *f)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, enc == YLS_ENC_GZIP ? 15 + 16 : 15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return yls_fail_set(f, 500, "zlib: cannot start compressing");
    uLong total = 0;
    for (int i = 0; i < niov; i++)
        total += iov[i].iov_len;
    size_t cap = deflateBound(&zs, total) + 64, len = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : -1;
    for (int i = 0; i < niov && rc == 0; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0 && rc == 0) {
            size_t chunk = left < UINT_MAX ? left : UINT_MAX;
            zs.next_in = (Bytef *)p;
            zs.avail_in = (uInt)chunk;
            rc = deflate_step(&zs, Z_NO_FLUSH, &buf, &cap, &len);
            p += chunk;
            left -= chunk;
        }
    }
    if (rc == 0)
        rc = deflate_step(&zs, Z_FINISH, &buf, &cap, &len);
    deflateEnd(&zs);
    if (rc) {
        free(buf);
        return yls_fail_set(f, 500, "zlib: compressing the response failed");
    }
    *out = buf;
    *out_len = len;
    return 0;
}
