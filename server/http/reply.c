/*
 * reply.c: the one reply helper every endpoint answers through (errors.c builds the error
 * bodies on it), and the headers every monitoring response carries.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>

enum MHD_Result yls_reply(yls_request *r, unsigned status, struct MHD_Response *resp,
                          uint64_t bytes)
{
    r->status = status;
    r->bytes_out = bytes;
    r->t_reply = uv_hrtime();
    if (r->suspended) {
        /* from an after-work callback: the handler queues it when libmicrohttpd calls back */
        r->response = resp;
        yls_request_resume(r);
        return MHD_YES;
    }
    enum MHD_Result ret = yls_mhd_queue(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result yls_reply_json(yls_request *r, unsigned status, char *text)
{
    if (!text)
        return yls_reply_error(r, 500, "out of memory");
    size_t len = strlen(text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return yls_reply_error(r, 500, "out of memory");
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return yls_reply(r, status, resp, len);
}

enum MHD_Result yls_reply_none(yls_request *r)
{
    r->status = 0;
    if (!r->suspended)
        return MHD_NO; /* inside the access handler: libmicrohttpd closes the connection */
    yls_request_abandon(r);
    return MHD_YES;
}

/* A Content-Security-Policy that allows only the daemon's own scripts, styles and
 * connections, on every monitoring response (the dashboard and what it reads). */
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
