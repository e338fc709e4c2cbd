/*
 * access_log.c: one line per request on stdout, when libmicrohttpd has finished with it:
 *
 *   2024-05-01T12:00:00.123Z 127.0.0.1 "POST /v2/models/yolov3/infer" 200 in=123456
 *       out=789 images=8 ms=12.345 [run=exp1 step=100] [aborted]
 *
 * (one line). status 0: the connection ended before an answer was made; "aborted": the
 * answer was not completely sent.
 */
#include "server.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

/* Client-supplied text, made safe for one log line: controls, quotes and backslashes as
 * \xNN. */
static const char *clean(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    for (; *s && o + 5 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

void yls_access_log(const yls_request *r, const char *client)
{
    uv_timeval64_t tv;
    char when[32] = "-";
    if (uv_gettimeofday(&tv) == 0) {
        time_t secs = (time_t)tv.tv_sec;
        struct tm tm;
        gmtime_r(&secs, &tm);
        size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof when - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    }
    double ms = (double)(uv_hrtime() - r->t_start) / 1e6;
    char extra[320] = "", run[256], path[1024], method[40];
    if (r->run[0] && r->has_step)
        snprintf(extra, sizeof extra, " run=%s step=%" PRId64, clean(r->run, run, sizeof run),
                 r->step);
    else if (r->run[0])
        snprintf(extra, sizeof extra, " run=%s", clean(r->run, run, sizeof run));
    else if (r->has_step)
        snprintf(extra, sizeof extra, " step=%" PRId64, r->step);
    printf("%s %s \"%s %s\" %u in=%" PRIu64 " out=%" PRIu64 " images=%" PRId64
           " ms=%.3f%s%s\n",
           when, client, clean(r->method, method, sizeof method), clean(r->path, path, sizeof path),
           r->status, r->bytes_in, r->bytes_out, r->images, ms,
           extra, r->completed_ok ? "" : " aborted");
}
