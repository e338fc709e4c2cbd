/*
 * shm_endpoints.c: the HTTP side of Triton's system shared-memory extension (the registry
 * is shm.c, which the parsers and the fuzz target link without HTTP).
 *
 *   POST /v2/systemsharedmemory/region/{name}/register   {"key", "offset", "byte_size"}
 *   POST /v2/systemsharedmemory[/region/{name}]/unregister
 *   GET  /v2/systemsharedmemory[/region/{name}]/status
 */
#include "shm.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static enum MHD_Result serve_register(yls_request *r, yls_shm *s)
{
    yls_fail f = {0};
    const char *name = r->route.region;
    json_error_t jerr;
    json_t *root = r->body.data ? json_loadb((const char *)r->body.data, r->body.len,
                                             JSON_REJECT_DUPLICATES, &jerr)
                                : NULL;
    if (!root)
        return yls_reply_error(r, 400,
                               "register region '%s': the body must be a JSON object "
                               "{\"key\", \"offset\", \"byte_size\"}%s%s",
                               name, r->body.data ? ": " : "", r->body.data ? jerr.text : "");
    const json_t *key = NULL, *offset = NULL, *size = NULL;
    const char *k;
    json_t *v;
    if (!json_is_object(root)) {
        json_decref(root);
        return yls_reply_error(r, 400, "register region '%s': the body must be a JSON object",
                               name);
    }
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "key"))
            key = v;
        else if (!strcmp(k, "offset"))
            offset = v;
        else if (!strcmp(k, "byte_size"))
            size = v;
        else {
            yls_fail_set(&f, 400, "register region '%s': unknown key '%.64s' (key, offset, "
                         "byte_size)", name, k);
            break;
        }
    }
    if (!f.status && !json_is_string(key))
        yls_fail_set(&f, 400, "register region '%s': \"key\" must be a string", name);
    if (!f.status && offset && (!json_is_integer(offset) || json_integer_value(offset) < 0))
        yls_fail_set(&f, 400, "register region '%s': \"offset\" must be a non-negative integer",
                     name);
    if (!f.status && (!json_is_integer(size) || json_integer_value(size) < 0))
        yls_fail_set(&f, 400,
                     "register region '%s': \"byte_size\" must be a non-negative integer", name);
    if (!f.status)
        yls_shm_register(s, name, json_string_value(key),
                         offset ? (uint64_t)json_integer_value(offset) : 0,
                         (uint64_t)json_integer_value(size), &f);
    json_decref(root);
    if (f.status)
        return yls_reply_fail(r, &f);
    return yls_reply_json(r, 200, strdup("{}"));
}

static enum MHD_Result off(yls_request *r)
{
    return yls_reply_error(r, 400,
                           "system shared memory is off on this daemon (on by default only when "
                           "it listens on loopback; --shared-memory on)");
}

enum MHD_Result yls_ep_shm_register(yls_request *r)
{
    return r->srv->shm ? serve_register(r, r->srv->shm) : off(r);
}

enum MHD_Result yls_ep_shm_unregister(yls_request *r)
{
    if (!r->srv->shm)
        return off(r);
    yls_shm_unregister(r->srv->shm, r->route.region[0] ? r->route.region : NULL);
    return yls_reply_json(r, 200, strdup("{}"));
}

enum MHD_Result yls_ep_shm_status(yls_request *r)
{
    if (!r->srv->shm)
        return off(r);
    yls_fail f = {0};
    char *json;
    if (yls_shm_status(r->srv->shm, r->route.region[0] ? r->route.region : NULL, &json, &f))
        return yls_reply_fail(r, &f);
    return yls_reply_json(r, 200, json);
}
