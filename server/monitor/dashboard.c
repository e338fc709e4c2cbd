/*
 * dashboard.c: GET / (index.html) and GET /assets/{name}: the dashboard, served from the
 * files embedded at build time (dashboard_assets.h), so the daemon works offline with no
 * file beside it. Every monitoring response carries yls_safe_headers (http/reply.c).
 */
#include "server.h"

#include <string.h>

#include "dashboard_assets.h"

enum MHD_Result yls_dashboard_serve(yls_request *r)
{
    const char *name = r->route.asset ? r->route.asset : "index.html"; /* / and /index.html */
    for (const yls_asset *a = yls_assets; a->name; a++) {
        if (strcmp(a->name, name) != 0)
            continue;
        struct MHD_Response *resp = MHD_create_response_from_buffer(
            a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        yls_safe_headers(resp);
        return yls_reply(r, 200, resp, a->len);
    }
    return yls_reply_error(r, 404, "no such dashboard file: %.100s", name);
}
