/*
 * test_errors.c: every bad input of the issue gets its status and a message naming what is
 * wrong, and the daemon keeps serving.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A valid request for a small yolov3 case, as a JSON header (parsed) and the blobs. */
typedef struct {
    yt_case c;
    json_t *root;
    uint8_t *blobs;
    size_t blobs_len;
} variant;

static void variant_make(variant *v, int input_mode, int truth)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = truth, .truth_dtype = YL_F32, .T = 3, .seed = 99};
    yt_case_make(&v->c, &spec);
    yt_send s = {.input_mode = input_mode, .output_binary = -1, .outputs = {"loss"}};
    size_t len, hl;
    uint8_t *body = yt_request_body(&v->c, &s, &len, &hl);
    size_t jl = hl ? hl : len;
    v->root = json_loadb((const char *)body, jl, 0, NULL);
    ck_assert_ptr_nonnull(v->root);
    v->blobs_len = len - jl;
    v->blobs = malloc(v->blobs_len + 1);
    memcpy(v->blobs, body + jl, v->blobs_len);
    free(body);
}

static void variant_free(variant *v)
{
    json_decref(v->root);
    free(v->blobs);
    yt_case_free(&v->c);
}

static json_t *input(const variant *v, const char *name)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(v->root, "inputs"), i, x) {
        if (!strcmp(json_string_value(json_object_get(x, "name")), name))
            return x;
    }
    ck_abort_msg("no input %s", name);
    return NULL;
}

/* POST body to path with the headers; expect status and a message containing want. */
static void expect_raw(const yt_daemon *d, const char *path, const void *body, size_t len,
                       const char *const *headers, long status, const char *want)
{
    yt_req req = {.path = path, .body = body, .len = len};
    int n = 0;
    for (; headers && headers[n] && n < 7; n++)
        req.headers[n] = headers[n];
    req.headers[n] = "Expect:";
    yt_resp r;
    long st = yt_http(d, &req, &r);
    char msg[600];
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(st == status, "want %ld '%s', got %ld: %s %s", status, want, st, msg, r.error);
    ck_assert_msg(strstr(msg, want) != NULL, "status %ld: message '%s' lacks '%s'", st, msg, want);
    char ct[64];
    ck_assert_ptr_nonnull(yt_header(&r, "Content-Type", ct, sizeof ct));
    ck_assert_str_eq(ct, "application/json");
    yt_resp_free(&r);
    /* still serving */
    ck_assert_int_eq(yt_get(d, "/v2/health/live", &r), 200);
    yt_resp_free(&r);
}

/* Send the variant (header re-serialised, blobs as they are). ih: the header length to
 * claim, or -1 for the true one, -2 for none. */
static void expect_variant(const variant *v, long ih, long status, const char *want)
{
    char *text = json_dumps(v->root, JSON_COMPACT);
    size_t jl = strlen(text), len = jl + v->blobs_len;
    uint8_t *body = malloc(len + 1);
    memcpy(body, text, jl);
    memcpy(body + jl, v->blobs, v->blobs_len);
    char h[96];
    const char *headers[2] = {NULL, NULL};
    if (ih != -2) {
        snprintf(h, sizeof h, "Inference-Header-Content-Length: %ld", ih == -1 ? (long)jl : ih);
        headers[0] = h;
    }
    expect_raw(&yt_main, "/v2/models/yolov3/infer", body, len, headers, status, want);
    free(body);
    free(text);
}

static void expect_json_text(const char *text, long status, const char *want)
{
    expect_raw(&yt_main, "/v2/models/yolov3/infer", text, strlen(text), NULL, status, want);
}

START_TEST(truncated_and_header_length)
{
    variant v;
    variant_make(&v, 0, YT_BOXES);
    v.blobs_len -= 10; /* truncated: the last blob is short */
    expect_variant(&v, -1, 400, "truncated binary body: input 'boxes'");
    v.blobs_len += 10;
    char *text = json_dumps(v.root, JSON_COMPACT);
    size_t jl = strlen(text), len = jl + v.blobs_len;
    uint8_t *body = malloc(len);
    memcpy(body, text, jl);
    memcpy(body + jl, v.blobs, v.blobs_len);
    char h[96];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", len + 5);
    const char *hs[] = {h, NULL};
    expect_raw(&yt_main, "/v2/models/yolov3/infer", body, len, hs, 400, "larger than the body");
    const char *hs2[] = {"Inference-Header-Content-Length: 12abc", NULL};
    expect_raw(&yt_main, "/v2/models/yolov3/infer", body, len, hs2, 400, "is not a number");
    const char *hs3[] = {"Inference-Header-Content-Length: -5", NULL};
    expect_raw(&yt_main, "/v2/models/yolov3/infer", body, len, hs3, 400, "is not a number");
    /* binary data without the header: the body is taken as JSON, which it is not */
    expect_variant(&v, -2, 400, "invalid JSON");
    /* a header shorter than the JSON */
    expect_variant(&v, 20, 400, "invalid JSON");
    free(body);
    free(text);
    variant_free(&v);

    variant_make(&v, 1, YT_BOXES);
    uint8_t *tail = realloc(v.blobs, 8);
    v.blobs = tail;
    memset(v.blobs, 0, 8);
    v.blobs_len = 8;
    expect_variant(&v, -1, 400, "8 bytes after the JSON header");
    variant_free(&v);
}
END_TEST

START_TEST(binary_data_size_mismatch)
{
    variant v;
    variant_make(&v, 0, YT_BOXES);
    json_t *p = json_object_get(input(&v, "output_1"), "parameters");
    json_int_t n = json_integer_value(json_object_get(p, "binary_data_size"));
    json_object_set_new(p, "binary_data_size", json_integer(n - 4));
    expect_variant(&v, -1, 400, "input 'output_1': binary_data_size");
    json_object_set_new(p, "binary_data_size", json_string("12"));
    expect_variant(&v, -1, 400, "binary_data_size must be a non-negative integer");
    json_object_set_new(p, "binary_data_size", json_integer(n));
    json_object_set_new(input(&v, "output_1"), "data", json_pack("[i]", 1));
    expect_variant(&v, -1, 400, "input 'output_1' has both");
    variant_free(&v);
}
END_TEST

START_TEST(unknown_duplicate_missing_inputs)
{
    variant v;
    variant_make(&v, 1, YT_BOXES);
    json_t *inputs = json_object_get(v.root, "inputs");
    json_t *o0 = input(&v, "output_0");
    json_object_set_new(o0, "name", json_string("output_3"));
    expect_variant(&v, -2, 400, "unknown input 'output_3'");
    json_object_set_new(o0, "name", json_string("scores"));
    expect_variant(&v, -2, 400, "unknown input 'scores'");
    json_object_set_new(o0, "name", json_string("output_0"));
    json_array_append(inputs, input(&v, "output_1"));
    expect_variant(&v, -2, 400, "input 'output_1' is given twice");
    json_array_remove(inputs, json_array_size(inputs) - 1);
    json_array_remove(inputs, 1); /* output_1 */
    expect_variant(&v, -2, 400, "missing input 'output_1'");
    variant_free(&v);

    variant_make(&v, 1, YT_BOXES);
    inputs = json_object_get(v.root, "inputs");
    json_array_remove(inputs, 3); /* boxes */
    expect_variant(&v, -2, 400, "missing ground truth");
    json_array_append_new(inputs, json_pack("{s:s,s:[i],s:s,s:[f]}", "name", "y_true_0", "shape",
                                            1, "datatype", "FP32", "data", 0.0));
    expect_variant(&v, -2, 400, "missing input 'y_true_1'");
    variant_free(&v);

    variant_make(&v, 1, YT_DENSE5);
    inputs = json_object_get(v.root, "inputs");
    json_array_append_new(inputs, json_pack("{s:s,s:[i,i,i],s:s,s:[f,f,f,f,f]}", "name", "boxes",
                                            "shape", 1, 1, 5, "datatype", "FP32", "data", 1.0, 1.0,
                                            5.0, 5.0, 0.0));
    expect_variant(&v, -2, 400, "both 'boxes' and y_true");
    variant_free(&v);
}
END_TEST

START_TEST(shapes)
{
    variant v;
    variant_make(&v, 0, YT_BOXES);
    json_t *shape = json_object_get(input(&v, "output_2"), "shape");
    /* [2,8,8,24] -> [4,4,8,24]: same bytes, other batch */
    json_array_set_new(shape, 0, json_integer(4));
    json_array_set_new(shape, 1, json_integer(4));
    expect_variant(&v, -1, 400, "output_2");
    /* [2,8,8,24] -> [2,8,4,48]: inconsistent channels across layers */
    json_array_set_new(shape, 0, json_integer(2));
    json_array_set_new(shape, 1, json_integer(8));
    json_array_set_new(shape, 2, json_integer(4));
    json_array_set_new(shape, 3, json_integer(48));
    expect_variant(&v, -1, 400, "output_2");
    /* grid inconsistent with layer 0: [2,8,8,24] -> [2,16,4,24] */
    json_array_set_new(shape, 1, json_integer(16));
    json_array_set_new(shape, 3, json_integer(24));
    expect_variant(&v, -1, 400, "output_2");
    json_array_set_new(shape, 1, json_integer(8));
    json_array_set_new(shape, 2, json_integer(0));
    expect_variant(&v, -1, 400, "input 'output_2': shape [2,8,0,24] has a zero dimension");
    json_array_set_new(shape, 2, json_integer(-8));
    expect_variant(&v, -1, 400, "has a negative dimension");
    json_array_set_new(shape, 0, json_integer(1ll << 40));
    json_array_set_new(shape, 2, json_integer(1ll << 40));
    expect_variant(&v, -1, 400, "more elements than 64 bits");
    json_array_set_new(shape, 0, json_integer(1ll << 20));
    json_array_set_new(shape, 2, json_integer(1ll << 20));
    expect_variant(&v, -1, 400, "input 'output_2': binary_data_size");
    json_object_set_new(input(&v, "output_2"), "shape", json_pack("[i,i,i,i,i,i]", 1, 1, 1, 1, 1, 1));
    expect_variant(&v, -1, 400, "shape has 6 dimensions");
    json_object_set_new(input(&v, "output_2"), "shape", json_pack("[i,f]", 1, 2.5));
    expect_variant(&v, -1, 400, "shape[1] must be an integer");
    variant_free(&v);
}
END_TEST

START_TEST(datatypes)
{
    variant v;
    variant_make(&v, 1, YT_BOXES);
    json_t *o0 = input(&v, "output_0");
    json_object_set_new(o0, "datatype", json_string("INT32"));
    expect_variant(&v, -2, 400, "input 'output_0': unsupported datatype 'INT32'");
    json_object_set_new(o0, "datatype", json_string("BF16"));
    expect_variant(&v, -2, 400, "BF16 is accepted only as binary");
    json_object_set_new(o0, "datatype", json_string("FP32"));
    json_object_set_new(input(&v, "boxes"), "datatype", json_string("FP16"));
    expect_variant(&v, -2, 400, "boxes");
    json_object_set_new(input(&v, "boxes"), "datatype", json_string("FP32"));
    /* a value that FP16 cannot hold */
    json_object_set_new(o0, "datatype", json_string("FP16"));
    json_array_set_new(json_object_get(o0, "data"), 5, json_real(1e6));
    expect_variant(&v, -2, 400, "input 'output_0': element 5 (1e+06) overflows FP16");
    json_object_set_new(o0, "datatype", json_string("FP32"));
    json_array_set_new(json_object_get(o0, "data"), 7, json_real(1e300));
    expect_variant(&v, -2, 400, "element 7 (1e+300) overflows FP32");
    json_array_set_new(json_object_get(o0, "data"), 7, json_string("x"));
    expect_variant(&v, -2, 400, "input 'output_0': element 7 is a string, not a number");
    variant_free(&v);
}
END_TEST

START_TEST(non_finite_and_bad_json)
{
    variant v;
    variant_make(&v, 1, YT_BOXES);
    char *text = json_dumps(v.root, JSON_COMPACT);
    /* replace the first value of output_0's data with a literal */
    const char *lits[] = {"NaN", "Infinity", "-Infinity", "nan", "1e999"};
    const char *wants[] = {"NaN and Infinity", "NaN and Infinity", "NaN and Infinity",
                           "NaN and Infinity", "finite"};
    char *data = strstr(text, "\"data\":[");
    ck_assert_ptr_nonnull(data);
    data += 8;
    size_t num = strcspn(data, ",]");
    for (int i = 0; i < 5; i++) {
        size_t n = strlen(text) + 32;
        char *bad = malloc(n);
        snprintf(bad, n, "%.*s%s%s", (int)(data - text), text, lits[i], data + num);
        expect_json_text(bad, 400, wants[i]);
        free(bad);
    }
    free(text);
    expect_json_text("{\"inputs\": [", 400, "invalid JSON");
    expect_json_text("[1,2]", 400, "must be a JSON object");
    expect_json_text("{\"inputs\": [], \"inputs\": []}", 400, "invalid JSON");
    expect_json_text("", 400, "invalid JSON");
    /* deeply nested */
    size_t depth = 5000, n = 2 * depth + 64;
    char *deep = malloc(n);
    size_t o = (size_t)snprintf(deep, n, "{\"inputs\":");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    deep[o] = '\0';
    expect_json_text(deep, 400, "nested too deeply");
    free(deep);
    /* data nested deeper than the shape */
    json_t *o0 = input(&v, "output_0");
    json_object_set_new(o0, "data", json_pack("[[[[[f]]]]]", 1.0));
    expect_variant(&v, -2, 400, "input 'output_0': data is nested deeper than its 4-D shape");
    json_object_set_new(o0, "data", json_pack("[f,f]", 1.0, 2.0));
    expect_variant(&v, -2, 400, "input 'output_0': data has 2 values, shape [2,2,2,24] needs 192");
    variant_free(&v);

    /* non-finite binary values: the core names tensor, image and element */
    variant_make(&v, 0, YT_BOXES);
    float nan = NAN;
    memcpy(v.blobs + 4 * 100, &nan, 4);
    expect_variant(&v, -1, 400, "output_0");
    variant_free(&v);
}
END_TEST

START_TEST(bad_boxes)
{
    variant v;
    variant_make(&v, 1, YT_BOXES);
    json_t *data = json_object_get(input(&v, "boxes"), "data");
    /* boxes [B=2, T=3, 5]: image 1 row 0 is valid (T > 1 always puts one valid row first) */
    json_t *row[5];
    for (int k = 0; k < 5; k++)
        row[k] = json_copy(json_array_get(data, 15 + (size_t)k));
    json_array_set_new(data, 19, json_real(3.0)); /* C = 3 */
    expect_variant(&v, -2, 400, "boxes[1][0]");
    json_array_set_new(data, 19, json_real(1.5));
    expect_variant(&v, -2, 400, "boxes[1][0]");
    json_array_set(data, 19, row[4]);
    json_array_set(data, 18, row[1]); /* y_max = y_min: zero height */
    expect_variant(&v, -2, 400, "boxes[1][0]");
    json_array_set(data, 18, row[3]);
    json_array_set_new(data, 15, json_real(200.0)); /* centre right of the 64-pixel input */
    json_array_set_new(data, 17, json_real(220.0));
    expect_variant(&v, -2, 400, "boxes[1][0]");
    for (int k = 0; k < 5; k++)
        json_decref(row[k]);
    variant_free(&v);
}
END_TEST

START_TEST(bad_request_fields)
{
    variant v;
    variant_make(&v, 1, YT_BOXES);
    json_object_set_new(v.root, "outputs", json_pack("[{s:s}]", "name", "grad_3"));
    expect_variant(&v, -2, 400, "unknown output 'grad_3'");
    json_object_set_new(v.root, "outputs", json_pack("[{s:s},{s:s}]", "name", "loss", "name", "loss"));
    expect_variant(&v, -2, 400, "output 'loss' is requested twice");
    json_object_set_new(v.root, "outputs",
                        json_pack("[{s:s,s:{s:b}}]", "name", "loss", "parameters", "classification", 1));
    expect_variant(&v, -2, 400, "unsupported parameter 'classification'");
    json_object_del(v.root, "outputs");
    json_object_set_new(v.root, "id", json_integer(3));
    expect_variant(&v, -2, 400, "\"id\" must be a string");
    json_object_del(v.root, "id");
    json_object_set_new(v.root, "parameters", json_pack("{s:s}", "ignore_treshold", "0.5"));
    expect_variant(&v, -2, 400, "unknown request parameter 'ignore_treshold'");
    json_object_set_new(v.root, "parameters", json_pack("{s:s}", "anchors", "1,2,3"));
    expect_variant(&v, -2, 400, "want 12 (tiny, 2 layers) or 18");
    json_object_set_new(v.root, "parameters", json_pack("{s:s}", "anchors", "1,2,x"));
    expect_variant(&v, -2, 400, "item 3 is not a number");
    json_object_set_new(v.root, "parameters", json_pack("{s:s}", "ignore_thresh", "abc"));
    expect_variant(&v, -2, 400, "ignore_thresh must be a finite number");
    json_object_set_new(v.root, "parameters", json_pack("{s:f}", "step", 1.5));
    expect_variant(&v, -2, 400, "step must be an integer");
    json_object_set_new(v.root, "parameters", json_pack("{s:s}", "binary_data_output", "yes"));
    expect_variant(&v, -2, 400, "binary_data_output must be a boolean");
    json_object_del(v.root, "parameters");
    json_object_set_new(v.root, "input", json_array());
    expect_variant(&v, -2, 400, "unknown key 'input'");
    json_object_del(v.root, "input");
    json_object_set_new(input(&v, "output_0"), "parameters",
                        json_pack("{s:s}", "shared_memory_region", "r"));
    expect_variant(&v, -2, 400, "needs both shared_memory_region (a string) and shared_memory_byte_size");
    variant_free(&v);

    /* binary_data_size without Inference-Header-Content-Length */
    variant_make(&v, 0, YT_BOXES);
    json_t *inputs = json_object_get(v.root, "inputs");
    v.blobs_len = 0;
    (void)inputs;
    expect_variant(&v, -2, 400, "has binary_data_size but the request has no Inference-Header");
    variant_free(&v);
}
END_TEST

START_TEST(limits_and_encodings)
{
    /* yt_small: --max-json 256K, --max-body 1M */
    size_t big = 300 * 1024;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    body[big] = '\0';
    expect_raw(&yt_small, "/v2/models/yolov3/infer", body, big, NULL, 413, "--max-json");
    const char *ih[] = {"Inference-Header-Content-Length: 10", NULL};
    expect_raw(&yt_small, "/v2/models/yolov3/infer", body, big, ih, 400, "invalid JSON");
    const char *ih_big[] = {"Inference-Header-Content-Length: 300000", NULL};
    expect_raw(&yt_small, "/v2/models/yolov3/infer", body, big, ih_big, 413, "--max-json");
    char *huge = malloc(1100 * 1024);
    memset(huge, ' ', 1100 * 1024);
    expect_raw(&yt_small, "/v2/models/yolov3/infer", huge, 1100 * 1024, ih, 413, "--max-body");
    /* chunked: no Content-Length, so the limit is found while reading */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    expect_raw(&yt_small, "/v2/models/yolov3/infer", body, big, chunked, 413, "--max-json");
    free(huge);
    free(body);
    const char *br[] = {"Content-Encoding: br", NULL};
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = "{}", .len = 2,
                  .headers = {"Content-Encoding: br", "Expect:"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 501);
    char ae[64];
    ck_assert_ptr_nonnull(yt_header(&r, "Accept-Encoding", ae, sizeof ae));
    ck_assert_str_eq(ae, "gzip, deflate");
    yt_resp_free(&r);
    expect_raw(&yt_main, "/v2/models/yolov3/infer", "{}", 2, br, 501,
               "unsupported Content-Encoding 'br'");
}
END_TEST

Suite *yt_suite_errors(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("bad_input");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, truncated_and_header_length);
    tcase_add_test(tc, binary_data_size_mismatch);
    tcase_add_test(tc, unknown_duplicate_missing_inputs);
    tcase_add_test(tc, shapes);
    tcase_add_test(tc, datatypes);
    tcase_add_test(tc, non_finite_and_bad_json);
    tcase_add_test(tc, bad_boxes);
    tcase_add_test(tc, bad_request_fields);
    tcase_add_test(tc, limits_and_encodings);
    suite_add_tcase(s, tc);
    return s;
}
