/*
 * test_infer.c: the daemon's answers equal the core's, bit for bit, for every model, input
 * datatype and layout, ground-truth form, input encoding (binary, JSON flat or nested,
 * mixed) and output selection.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

/* Send c as s to d, expect 200 and every listed output (NULL list: all of them) exact. */
static void roundtrip(const yt_daemon *d, const yt_case *c, const yt_send *s)
{
    yt_resp r;
    long st = yt_infer(d, c, s, &r);
    char msg[512];
    ck_assert_msg(st == 200, "status %ld: %s %s", st, yt_error_message(&r, msg, sizeof msg),
                  r.error);
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    const char *model = json_string_value(json_object_get(o.root, "model_name"));
    ck_assert_str_eq(model, s->model ? s->model : c->L == 3 ? "yolov3" : "yolov3-tiny");
    ck_assert_str_eq(json_string_value(json_object_get(o.root, "model_version")), "1");
    if (s->id)
        ck_assert_str_eq(json_string_value(json_object_get(o.root, "id")), s->id);
    else
        ck_assert_ptr_null(json_object_get(o.root, "id"));
    if (!s->outputs[0]) {
        yt_check_all(c, &o);
    } else {
        int n = 0;
        for (; n < 12 && s->outputs[n]; n++)
            yt_check_output(c, &o, s->outputs[n]);
        ck_assert_int_eq(o.n, n);
    }
    /* binary or JSON as asked */
    for (int i = 0; i < o.n; i++) {
        bool want = s->outputs[0] && s->output_binary >= 0 ? s->output_binary
                                                           : s->binary_data_output;
        ck_assert_msg(o.out[i].binary == want, "%s binary %d", o.out[i].name, o.out[i].binary);
    }
    char ct[64];
    yt_header(&r, "Content-Type", ct, sizeof ct);
    bool any_binary = false;
    for (int i = 0; i < o.n; i++)
        any_binary |= o.out[i].binary;
    ck_assert_str_eq(ct, any_binary ? "application/octet-stream" : "application/json");
    yt_outputs_free(&o);
    yt_resp_free(&r);
}

static void run(const yt_spec *spec, const yt_send *send)
{
    yt_case c;
    yt_case_make(&c, spec);
    roundtrip(&yt_main, &c, send);
    yt_case_free(&c);
}

START_TEST(binary_fp32_boxes_all_outputs)
{
    yt_spec spec = {.num_anchors = 9, .B = 3, .H0 = 2, .W0 = 3, .C = 4, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 5, .seed = 1};
    yt_send send = {.input_mode = 0, .output_binary = -1, .binary_data_output = true, .id = "r1"};
    run(&spec, &send);
}
END_TEST

START_TEST(json_flat_fp32_all_outputs)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .seed = 2};
    yt_send send = {.input_mode = 1, .output_binary = -1};
    run(&spec, &send);
}
END_TEST

START_TEST(json_nested_5d_fp64_boxes)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 1, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                    .out5d = true, .truth = YT_BOXES, .truth_dtype = YL_F64, .T = 3, .seed = 3};
    yt_send send = {.input_mode = 2, .output_binary = 0, .id = "nested"};
    run(&spec, &send);
}
END_TEST

START_TEST(tiny_dense5_fp16_mixed)
{
    yt_spec spec = {.num_anchors = 6, .B = 2, .H0 = 2, .W0 = 2, .C = 5, .out_dtype = YL_F16,
                    .out5d = true, .truth = YT_DENSE5, .truth_dtype = YL_F16, .T = 6, .seed = 4};
    yt_send send = {.input_mode = 3, .output_binary = 1};
    run(&spec, &send);
}
END_TEST

START_TEST(mixed_dtypes_bf16_dense4)
{
    /* output_0 FP32, output_1 FP16, output_2 BF16; y_true BF16 4-D (binary only) */
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 1, .W0 = 1, .C = 3, .out_dtype = -1,
                    .truth = YT_DENSE4, .truth_dtype = YL_BF16, .T = 4, .seed = 5};
    yt_send send = {.input_mode = 3, .output_binary = -1, .binary_data_output = true};
    run(&spec, &send);
}
END_TEST

START_TEST(fp64_dense4_json)
{
    yt_spec spec = {.num_anchors = 6, .B = 1, .H0 = 2, .W0 = 3, .C = 2, .out_dtype = YL_F64,
                    .truth = YT_DENSE4, .truth_dtype = YL_F64, .T = 3, .seed = 6};
    yt_send send = {.input_mode = 1, .output_binary = -1};
    run(&spec, &send);
}
END_TEST

START_TEST(bf16_outputs_fp16_dense5_binary)
{
    yt_spec spec = {.num_anchors = 6, .B = 3, .H0 = 1, .W0 = 2, .C = 1, .out_dtype = YL_BF16,
                    .truth = YT_DENSE5, .truth_dtype = YL_F16, .T = 2, .seed = 7};
    yt_send send = {.input_mode = 0, .output_binary = 1};
    run(&spec, &send);
}
END_TEST

START_TEST(output_subsets)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .seed = 8};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send a = {.input_mode = 0, .outputs = {"loss"}, .output_binary = -1};
    roundtrip(&yt_main, &c, &a);
    yt_send b = {.input_mode = 1, .outputs = {"grad_1", "stats", "image_terms"}, .output_binary = 1};
    roundtrip(&yt_main, &c, &b);
    yt_send d = {.input_mode = 0, .outputs = {"layer_terms", "loss_terms", "grad_2", "grad_0"},
                 .output_binary = 0};
    roundtrip(&yt_main, &c, &d);
    yt_send e = {.input_mode = 0, .outputs = {"loss", "loss_terms"}, .output_binary = -1,
                 .binary_data_output = true};
    roundtrip(&yt_main, &c, &e);

    /* per-output binary_data overrides binary_data_output */
    size_t len, hl;
    yt_send f = {.input_mode = 0, .outputs = {"loss"}, .output_binary = -1};
    uint8_t *body = yt_request_body(&c, &f, &len, &hl);
    json_t *root = json_loadb((const char *)body, hl, 0, NULL);
    json_object_set_new(root, "parameters", json_pack("{s:b}", "binary_data_output", 1));
    json_object_set_new(root, "outputs",
                        json_pack("[{s:s,s:{s:b}},{s:s}]", "name", "loss", "parameters",
                                  "binary_data", 0, "name", "grad_0"));
    char *header = json_dumps(root, JSON_COMPACT);
    size_t nhl = strlen(header), nlen = nhl + (len - hl);
    uint8_t *nbody = malloc(nlen);
    memcpy(nbody, header, nhl);
    memcpy(nbody + nhl, body + hl, len - hl);
    char ih[64];
    snprintf(ih, sizeof ih, "Inference-Header-Content-Length: %zu", nhl);
    yt_req req = {.path = "/v2/models/yolov3/infer", .body = nbody, .len = nlen,
                  .headers = {ih, "Expect:"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 200);
    yt_outputs o;
    char err[256];
    ck_assert_msg(yt_parse_outputs(&r, &o, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(o.n, 2);
    ck_assert(!yt_find(&o, "loss")->binary);
    ck_assert(yt_find(&o, "grad_0")->binary);
    yt_check_output(&c, &o, "loss");
    yt_check_output(&c, &o, "grad_0");
    yt_outputs_free(&o);
    yt_resp_free(&r);
    free(header);
    json_decref(root);
    free(body);
    free(nbody);
    yt_case_free(&c);
}
END_TEST

START_TEST(parameters_override)
{
    /* ignore_thresh and anchors from the request, against the core with the same config */
    const char *anchors = "11,15,17,31,34,24,31,62,63,46,60,120,117,91,157,199,374,327";
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 2, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 5, .ignore_thresh = 0.3,
                    .anchors = anchors, .seed = 9};
    json_t *params = json_pack("{s:f,s:s,s:s,s:i}", "ignore_thresh", 0.3, "anchors", anchors,
                               "run", "exp-1", "step", 42);
    yt_send send = {.input_mode = 0, .output_binary = -1, .binary_data_output = true,
                    .params = params};
    run(&spec, &send);
    json_decref(params);

    /* tiny anchors on the yolov3 model: two layers */
    const char *tiny = "10,14,23,27,37,58,81,82,135,169,344,319";
    yt_spec spec2 = {.num_anchors = 6, .B = 1, .H0 = 2, .W0 = 2, .C = 2, .out_dtype = YL_F32,
                     .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 3, .anchors = tiny, .seed = 10};
    params = json_pack("{s:s}", "anchors", tiny);
    yt_send send2 = {.input_mode = 1, .output_binary = -1, .params = params, .model = "yolov3"};
    yt_case c;
    yt_case_make(&c, &spec2);
    roundtrip(&yt_main, &c, &send2);
    yt_case_free(&c);
    json_decref(params);
}
END_TEST

START_TEST(custom_model_from_file)
{
    yt_spec spec = {.num_anchors = 9, .B = 2, .H0 = 1, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .ignore_thresh = 0.7,
                    .anchors = "12,16,19,36,40,28,36,75,76,55,72,146,142,110,192,243,459,401",
                    .seed = 11};
    yt_case c;
    yt_case_make(&c, &spec);
    yt_send send = {.input_mode = 0, .output_binary = -1, .model = "custom3"};
    roundtrip(&yt_small, &c, &send);
    yt_case_free(&c);
    yt_spec spec2 = {.num_anchors = 6, .B = 1, .H0 = 2, .W0 = 1, .C = 2, .out_dtype = YL_F32,
                     .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .ignore_thresh = 0.3,
                     .seed = 12};
    yt_case_make(&c, &spec2);
    yt_send send2 = {.input_mode = 1, .output_binary = 1, .model = "custom-tiny"};
    roundtrip(&yt_small, &c, &send2);
    yt_case_free(&c);
}
END_TEST

START_TEST(versioned_path_and_empty_outputs)
{
    yt_spec spec = {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 1, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 2, .seed = 13};
    yt_case c;
    yt_case_make(&c, &spec);
    size_t len, hl;
    yt_send s = {.input_mode = 1, .output_binary = -1};
    uint8_t *body = yt_request_body(&c, &s, &len, &hl);
    /* "outputs": [] means every output, as when it is omitted */
    json_t *root = json_loadb((const char *)body, len, 0, NULL);
    json_object_set_new(root, "outputs", json_array());
    char *text = json_dumps(root, JSON_COMPACT);
    yt_req req = {.path = "/v2/models/yolov3-tiny/versions/1/infer", .body = text,
                  .len = strlen(text), .headers = {"Content-Type: application/json"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 200);
    yt_check_answer(&c, &r);
    free(text);
    json_decref(root);
    free(body);
    yt_case_free(&c);
}
END_TEST

Suite *yt_suite_infer(void)
{
    Suite *s = suite_create("infer");
    TCase *tc = tcase_create("exact");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, binary_fp32_boxes_all_outputs);
    tcase_add_test(tc, json_flat_fp32_all_outputs);
    tcase_add_test(tc, json_nested_5d_fp64_boxes);
    tcase_add_test(tc, tiny_dense5_fp16_mixed);
    tcase_add_test(tc, mixed_dtypes_bf16_dense4);
    tcase_add_test(tc, fp64_dense4_json);
    tcase_add_test(tc, bf16_outputs_fp16_dense5_binary);
    tcase_add_test(tc, output_subsets);
    tcase_add_test(tc, parameters_override);
    tcase_add_test(tc, custom_model_from_file);
    tcase_add_test(tc, versioned_path_and_empty_outputs);
    suite_add_tcase(s, tc);
    return s;
}
