/*
 * errors.c: the one error reply. Every failure, wherever found, becomes
 * {"error": "<message>"} with its status and the headers that status calls for:
 * 401 WWW-Authenticate, 405 Allow, 501 Accept-Encoding, 503 Retry-After. Built on reply.c
 * (which never calls back here: out of memory it answers with yls_reply_oom's fixed body).
 */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Messages quote what clients sent (paths, names): keep the JSON valid whatever the bytes. */
static json_t *message_string(char *msg)
{
    json_t *s = json_string(msg);
    if (s)
        return s;
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p >= 0x80 || (unsigned char)*p < 0x20)
            *p = '?';
    return json_string(msg);
}

static enum MHD_Result reply_message(yls_request *r, unsigned status, char *msg)
{
    json_t *o = json_object();
    json_object_set_new(o, "error", message_string(msg));
    char *text = yls_fault_reply_oom() ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return yls_reply_oom(r, status);
    size_t len = strlen(text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return yls_reply_oom(r, status);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    switch (status) {
    case 401:
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"" YLS_NAME "\"");
        break;
    case 405:
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
                                r->allow ? r->allow : "GET, HEAD");
        break;
    case 501:
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_ENCODING, "gzip, deflate");
        break;
    case 503:
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
        break;
    default:
        break;
    }
    return yls_reply(r, status, resp, len);
}

enum MHD_Result yls_reply_error(yls_request *r, unsigned status, const char *fmt, ...)
{
    char msg[YLS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_message(r, status, msg);
}

enum MHD_Result yls_reply_fail(yls_request *r, const yls_fail *f)
{
    char msg[YLS_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", f->msg);
    return reply_message(r, f->status ? f->status : 500, msg);
}
