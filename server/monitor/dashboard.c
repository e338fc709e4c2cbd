/*
 * dashboard.c: GET / (index.html) and GET /assets/{name}: the dashboard, served from the
 * files embedded at build time (dashboard_assets.h), so the daemon works offline with no
 * file beside it. Every monitoring response carries yls_safe_headers: a Content-Security-
 * Policy that allows only the daemon's own scripts, styles and connections.
 */
#include "server.h"

#include <string.h>

#include "dashboard_assets.h"

void yls_safe_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                            "form-action 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
}

enum MHD_Result yls_dashboard_serve(yls_request *r)
{
    const char *name = r->route.asset;
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
