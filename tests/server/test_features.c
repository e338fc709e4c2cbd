/*
 * test_features.c: gzip and deflate both ways, inflate limits, bearer tokens, the
 * --max-inflight limit, graceful shutdown, the access log and the statistics.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

static uint8_t *zip(const void *in, size_t n, int wbits, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit2(&zs, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, n) + 64;
    uint8_t *out = malloc(cap);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static char *unzip(const void *in, size_t n, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(inflateInit2(&zs, 15 + 32), Z_OK);
    size_t cap = n * 4 + 1024, len = 0;
    char *out = malloc(cap + 1);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    int zr;
    do {
        if (len == cap) {
            cap *= 2;
            out = realloc(out, cap + 1);
        }
        zs.next_out = (Bytef *)out + len;
        zs.avail_out = (uInt)(cap - len);
        zr = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        ck_assert_msg(zr == Z_OK || zr == Z_STREAM_END || zr == Z_BUF_ERROR, "inflate %d", zr);
    } while (zr != Z_STREAM_END);
    inflateEnd(&zs);
    out[len] = '\0';
    *out_len = len;
    return out;
}

static json_t *stats_of(const yt_daemon *d, const char *model)
{
    char path[128];
    snprintf(path, sizeof path, "/v2/models/%s/stats", model);
    yt_resp r;
    ck_assert_int_eq(yt_get(d, path, &r), 200);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    yt_resp_free(&r);
    ck_assert_ptr_nonnull(j);
    json_t *m = json_incref(json_array_get(json_object_get(j, "model_stats"), 0));
    json_decref(j);
    return m;
}

static long long stat_count(json_t *m, const char *what, const char *field)
{
    json_t *x = json_object_get(json_object_get(m, "inference_stats"), what);
    return json_integer_value(json_object_get(x, field));
}

START_TEST(compression_both_ways)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .seed = 21};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 3, .output_binary = -1, .binary_data_output = true};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    struct {
        int wbits;
        const char *coding, *accept;
    } ways[] = {{15 + 16, "gzip", "gzip"},
                {15, "deflate", "deflate"},
                {-15, "deflate", "br;q=1.0, deflate;q=0.5"},
                {15 + 16, "x-gzip", NULL}};
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        size_t zlen;
        uint8_t *z = zip(body, len, ways[w].wbits, &zlen);
        char ih[64], ce[64], ae[64];
        snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", hl);
        snprintf(ce, sizeof ce, "Content-Encoding: %s", ways[w].coding);
        snprintf(ae, sizeof ae, "Accept-Encoding: %s", ways[w].accept ? ways[w].accept : "identity");
        yt_req req = {.path = "/v2/models/yolov3/infer", .body = z, .len = zlen,
                      .headers = {ih, ce, ae, "Expect:"}};
        yt_resp r;
        char msg[256];
        ck_assert_msg(yt_http(&yt_main, &req, &r) == 200, "%s: %s", ways[w].coding,
                      yt_error_message(&r, msg, sizeof msg));
        char got_ce[64] = "", hb[32];
        yt_header(&r, "Content-Encoding", got_ce, sizeof got_ce);
        if (ways[w].accept) {
            const char *want = w == 0 ? "gzip" : "deflate";
            ck_assert_str_eq(got_ce, want);
            /* Inference-Header-Content-Length counts the uncompressed JSON */
            size_t plain_len;
            char *plain = unzip(r.body, r.len, &plain_len);
            ck_assert_ptr_nonnull(yt_header(&r, "Inference-Header-Content-Length", hb, sizeof hb));
            ck_assert(strtoull(hb, NULL, 10) < plain_len);
            free(r.body);
            r.body = plain;
            r.len = plain_len;
        } else {
            ck_assert_str_eq(got_ce, "");
        }
        yt_check_answer(&c, &r);
        free(z);
    }
    free(body);

    /* a JSON response, gzip'd */
    yt_send js = {.input_mode = 1, .output_binary = -1, .outputs = {"loss", "grad_1"}};
    body = yt_request_body(&c, &js, &len, &hl);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = body, .len = len,
                  .headers = {"Accept-Encoding: gzip", "Expect:"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 200);
    char ct[64], hb[32];
    ck_assert_str_eq(yt_header(&r, "Content-Encoding", ct, sizeof ct), "gzip");
    ck_assert_ptr_null(yt_header(&r, "Inference-Header-Content-Length", hb, sizeof hb));
    size_t plain_len;
    char *plain = unzip(r.body, r.len, &plain_len);
    free(r.body);
    r.body = plain;
    r.len = plain_len;
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    yt_check_output(&c, &o, "loss");
    yt_check_output(&c, &o, "grad_1");
    yt_outputs_free(&o);
    yt_resp_free(&r);
    free(body);
    yt_case_free(&c);
}
END_TEST

START_TEST(inflate_limits_and_corruption)
{
    /* yt_small: --max-json 256K --max-body 1M; 2 MiB of zeros gzip to ~2 KiB */
    size_t n = 2 << 20, zlen;
    char *zeros = calloc(1, n);
    uint8_t *z = zip(zeros, n, 15 + 16, &zlen);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = z, .len = zlen,
                  .headers = {"Content-Encoding: gzip", "Expect:"}};
    yt_resp r;
    char msg[256];
    ck_assert_int_eq(yt_http(&yt_small, &req, &r), 413);
    ck_assert_msg(strstr(yt_error_message(&r, msg, sizeof msg), "inflates past the limit of 262144"),
                  "%s", msg);
    yt_resp_free(&r);
    req.headers[1] = "Inference-Header-Content-Length: 10";
    req.headers[2] = "Expect:";
    ck_assert_int_eq(yt_http(&yt_small, &req, &r), 413);
    ck_assert_msg(strstr(yt_error_message(&r, msg, sizeof msg), "inflates past the limit of 1048576"),
                  "%s", msg);
    yt_resp_free(&r);
    /* truncated and corrupt streams */
    const char *text = "{\"inputs\": [], \"outputs\": [], \"id\": \"truncated gzip\"}";
    size_t slen;
    uint8_t *small = zip(text, strlen(text), 15 + 16, &slen);
    yt_req t = {.path = "/v2/models/yolov3/infer", .body = small, .len = slen - 6,
                .headers = {"Content-Encoding: gzip", "Expect:"}};
    ck_assert_int_eq(yt_http(&yt_small, &t, &r), 400);
    ck_assert_msg(strstr(yt_error_message(&r, msg, sizeof msg), "truncated"), "%s", msg);
    yt_resp_free(&r);
    t.body = "this is not gzip at all";
    t.len = strlen(t.body);
    ck_assert_int_eq(yt_http(&yt_small, &t, &r), 400);
    ck_assert_msg(strstr(yt_error_message(&r, msg, sizeof msg), "corrupt"), "%s", msg);
    yt_resp_free(&r);
    free(small);
    free(z);
    free(zeros);
}
END_TEST

START_TEST(token_auth)
{
    char path[] = "/tmp/yololossd-token-XXXXXX";
    yt_token_file(path, "s3cret-token\n");
    yt_daemon d;
    const char *args[] = {"--token-file", path, "--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&d, "/v2", &r), 401);
    char h[128], msg[256];
    ck_assert_ptr_nonnull(yt_header(&r, "WWW-Authenticate", h, sizeof h));
    ck_assert(strstr(yt_error_message(&r, msg, sizeof msg), "bearer token") != NULL);
    yt_resp_free(&r);
    const char *bad[] = {"Authorization: Bearer wrong", "Authorization: Bearer s3cret-toke",
                         "Authorization: Bearer s3cret-token2", "Authorization: Basic s3cret-token"};
    for (int i = 0; i < 4; i++) {
        yt_req req = {.path = "/v2/models/yolov3", .headers = {bad[i]}};
        ck_assert_int_eq(yt_http(&d, &req, &r), 401);
        yt_resp_free(&r);
    }
    yt_req ok = {.path = "/v2/models/yolov3", .headers = {"Authorization: Bearer s3cret-token"}};
    ck_assert_int_eq(yt_http(&d, &ok, &r), 200);
    yt_resp_free(&r);
    /* infer: 401 without, the exact answer with */
    yt_spec spec = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 31};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send s = {.input_mode = 1, .output_binary = -1};
    size_t len, hl;
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    yt_req inf = {.path = "/v2/models/yolov3-tiny/infer", .body = body, .len = len};
    ck_assert_int_eq(yt_http(&d, &inf, &r), 401);
    yt_resp_free(&r);
    inf.headers[0] = "authorization: bearer s3cret-token";
    ck_assert_int_eq(yt_http(&d, &inf, &r), 200);
    yt_check_answer(&c, &r);
    free(body);
    yt_case_free(&c);
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    unlink(path);
}
END_TEST

/* One route table decides dispatch and the token rule, and --help prints the public routes
 * from it: every route --help calls public answers without the token (/index.html was
 * served by the dashboard route but refused by a second matcher), the rest is 401 (an
 * unknown path too, so that unauthenticated clients learn nothing). */
START_TEST(token_rule_is_the_route_table)
{
    char path[] = "/tmp/yololossd-token-XXXXXX";
    yt_token_file(path, "tok\n");
    yt_daemon d;
    const char *args[] = {"--token-file", path, "--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_resp r;
    ck_assert_int_eq(yt_get(&d, "/index.html", &r), 200);
    yt_resp_free(&r);
    const char *daemon = getenv("YL_DAEMON") ? getenv("YL_DAEMON") : "build/yololossd";
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s --help", daemon);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char help[8192];
    size_t n = fread(help, 1, sizeof help - 1, p);
    help[n] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    const char *list = strstr(help, "Public endpoints");
    ck_assert_msg(list != NULL, "--help lists no public endpoints");

    int checked = 0;
    bool saw_index = false, saw_metrics = false;
    for (const char *line = strchr(list, '\n'); line && line[1] == ' '; line = strchr(line + 1, '\n')) {
        char method[16], pat[256], url[300];
        if (sscanf(line + 1, " %15s %255s", method, pat) != 2)
            break;
        if (strstr(pat, "/events"))
            continue; /* a stream: it does not end (the streams suite covers its token rule) */
        /* fill the captures: a run "x", the asset app.js, the image 1 */
        size_t o = 0;
        for (const char *q = pat; *q && o < sizeof url - 8;) {
            if (*q != '{') {
                url[o++] = *q++;
                continue;
            }
            const char *e = strchr(q, '}');
            ck_assert_ptr_nonnull(e);
            const char *v = !strncmp(q, "{asset}", 7) ? "app.js" : !strncmp(q, "{image}", 7) ? "1" : "x";
            o += (size_t)snprintf(url + o, sizeof url - o, "%s", v);
            q = e + 1;
        }
        url[o] = '\0';
        saw_index |= !strcmp(url, "/index.html");
        saw_metrics |= !strcmp(url, "/metrics");
        yt_req req = {.method = method, .path = url};
        long st = yt_http(&d, &req, &r);
        ck_assert_msg(st != 401 && st != 0, "public %s %s: status %ld", method, url, st);
        yt_resp_free(&r);
        checked++;
    }
    ck_assert_msg(saw_index && saw_metrics, "--help does not list /index.html and /metrics");
    ck_assert_int_ge(checked, 6);
    /* not public: the v2 protocol, DELETE, unknown paths and methods */
    const char *priv[][2] = {{"GET", "/v2"}, {"GET", "/v2/models/stats"},
                             {"DELETE", "/v1/runs/x"}, {"GET", "/no/such/path"},
                             {"POST", "/metrics"}, {"GET", "/v2/models/nosuch"}};
    for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++) {
        yt_req req = {.method = priv[i][0], .path = priv[i][1]};
        ck_assert_msg(yt_http(&d, &req, &r) == 401, "%s %s: %ld, want 401", priv[i][0],
                      priv[i][1], r.status);
        yt_resp_free(&r);
        req.headers[0] = "Authorization: Bearer tok";
        long st = yt_http(&d, &req, &r);
        ck_assert_msg(st != 401 && st != 0, "%s %s with the token: %ld", priv[i][0], priv[i][1],
                      st);
        yt_resp_free(&r);
    }
    ck_assert_int_eq(yt_daemon_stop(&d), 0);
    unlink(d.errlog);
    unlink(path);
}
END_TEST

typedef struct {
    const yt_daemon *d;
    yt_req req;
    yt_resp resp;
} bg_request;

static void *bg_run(void *arg)
{
    bg_request *b = arg;
    yt_http(b->d, &b->req, &b->resp);
    return NULL;
}

/* An infer request for c whose body waits at the gate (started: the server has it). */
static void bg_start(bg_request *b, pthread_t *th, const yt_daemon *d, const yt_case *c,
                     yt_gate *gate, uint8_t **body, char *ih)
{
    yt_send s = {.input_mode = 0, .output_binary = -1};
    size_t len, hl;
    *body = yt_request_body(c, &s, &len, &hl);
    memset(b, 0, sizeof *b);
    b->d = d;
    b->req.path = c->L == 3 ? "/v2/models/yolov3/infer" : "/v2/models/yolov3-tiny/infer";
    b->req.body = *body;
    b->req.len = len;
    snprintf(ih, 64, "Inference-Header-Content-Length: %zu", hl);
    b->req.headers[0] = ih;
    b->req.gate = gate;
    ck_assert_int_eq(pthread_create(th, NULL, bg_run, b), 0);
    yt_gate_wait_started(gate);
}

static void bg_finish(bg_request *b, pthread_t th, const yt_case *c)
{
    pthread_join(th, NULL);
    char msg[256];
    ck_assert_msg(b->resp.status == 200, "%ld %s %s", b->resp.status,
                  yt_error_message(&b->resp, msg, sizeof msg), b->resp.error);
    yt_check_answer(c, &b->resp);
}

START_TEST(max_inflight)
{
    /* yt_small takes one infer request at a time */
    yt_spec spec = {.num_anchors = 6, .B = 2, .H0 = 2, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 3, .seed = 41};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_gate gate;
    yt_gate_init(&gate);
    bg_request b;
    pthread_t th;
    uint8_t *body;
    char ih[64];
    bg_start(&b, &th, &yt_small, &c, &gate, &body, ih);
    /* the first is admitted but still uploading: it holds no slot (a stalled or slow
     * upload must not lock others out), so the next one is answered */
    yt_send s = {.input_mode = 1, .output_binary = -1};
    yt_resp r;
    char msg[256];
    ck_assert_msg(yt_infer(&yt_small, &c, &s, &r) == 200, "%ld %s", r.status,
                  yt_error_message(&r, msg, sizeof msg));
    yt_resp_free(&r);
    ck_assert_int_eq(yt_metric(&yt_small, "yololoss_uploading_requests"), 1);
    ck_assert_int_eq(yt_metric(&yt_small, "yololoss_inflight_requests"), 0);
    /* (a request in flight refusing the next: suites hardening and faults) */
    /* other endpoints still answer */
    ck_assert_int_eq(yt_get(&yt_small, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
    yt_gate_release(&gate);
    bg_finish(&b, th, &c);
    free(body);
    yt_case_free(&c);
}
END_TEST

/* A held upload refused on its headers: libcurl sent "Expect: 100-continue", the daemon
 * answers 413 instead of "100 Continue", so the body is never asked for. The waiter must be
 * released with the answer (the harness once waited for the body read forever: a refused or
 * unconnected held request hung its test until Check's timeout). */
START_TEST(held_upload_refused_on_its_headers)
{
    size_t len = 2u << 20; /* yt_small: --max-body 1M */
    uint8_t *body = calloc(1, len);
    ck_assert_ptr_nonnull(body);
    yt_gate gate;
    yt_gate_init(&gate);
    bg_request b;
    memset(&b, 0, sizeof b);
    b.d = &yt_small;
    b.req.path = "/v2/models/yolov3/infer";
    b.req.body = body;
    b.req.len = len;
    b.req.headers[0] = "Inference-Header-Content-Length: 16";
    b.req.gate = &gate;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_run, &b), 0);
    yt_gate_wait_started(&gate);
    pthread_join(th, NULL);
    char msg[256];
    ck_assert_msg(b.resp.status == 413, "%ld %s %s", b.resp.status,
                  yt_error_message(&b.resp, msg, sizeof msg), b.resp.error);
    ck_assert_msg(strstr(yt_error_message(&b.resp, msg, sizeof msg), "--max-body") != NULL,
                  "%s", msg);
    ck_assert_uint_eq(gate.pos, 0); /* not one byte of the body was read */
    yt_resp_free(&b.resp);
    yt_gate_release(&gate);
    free(body);
}
END_TEST

START_TEST(graceful_shutdown)
{
    yt_daemon d;
    const char *args[] = {"--threads", "2", NULL};
    ck_assert_int_eq(yt_daemon_start(&d, args, false), 0);
    yt_spec spec = {.num_anchors = 9, .B = 8, .H0 = 3, .W0 = 3, .C = 10, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 6, .seed = 51};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_gate gate;
    yt_gate_init(&gate);
    bg_request b;
    pthread_t th;
    uint8_t *body;
    char ih[64];
    bg_start(&b, &th, &d, &c, &gate, &body, ih);
    /* the request is in flight; SIGTERM */
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    yt_resp r;
    long st = 200;
    for (int i = 0; i < 100000 && st == 200; i++) {
        st = yt_get(&d, "/v2/health/ready", &r);
        yt_resp_free(&r);
        if (st == 200) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    ck_assert_int_eq(st, 400); /* draining */
    ck_assert_int_eq(yt_get(&d, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = "{}", .len = 2, .headers = {"Expect:"}};
    ck_assert_int_eq(yt_http(&d, &req, &r), 503);
    char ra[16], msg[256];
    ck_assert_ptr_nonnull(yt_header(&r, "Retry-After", ra, sizeof ra));
    ck_assert(strstr(yt_error_message(&r, msg, sizeof msg), "shutting down") != NULL);
    yt_resp_free(&r);
    /* the one in flight finishes, correct, and then the daemon exits 0 */
    yt_gate_release(&gate);
    bg_finish(&b, th, &c);
    int rc = yt_daemon_wait(&d);
    if (rc != 0)
        yt_daemon_dump(&d);
    ck_assert_int_eq(rc, 0);
    unlink(d.errlog);
    free(body);
    yt_case_free(&c);
}
END_TEST

START_TEST(access_log_and_stats)
{
    yt_spec spec = {.num_anchors = 6, .B = 3, .H0 = 1, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 3, .seed = 61};
    yt_case c;
    yt_case_make(&c, &spec);
    json_t *before = stats_of(&yt_small, "custom-tiny");
    char run[64];
    snprintf(run, sizeof run, "logtest-%d", (int)getpid());
    json_t *params = json_pack("{s:s,s:i}", "run", run, "step", 7);
    yt_send s = {.input_mode = 0, .output_binary = -1, .outputs = {"loss"}, .model = "custom-tiny",
                 .params = params};
    yt_resp r;
    ck_assert_int_eq(yt_infer(&yt_small, &c, &s, &r), 200);
    yt_resp_free(&r);
    /* a failing one: a bad anchors parameter (run and step come first, so are logged) */
    json_object_set_new(params, "anchors", json_string("1,2"));
    ck_assert_int_eq(yt_infer(&yt_small, &c, &s, &r), 400);
    yt_resp_free(&r);
    json_decref(params);
    /* libmicrohttpd completes a request (log line, statistics) right after sending it, so
     * once the next request is answered the earlier ones are accounted for */
    ck_assert_int_eq(yt_get(&yt_small, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
    json_t *after = stats_of(&yt_small, "custom-tiny");
    ck_assert_int_eq(json_integer_value(json_object_get(after, "execution_count")),
                     json_integer_value(json_object_get(before, "execution_count")) + 1);
    ck_assert_int_eq(json_integer_value(json_object_get(after, "inference_count")),
                     json_integer_value(json_object_get(before, "inference_count")) + 3);
    const char *kinds[] = {"success", "fail", "queue", "compute_input", "compute_infer",
                           "compute_output"};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(stat_count(after, kinds[i], "count"),
                         stat_count(before, kinds[i], "count") + 1);
    ck_assert_int_gt(stat_count(after, "compute_infer", "ns"), stat_count(before, "compute_infer", "ns"));
    ck_assert_int_gt(json_integer_value(json_object_get(after, "last_inference")), 0);
    json_decref(before);
    json_decref(after);

    FILE *f = fopen(yt_small.outlog, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, run))
            continue;
        ck_assert_msg(strstr(line, "\"POST /v2/models/custom-tiny/infer\"") != NULL, "%s", line);
        if (strstr(line, "\" 200 "))
            ck_assert_msg(strstr(line, " images=3 ") != NULL, "%s", line);
        ck_assert_msg(strstr(line, " in=") && strstr(line, " out=") && strstr(line, " ms="), "%s",
                      line);
        ck_assert_msg(strstr(line, "step=7") != NULL, "%s", line);
        found += strstr(line, "\" 200 ") != NULL;
        found += strstr(line, "\" 400 ") != NULL ? 10 : 0;
    }
    fclose(f);
    ck_assert_int_eq(found, 11);
    yt_case_free(&c);
}
END_TEST

Suite *yt_suite_features(void)
{
    Suite *s = suite_create("features");
    TCase *tc = tcase_create("features");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, compression_both_ways);
    tcase_add_test(tc, inflate_limits_and_corruption);
    tcase_add_test(tc, token_auth);
    tcase_add_test(tc, token_rule_is_the_route_table);
    tcase_add_test(tc, max_inflight);
    tcase_add_test(tc, held_upload_refused_on_its_headers);
    tcase_add_test(tc, graceful_shutdown);
    tcase_add_test(tc, access_log_and_stats);
    suite_add_tcase(s, tc);
    return s;
}
