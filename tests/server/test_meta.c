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
    /* the two built-in loss models, the three evaluation models and the file's two */
    ck_assert_uint_eq(json_array_size(json_object_get(j, "model_stats")), 7);
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

Suite *yt_suite_meta(void)
{
    Suite *s = suite_create("meta");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health);
    tcase_add_test(tc, server_metadata);
    tcase_add_test(tc, model_metadata);
    tcase_add_test(tc, model_ready_and_config);
    tcase_add_test(tc, custom_models);
    tcase_add_test(tc, routing_errors);
    tcase_add_test(tc, keep_alive_across_endpoints_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
