/*
 * router.c: method and path to an entry of a route table (server.h says how patterns read;
 * the daemon's table is server/routes.c). The transport calls this with the router main
 * gave it (the table and how a model name is looked up), so it never names an endpoint
 * nor a protocol function.
 *
 * A pattern first matches the path's shape (literal text, one-segment captures, the
 * rest-of-path captures and their literal suffix); the first entry whose shape matches
 * claims the path, and only then are its captures checked (a model of the table, version
 * "1", a run name's length), so that a bad capture is a 404 naming it rather than a fall
 * through to a later pattern ("/v1/runs//steps" is not the run "/steps").
 */
#include "server.h"

#include <stdio.h>
#include <string.h>

static bool is_get(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

static bool method_ok(const char *want, const char *method)
{
    return !strcmp(want, "GET") ? is_get(method) : !strcmp(want, method);
}

typedef struct {
    const char *s;
    size_t len;
} span;

typedef struct {
    span model, version, run, asset, image, region;
    bool has_model, has_version, has_run, has_asset, has_image, has_region;
} captures;

/* The capture name at p ("{model}"): its kind and the pattern after it, or NULL. */
static const char *capture_name(const char *p, span *name)
{
    const char *e = strchr(p, '}');
    if (!e)
        return NULL;
    name->s = p + 1;
    name->len = (size_t)(e - p - 1);
    return e + 1;
}

static bool name_is(span n, const char *word) { return strlen(word) == n.len && !memcmp(n.s, word, n.len); }

/* Whether url has the shape of pattern; the captures in c, unchecked. */
static bool shape_match(const char *pattern, const char *url, captures *c)
{
    memset(c, 0, sizeof *c);
    const char *p = pattern, *u = url;
    while (*p) {
        if (*p != '{') {
            if (*p != *u)
                return false;
            p++;
            u++;
            continue;
        }
        span name;
        const char *after = capture_name(p, &name);
        if (!after)
            return false;
        if (name_is(name, "model") || name_is(name, "version") || name_is(name, "region")) {
            size_t len = strcspn(u, "/");
            if (len == 0)
                return false;
            span v = {u, len};
            if (name_is(name, "model")) {
                c->model = v;
                c->has_model = true;
            } else if (name_is(name, "region")) {
                c->region = v;
                c->has_region = true;
            } else {
                c->version = v;
                c->has_version = true;
            }
            u += len;
            p = after;
            continue;
        }
        /* {run}/literal/{image}: the last segment is the image, the run what precedes the
         * literal (so a run name may hold '/' here too) */
        const char *img = strstr(after, "{image}");
        if (name_is(name, "run") && img && !strcmp(img, "{image}")) {
            size_t lit = (size_t)(img - after);
            const char *last = strrchr(u, '/');
            if (memchr(after, '{', lit) || !last || last[1] == '\0' ||
                (size_t)(last + 1 - u) < lit || memcmp(last + 1 - lit, after, lit))
                return false;
            c->run = (span){u, (size_t)(last + 1 - lit - u)};
            c->image = (span){last + 1, strlen(last + 1)};
            c->has_run = c->has_image = true;
            return true;
        }
        /* {run}, {asset}: the rest of the path but the pattern's literal suffix */
        size_t ulen = strlen(u), slen = strlen(after);
        if (strchr(after, '{') || ulen < slen || memcmp(u + ulen - slen, after, slen))
            return false;
        span v = {u, ulen - slen};
        if (name_is(name, "run")) {
            c->run = v;
            c->has_run = true;
        } else if (name_is(name, "asset")) {
            c->asset = v;
            c->has_asset = true;
        } else {
            return false;
        }
        return true;
    }
    return *u == '\0';
}

/* The captures of the claiming pattern into out: 0 or -1 with a 404 in f. */
static int check_captures(const captures *c, const yls_router *router, const yls_server *s,
                          yls_route *out, yls_fail *f)
{
    if (c->has_model) {
        out->model = router->find_model(s, c->model.s, c->model.len);
        if (!out->model)
            return yls_fail_set(f, 404, "unknown model '%.*s' (GET /v2/models/stats lists them)",
                                (int)(c->model.len > 64 ? 64 : c->model.len), c->model.s);
    }
    if (c->has_version && !(c->version.len == 1 && c->version.s[0] == '1'))
        return yls_fail_set(f, 404, "model '%s' has no version '%.*s' (only \"1\")",
                            out->model ? out->model->name : "?",
                            (int)(c->version.len > 32 ? 32 : c->version.len), c->version.s);
    if (c->has_run) {
        if (c->run.len == 0 || c->run.len >= sizeof out->run)
            return yls_fail_set(f, 404, "no such run: the name must have 1 to %zu bytes",
                                sizeof out->run - 1);
        memcpy(out->run, c->run.s, c->run.len);
        out->run[c->run.len] = '\0';
    }
    if (c->has_asset)
        out->asset = c->asset.s;
    if (c->has_image) {
        uint64_t id = 0;
        bool ok = c->image.len >= 1 && c->image.len <= 19; /* 19 digits: below 2^64 */
        for (size_t i = 0; ok && i < c->image.len; i++) {
            ok = c->image.s[i] >= '0' && c->image.s[i] <= '9';
            id = id * 10 + (uint64_t)(c->image.s[i] - '0');
        }
        if (!ok || id > (uint64_t)INT64_MAX)
            return yls_fail_set(f, 404, "no such image '%.*s': ids are integers from 0 to "
                                        "2^63 - 1",
                                (int)(c->image.len > 32 ? 32 : c->image.len), c->image.s);
        out->image = (int64_t)id;
    }
    if (c->has_region) {
        if (c->region.len >= sizeof out->region)
            return yls_fail_set(f, 404, "no such shared-memory region: a name has at most %zu "
                                "bytes", sizeof out->region - 1);
        memcpy(out->region, c->region.s, c->region.len);
        out->region[c->region.len] = '\0';
    }
    return 0;
}

/* The first segment after "/v2/models/" when it is not a model: the 404 to give when no
 * pattern has the path's shape (a typo in the model name is likelier than in the rest). */
static int unknown_model(const yls_router *router, const yls_server *s, const char *url,
                         yls_fail *f)
{
    static const char prefix[] = "/v2/models/";
    if (strncmp(url, prefix, sizeof prefix - 1))
        return 0;
    const char *m = url + sizeof prefix - 1;
    size_t len = strcspn(m, "/");
    if (len == 0 || router->find_model(s, m, len))
        return 0;
    return yls_fail_set(f, 404, "unknown model '%.*s' (GET /v2/models/stats lists them)",
                        (int)(len > 64 ? 64 : len), m);
}

int yls_route_match(const yls_router *router, const yls_server *s, const char *method,
                    const char *url, yls_route *out, yls_fail *f)
{
    const yls_route_entry *table = router->table;
    memset(out, 0, sizeof *out);
    const yls_route_entry *claim = NULL;
    captures c;
    for (const yls_route_entry *e = table; e->method; e++)
        if (shape_match(e->pattern, url, &c)) {
            claim = e;
            break;
        }
    if (!claim) {
        if (unknown_model(router, s, url, f))
            return -1;
        return yls_fail_set(f, 404, "no such endpoint: %.200s", url);
    }
    if (check_captures(&c, router, s, out, f))
        return -1;
    /* the methods of the claiming pattern */
    size_t n = 0;
    for (const yls_route_entry *e = claim; e->method; e++) {
        if (strcmp(e->pattern, claim->pattern))
            continue;
        if (method_ok(e->method, method)) {
            out->entry = e;
            return 0;
        }
        const char *m = !strcmp(e->method, "GET") ? "GET, HEAD" : e->method;
        int k = snprintf(out->allow + n, sizeof out->allow - n, "%s%s", n ? ", " : "", m);
        if (k > 0 && (size_t)k < sizeof out->allow - n)
            n += (size_t)k;
    }
    return yls_fail_set(f, 405, "method %s is not allowed here (use %s)", method, out->allow);
}

/* A run name is routable when the path of every {run} pattern, with the name in place (and
 * an {image} of 0), reaches that pattern's entry with the name as its run: "a/steps" is
 * not ("/v1/runs/a/steps" is the steps of run "a"), so it could be recorded but never be
 * deleted. Checked against the table itself, so a new endpoint under a run extends it. */
int yls_route_run_name_check(const yls_router *router, const yls_server *s, const char *name,
                             yls_fail *f)
{
    size_t nlen = strlen(name);
    for (const yls_route_entry *e = router->table; e->method; e++) {
        const char *at = strstr(e->pattern, "{run}");
        if (!at)
            continue;
        char path[3 * YLS_RUN_MAX + 128];
        size_t n = 0;
        bool fits = true;
        for (const char *p = e->pattern; *p && fits;) {
            const char *piece = p == at ? name : !strncmp(p, "{image}", 7) ? "0" : NULL;
            size_t len = piece ? (p == at ? nlen : 1) : 1;
            fits = n + len < sizeof path;
            if (fits)
                memcpy(path + n, piece ? piece : p, len);
            n += len;
            p += p == at ? 5 : piece ? 7 : 1;
        }
        if (!fits)
            continue;
        path[n] = '\0';
        yls_route rt;
        yls_fail g = {0};
        if (yls_route_match(router, s, e->method, path, &rt, &g) == 0 && rt.entry == e &&
            !strcmp(rt.run, name))
            continue;
        return yls_fail_set(f, 400,
                            "run name '%s' cannot be told apart from an endpoint: %s %s would "
                            "not reach run '%s' (a run name must not end with the path of an "
                            "endpoint under a run, such as /steps, /config or /images/7)",
                            name, e->method, path, name);
    }
    return 0;
}
