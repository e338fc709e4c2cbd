/*
 * router.c: method and path to an endpoint (protocol.md's table).
 *
 *   GET  /v2/health/live | /v2/health/ready | /v2 | /v2/models/stats
 *   GET  /v2/models/{m}[/versions/{v}][/ready|/config|/stats]
 *   POST /v2/models/{m}[/versions/{v}]/infer
 *   GET  / | /assets/{name} | /metrics | /v1/runs
 *   GET  /v1/runs/{run}/steps | /v1/runs/{run}/steps.csv | /v1/runs/{run}/events
 *   DELETE /v1/runs/{run}
 * A run name is the (percent-decoded) rest of the path, so it may hold '/'; the endpoint
 * is told by the suffix.
 */
#include "server.h"

#include <string.h>

static bool is_get(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

bool yls_route_is_public(const char *method, const char *url)
{
    if (!strcmp(url, "/v2/health/live") || !strcmp(url, "/v2/health/ready"))
        return true;
    if (!is_get(method))
        return false;
    return !strcmp(url, "/") || !strncmp(url, "/assets/", 8) || !strcmp(url, "/metrics") ||
           !strncmp(url, "/v1/", 4);
}

/* The next path segment of *p (after a '/'): its start and length; *p moves past it. */
static bool next_segment(const char **p, const char **seg, size_t *len)
{
    if (**p != '/')
        return false;
    const char *s = *p + 1;
    const char *e = strchr(s, '/');
    *seg = s;
    *len = e ? (size_t)(e - s) : strlen(s);
    *p = s + *len;
    return true;
}

static bool seg_is(const char *seg, size_t len, const char *word)
{
    return strlen(word) == len && !memcmp(seg, word, len);
}

static int method_check(const char *method, bool want_post, const char **allow, yls_fail *f)
{
    if (want_post ? !strcmp(method, "POST") : is_get(method))
        return 0;
    *allow = want_post ? "POST" : "GET, HEAD";
    return yls_fail_set(f, 405, "method %s is not allowed here (use %s)", method, *allow);
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t *stem)
{
    size_t n = strlen(suffix);
    if (len < n || memcmp(s + len - n, suffix, n))
        return false;
    *stem = len - n;
    return true;
}

/* /v1/runs... */
static int route_v1(const char *method, const char *url, yls_route *out, const char **allow,
                    yls_fail *f)
{
    if (!strcmp(url, "/v1/runs") || !strcmp(url, "/v1/runs/")) {
        out->ep = YLS_EP_RUNS;
        return method_check(method, false, allow, f);
    }
    if (strncmp(url, "/v1/runs/", 9) != 0)
        return yls_fail_set(f, 404, "no such endpoint: %.200s", url);
    const char *name = url + 9;
    size_t len = strlen(name), stem = len;
    bool del = false;
    if (ends_with(name, len, "/steps", &stem))
        out->ep = YLS_EP_RUN_STEPS;
    else if (ends_with(name, len, "/steps.csv", &stem))
        out->ep = YLS_EP_RUN_CSV;
    else if (ends_with(name, len, "/events", &stem))
        out->ep = YLS_EP_RUN_EVENTS;
    else {
        out->ep = YLS_EP_RUN_DELETE;
        del = true;
    }
    if (stem == 0 || stem >= sizeof out->run) {
        out->ep = YLS_EP_NONE;
        return yls_fail_set(f, 404, "no such run: the name must have 1 to %zu bytes",
                            sizeof out->run - 1);
    }
    memcpy(out->run, name, stem);
    out->run[stem] = '\0';
    if (del) {
        if (!strcmp(method, "DELETE"))
            return 0;
        *allow = "DELETE";
        return yls_fail_set(f, 405, "method %s is not allowed here (use DELETE)", method);
    }
    return method_check(method, false, allow, f);
}

int yls_route_match(const yls_models *models, const char *method, const char *url,
                    yls_route *out, const char **allow, yls_fail *f)
{
    memset(out, 0, sizeof *out);
    const char *p = url, *seg;
    size_t len;
    if (!strcmp(url, "/v2") || !strcmp(url, "/v2/")) {
        out->ep = YLS_EP_SERVER_META;
        return method_check(method, false, allow, f);
    }
    if (!strcmp(url, "/v2/health/live") || !strcmp(url, "/v2/health/ready")) {
        out->ep = url[11] == 'l' ? YLS_EP_LIVE : YLS_EP_READY;
        return method_check(method, false, allow, f);
    }
    if (!strcmp(url, "/v2/models/stats")) {
        out->ep = YLS_EP_ALL_STATS;
        return method_check(method, false, allow, f);
    }
    if (!strcmp(url, "/") || !strcmp(url, "/index.html") || !strncmp(url, "/assets/", 8)) {
        out->ep = YLS_EP_DASHBOARD;
        out->asset = url[1] == 'a' ? url + 8 : "index.html";
        return method_check(method, false, allow, f);
    }
    if (!strcmp(url, "/metrics")) {
        out->ep = YLS_EP_METRICS;
        return method_check(method, false, allow, f);
    }
    if (!strncmp(url, "/v1/", 4))
        return route_v1(method, url, out, allow, f);
    if (strncmp(url, "/v2/models/", 11) != 0)
        goto not_found;
    p = url + 10;
    if (!next_segment(&p, &seg, &len) || len == 0)
        goto not_found;
    out->model = yls_models_find(models, seg, len);
    if (!out->model) {
        return yls_fail_set(f, 404, "unknown model '%.*s' (GET /v2/models/stats lists them)",
                            (int)(len > 64 ? 64 : len), seg);
    }
    const char *mname = out->model->name;
    const char *save = p;
    if (next_segment(&p, &seg, &len) && seg_is(seg, len, "versions")) {
        if (!next_segment(&p, &seg, &len) || len == 0)
            goto not_found;
        if (!seg_is(seg, len, "1"))
            return yls_fail_set(f, 404, "model '%s' has no version '%.*s' (only \"1\")", mname,
                                (int)(len > 32 ? 32 : len), seg);
    } else {
        p = save;
    }
    if (*p == '\0') {
        out->ep = YLS_EP_MODEL_META;
        return method_check(method, false, allow, f);
    }
    if (!next_segment(&p, &seg, &len) || *p != '\0')
        goto not_found;
    if (seg_is(seg, len, "ready"))
        out->ep = YLS_EP_MODEL_READY;
    else if (seg_is(seg, len, "config"))
        out->ep = YLS_EP_MODEL_CONFIG;
    else if (seg_is(seg, len, "stats"))
        out->ep = YLS_EP_MODEL_STATS;
    else if (seg_is(seg, len, "infer"))
        out->ep = YLS_EP_INFER;
    else
        goto not_found;
    return method_check(method, out->ep == YLS_EP_INFER, allow, f);

not_found:
    out->ep = YLS_EP_NONE;
    out->model = NULL;
    return yls_fail_set(f, 404, "no such endpoint: %.200s", url);
}
