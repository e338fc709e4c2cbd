/*
 * test_meta.c: health, metadata, readiness, configuration, statistics, routing errors.
 */
#include <curl/curl.h>

#include "harness.h"

#include <string.h>

static json_t *get_json(const yt_daemon *d, const char *path, long want)
{
    yt_resp r;
    ck_assert_int_eq(yt_get(d, path, &r), want);
    char ct[64];
    ck_assert_ptr_nonnull(yt_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/json");
    json_error_t e;
    json_t *j = json_loadb(r.body, r.len, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", path, e.text);
    yt_resp_free(&r);
    return j;
}

START_TEST(health)
{
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/live", &r), 200);
    ck_assert_uint_eq(r.len, 0);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&yt_main, "/v2/health/ready", &r), 200);
    yt_resp_free(&r);
    yt_req head = {.method = "HEAD", .path = "/v2/health/ready"};
    ck_assert_int_eq(yt_http(&yt_main, &head, &r), 200);
    yt_resp_free(&r);
}
END_TEST

START_TEST(server_metadata)
{
    json_t *j = get_json(&yt_main, "/v2", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "yololossd");
    ck_assert_str_eq(json_string_value(json_object_get(j, "version")), YL_VERSION);
    json_t *ext = json_object_get(j, "extensions");
    const char *want[] = {"binary_tensor_data", "statistics", "model_configuration"};
    for (int i = 0; i < 3; i++) {
        bool found = false;
        size_t k;
        json_t *x;
        json_array_foreach(ext, k, x) found |= !strcmp(json_string_value(x), want[i]);
        ck_assert_msg(found, "extension %s missing", want[i]);
    }
    json_decref(j);
}
END_TEST

static void check_model_metadata(const char *path, const char *name, int L)
{
    json_t *j = get_json(&yt_main, path, 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), name);
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "versions"), 0)), "1");
    json_t *in = json_object_get(j, "inputs"), *out = json_object_get(j, "outputs");
    ck_assert_uint_eq(json_array_size(in), (size_t)(2 * L + 1));
    ck_assert_uint_eq(json_array_size(out), (size_t)(5 + L));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(in, 0), "name")), "output_0");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(in, 0), "datatype")), "FP32");
    ck_assert_int_eq(json_integer_value(json_array_get(
                         json_object_get(json_array_get(in, 0), "shape"), 0)),
                     -1);
    json_t *lt = json_array_get(out, 2);
    ck_assert_str_eq(json_string_value(json_object_get(lt, "name")), "layer_terms");
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(lt, "shape"), 0)), L);
    json_decref(j);
}

START_TEST(model_metadata)
{
    check_model_metadata("/v2/models/yolov3", "yolov3", 3);
    check_model_metadata("/v2/models/yolov3/versions/1", "yolov3", 3);
    check_model_metadata("/v2/models/yolov3-tiny", "yolov3-tiny", 2);
}
END_TEST

START_TEST(model_ready_and_config)
{
    yt_resp r;
    ck_assert_int_eq(yt_get(&yt_main, "/v2/models/yolov3/ready", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&yt_main, "/v2/models/yolov3-tiny/versions/1/ready", &r), 200);
    yt_resp_free(&r);
    ck_assert_int_eq(yt_get(&yt_main, "/v2/models/nope/ready", &r), 404);
    yt_resp_free(&r);
    json_t *j = get_json(&yt_main, "/v2/models/yolov3-tiny/config", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "name")), "yolov3-tiny");
    ck_assert_ptr_nonnull(json_object_get(j, "max_batch_size"));
    ck_assert_uint_eq(json_array_size(json_object_get(j, "input")), 5);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "output")), 7);
    const char *anchors = json_string_value(
        json_object_get(json_object_get(json_object_get(j, "parameters"), "anchors"), "string_value"));
    ck_assert_str_eq(anchors, "10,14,23,27,37,58,81,82,135,169,344,319");
    json_decref(j);
}
END_TEST

START_TEST(custom_models)
{
    /* yt_small runs with a --models file: custom3 (3 layers), custom-tiny (2 layers) */
    json_t *j = get_json(&yt_small, "/v2/models/custom-tiny/config", 200);
    json_t *p = json_object_get(j, "parameters");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p, "ignore_thresh"),
                                                       "string_value")),
                     "0.29999999999999999");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p, "num_layers"),
                                                       "string_value")),
                     "2");
    json_decref(j);
    j = get_json(&yt_small, "/v2/models/custom3", 200);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "inputs")), 7);
    json_decref(j);
    j = get_json(&yt_small, "/v2/models/stats", 200);
    /* the four built-in loss models (keras-yolo3's and darknet's yolov3 and tiny), the three
     * evaluation models and the file's two */
    ck_assert_uint_eq(json_array_size(json_object_get(j, "model_stats")), 9);
    json_decref(j);
}
END_TEST

/* Every answer, errors included, keeps the connection open for the next request: a reply
 * queued before libmicrohttpd has the whole request would close it. */
START_TEST(keep_alive_across_endpoints_and_errors) {
    char url[128];
    CURL *h = curl_easy_init();
    ck_assert_ptr_nonnull(h);
    const char *paths[] = {"/v2", "/v2/health/live", "/v2/models/yolov3", "/v2/nope",
                           "/v2/models/nope/ready", "/v2/models/yolov3/stats", "/v2"};
    FILE *sink = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        snprintf(url, sizeof url, "http://127.0.0.1:%u%s", yt_main.port, paths[i]);
        curl_easy_setopt(h, CURLOPT_URL, url);
        ck_assert_int_eq(curl_easy_perform(h), CURLE_OK);
        long connects = -1;
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
        ck_assert_msg(connects == (i == 0 ? 1 : 0), "GET %s opened %ld new connections", paths[i],
                      connects);
    }
    fclose(sink);
    curl_easy_cleanup(h);
}
END_TEST

START_TEST(routing_errors)
{
    struct {
        const char *method, *path;
        long status;
        const char *msg;
    } cases[] = {
        {NULL, "/v2/models/nope", 404, "unknown model 'nope'"},
        {NULL, "/v2/models/yolov3/versions/2", 404, "no version '2'"},
        {NULL, "/v2/models/yolov3/versions/2/ready", 404, "no version '2'"},
        {"POST", "/v2/models/nope/infer", 404, "unknown model"},
        {NULL, "/v3", 404, "no such endpoint"},
        {NULL, "/v2/models/yolov3/bogus", 404, "no such endpoint"},
        {NULL, "/v2/models/yolov3/infer", 405, "GET is not allowed"},
        {"PUT", "/v2/models/yolov3/infer", 405, "PUT is not allowed"},
        {"POST", "/v2/health/live", 405, "POST is not allowed"},
        {"DELETE", "/v2", 405, "DELETE is not allowed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        yt_req req = {.method = cases[i].method, .path = cases[i].path};
        yt_resp r;
        ck_assert_int_eq(yt_http(&yt_main, &req, &r), cases[i].status);
        char msg[512], allow[64];
        yt_error_message(&r, msg, sizeof msg);
        ck_assert_msg(strstr(msg, cases[i].msg), "%s %s: '%s' lacks '%s'", cases[i].method,
                      cases[i].path, msg, cases[i].msg);
        if (cases[i].status == 405)
            ck_assert_ptr_nonnull(yt_header(&r, "Allow", allow, sizeof allow));
        yt_resp_free(&r);
    }
}
END_TEST


/* json array of n floats */
static json_t *floats(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real((double)v[i]));
    return a;
}

static json_t *input(const char *name, const float *v, size_t n, int ndim, const int64_t *shape)
{
    json_t *sh = json_array();
    for (int d = 0; d < ndim; d++)
        json_array_append_new(sh, json_integer(shape[d]));
    return json_pack("{s:s,s:o,s:s,s:o}", "name", name, "shape", sh, "datatype", "FP32", "data",
                     floats(v, n));
}

/* yolov3-tiny-darknet: its metadata names the definition, its source and the truths input;
 * an infer answers darknet's loss, cost and gradient as the core computes them in process
 * (the same float bits), truth_thresh is a request parameter, and 'boxes' is refused. */
START_TEST(darknet_model_metadata_and_infer)
{
    json_t *j = get_json(&yt_main, "/v2/models/yolov3-tiny-darknet", 200);
    json_t *pm = json_object_get(j, "parameters");
    ck_assert_str_eq(json_string_value(json_object_get(pm, "definition")), "darknet");
    ck_assert(strstr(json_string_value(json_object_get(pm, "source")), "481d9d98") != NULL);
    json_t *in = json_object_get(j, "inputs");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(in, 2), "name")), "truths");
    bool has_cost = false;
    size_t k;
    json_t *x;
    json_array_foreach(json_object_get(j, "outputs"), k, x) has_cost |=
        !strcmp(json_string_value(json_object_get(x, "name")), "cost");
    ck_assert(has_cost);
    json_decref(j);
    j = get_json(&yt_main, "/v2/models/yolov3-tiny", 200); /* keras-yolo3's has no cost */
    json_array_foreach(json_object_get(j, "outputs"), k, x)
        ck_assert_str_ne(json_string_value(json_object_get(x, "name")), "cost");
    json_decref(j);

    /* one image, 64x64 input (grids 2x2 and 4x4), 1 class, 2 truths */
    enum { C = 1, CH = 3 * (5 + C) };
    float o0[2 * 2 * CH], o1[4 * 4 * CH];
    for (size_t i = 0; i < sizeof o0 / sizeof o0[0]; i++)
        o0[i] = (float)(0.37 * (double)((i * 7) % 11) - 1.8);
    for (size_t i = 0; i < sizeof o1 / sizeof o1[0]; i++)
        o1[i] = (float)(0.29 * (double)((i * 5) % 13) - 1.7);
    float tr[3 * 5] = {0.3f, 0.6f, 0.2f, 0.25f, 0, 0.71f, 0.4f, 0.8f, 0.7f, 0, 0, 0, 0, 0, 0};
    int64_t s0[4] = {1, 2, 2, CH}, s1[4] = {1, 4, 4, CH}, st[3] = {1, 3, 5};
    json_t *body = json_pack("{s:[o,o,o],s:{s:f}}", "inputs", input("output_0", o0, 2 * 2 * CH, 4, s0),
                             input("output_1", o1, 4 * 4 * CH, 4, s1), input("truths", tr, 15, 3, st),
                             "parameters", "truth_thresh", 0.9);
    char *text = json_dumps(body, JSON_COMPACT);
    yt_req req = {.path = "/v2/models/yolov3-tiny-darknet/infer", .body = text,
                  .len = strlen(text), .headers = {"Content-Type: application/json"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 200);
    yt_outputs outs;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &outs, err, sizeof err) == 0, "%s", err);

    yl_config cfg;
    yl_config_model(&cfg, YL_DEF_DARKNET, 6);
    cfg.darknet.truth_thresh = 0.9;
    yl_tensor t[2] = {{.data = o0, .dtype = YL_F32, .ndim = 4, .shape = {1, 2, 2, CH}},
                      {.data = o1, .dtype = YL_F32, .ndim = 4, .shape = {1, 4, 4, CH}}};
    yl_tensor tt = {.data = tr, .dtype = YL_F32, .ndim = 3, .shape = {1, 3, 5}};
    yl_problem p;
    yl_error e;
    ck_assert_int_eq(yl_problem_init(&p, &cfg, t, 2, &tt, NULL, 0, &e), YL_OK);
    float g0[sizeof o0 / sizeof o0[0]], g1[sizeof o1 / sizeof o1[0]];
    yl_grads g = {.dtype = YL_F32, .layer = {g0, g1}};
    yl_result res;
    ck_assert_int_eq(yl_compute(&p, 1, &g, &res, NULL, &e), YL_OK);
    const yt_output *loss = yt_find(&outs, "loss"), *cost = yt_find(&outs, "cost"),
                    *grad = yt_find(&outs, "grad_1");
    ck_assert_ptr_nonnull(loss);
    ck_assert_ptr_nonnull(cost);
    ck_assert_ptr_nonnull(grad);
    ck_assert(loss->v[0] == (float)res.loss);
    ck_assert_uint_eq(cost->n, 2);
    ck_assert(cost->v[0] == (float)res.cost[0] && cost->v[1] == (float)res.cost[1]);
    ck_assert_uint_eq(grad->n, sizeof g1 / sizeof g1[0]);
    ck_assert(memcmp(grad->v, g1, sizeof g1) == 0);
    ck_assert(res.stats[0][YL_STAT_COUNT] + res.stats[1][YL_STAT_COUNT] == 2);
    yt_outputs_free(&outs);
    yt_resp_free(&r);
    free(text);

    /* keras-yolo3's ground-truth name is not darknet's */
    json_object_set_new(json_array_get(json_object_get(body, "inputs"), 2), "name",
                        json_string("boxes"));
    text = json_dumps(body, JSON_COMPACT);
    req.body = text, req.len = strlen(text);
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 400);
    ck_assert(strstr(r.body, "unknown input 'boxes'") != NULL);
    yt_resp_free(&r);
    free(text);
    json_decref(body);
}
END_TEST

Suite *yt_suite_meta(void)
{
    Suite *s = suite_create("meta");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health);
    tcase_add_test(tc, server_metadata);
    tcase_add_test(tc, model_metadata);
    tcase_add_test(tc, darknet_model_metadata_and_infer);
    tcase_add_test(tc, model_ready_and_config);
    tcase_add_test(tc, custom_models);
    tcase_add_test(tc, routing_errors);
    tcase_add_test(tc, keep_alive_across_endpoints_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
