/*
 * reply.c: the one reply helper every endpoint answers through (errors.c builds the error
 * bodies on it, so nothing here calls errors.c), the answer when memory is out, and the
 * headers every monitoring response carries.
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

/* YLOLOSSD_FAULT=reply-oom (tests only): every error reply fails to allocate, its body and
 * the fallback both, as when memory is exhausted. Read once. */
bool yls_fault_reply_oom(void)
{
    static int v = -1;
    if (v < 0) {
        const char *f = getenv("YLOLOSSD_FAULT");
        v = f && !strcmp(f, "reply-oom");
    }
    return v;
}

/*
 * No body could be made (out of memory). A request inside the access handler can say
 * MHD_NO and libmicrohttpd closes its connection; a suspended one (an answer from the
 * pool or the history thread) cannot, and used to stay suspended forever, holding its
 * slot and stopping shutdown. So: a body that needs no allocation first, and when even
 * the response object cannot be made, close the connection (yls_reply_none).
 */
enum MHD_Result yls_reply_oom(yls_request *r, unsigned status)
{
    static const char oom[] = "{\"error\":\"out of memory making the answer; retry later\"}";
    struct MHD_Response *resp =
        yls_fault_reply_oom() ? NULL
                              : MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                                                MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return yls_reply_none(r);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    return yls_reply(r, status >= 500 ? status : 503, resp, sizeof oom - 1);
}

enum MHD_Result yls_reply_json(yls_request *r, unsigned status, char *text)
{
    if (!text)
        return yls_reply_oom(r, 500);
    size_t len = strlen(text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return yls_reply_oom(r, 500);
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
