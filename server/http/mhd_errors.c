/*
 * mhd_errors.c: libmicrohttpd's own error answers as JSON.
 *
 * libmicrohttpd answers some requests before the daemon sees them: headers over its
 * per-connection memory (431), a malformed request line, header or chunk (400), an
 * unsupported HTTP version (505), ... with small HTML pages compiled into the library, and
 * 0.9.75 has no option to replace them. A v2 client reads {"error": ...} from every
 * failure, so those pages are replaced here: the daemon defines MHD_queue_response, which
 * the dynamic linker resolves for libmicrohttpd's own calls too (it calls its exported
 * functions through the PLT), and passes every call on to the library's definition
 * (dlsym RTLD_NEXT). The daemon's own answers go through yls_mhd_queue and are passed on
 * untouched; an error answer queued by libmicrohttpd itself gets a JSON body with the
 * same status instead. tests/server/test_hardening.c checks 431 and 400 end to end, so a
 * build where the interposition does not happen (static linking) fails its tests.
 */
#define _GNU_SOURCE /* RTLD_NEXT */
#include "server.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum MHD_Result (*queue_fn)(struct MHD_Connection *, unsigned int, struct MHD_Response *);

static queue_fn real_queue;
static bool ours; /* inside yls_mhd_queue: loop thread only, like libmicrohttpd */

static queue_fn real(void)
{
    if (!real_queue) {
        void *p = dlsym(RTLD_NEXT, "MHD_queue_response");
        memcpy(&real_queue, &p, sizeof p);
    }
    return real_queue;
}

enum MHD_Result yls_mhd_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp)
{
    ours = true;
    enum MHD_Result ret = real()(c, status, resp);
    ours = false;
    return ret;
}

static const char *why(unsigned status)
{
    switch (status) {
    case 400: return "bad request: the request line, a header or the chunked body is malformed";
    case 413: return "the request line or headers are too large";
    case 414: return "the URL is too long";
    case 431: return "the request headers are too large (at most 256 KiB with the request line)";
    case 501: return "not implemented: an unsupported transfer coding or method";
    case 505: return "HTTP version not supported (HTTP/1.0 and HTTP/1.1 are)";
    default: return "the HTTP layer refused the request";
    }
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status,
                                   struct MHD_Response *resp)
{
    queue_fn q = real();
    if (!q)
        return MHD_NO;
    if (ours || status < 400)
        return q(c, status, resp);
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s (status %u)\"}", why(status), status);
    struct MHD_Response *json =
        n > 0 ? MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY) : NULL;
    if (!json)
        return q(c, status, resp); /* the library's page, rather than nothing */
    MHD_add_response_header(json, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(json, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = q(c, status, json);
    MHD_destroy_response(json);
    return ret;
}
