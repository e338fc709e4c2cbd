/*
 * auth.c: the bearer token of --token-file. Everything but the /v2/health endpoints needs
 * "Authorization: Bearer <token>"; the comparison takes the same time whatever the bytes.
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int yls_auth_load(yls_server *s, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--token-file %s: cannot open", path);
        return -1;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    bool more = !feof(f);
    fclose(f);
    buf[n] = '\0';
    /* the first line, without surrounding white space */
    char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    size_t len = strcspn(p, "\r\n");
    while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (more || len == 0 || memchr(p, '\0', len)) {
        snprintf(err, errlen, "--token-file %s: want one line with the token (1 to 4000 bytes)",
                 path);
        return -1;
    }
    s->token = malloc(len + 1);
    if (!s->token) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(s->token, p, len);
    s->token[len] = '\0';
    s->token_len = len;
    return 0;
}

bool yls_auth_ok(const yls_server *s, const char *authorization)
{
    if (!s->token)
        return true;
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *t = authorization + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    unsigned char diff = (unsigned char)(n != s->token_len);
    for (size_t i = 0; i < s->token_len; i++)
        diff |= (unsigned char)(s->token[i] ^ (i < n ? t[i] : 0));
    return diff == 0;
}
