/*
 * fail.c: yls_fail, a status and a message carried up from wherever a request goes wrong
 * to the one error reply (errors.c). Kept apart so that the parsers link without HTTP.
 */
#include "server.h"

#include <stdio.h>

int yls_fail_set(yls_fail *f, unsigned status, const char *fmt, ...)
{
    if (f->status)
        return -1;
    f->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    return -1;
}
