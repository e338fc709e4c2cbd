/*
 * test_evaluate.c: the evaluation models (coco-bbox, voc07, voc). A hand-made set with a
 * known answer, the metadata, and every bad input: a 400 whose message names the tensor
 * and the index, the daemon still serving (and a good request answered after it). The
 * arrays' values against pycocotools' algorithm are clients/python/tests/test_metrics.py's.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One image (id 42), categories 1 and 2: a medium truth of category 1 and a detection on
 * it, a second detection of category 2 elsewhere. Columns as binary blobs. */
typedef struct {
    int64_t gt_image_id[2], gt_category_id[2], gt_id[2];
    double gt_bbox[2][4], gt_area[2];
    int32_t gt_iscrowd[2];
    int64_t dt_image_id[2], dt_category_id[2];
    double dt_bbox[2][4], dt_score[2];
    int64_t image_ids[2], category_ids[2];
    int n_gt, n_dt, n_img, n_cat;
} set;

static void set_make(set *s)
{
    memset(s, 0, sizeof *s);
    s->n_gt = 1, s->n_dt = 2, s->n_img = 1, s->n_cat = 2;
    s->gt_image_id[0] = 42, s->gt_category_id[0] = 1, s->gt_id[0] = 7;
    memcpy(s->gt_bbox[0], (double[4]){10, 10, 50, 40}, 4 * sizeof(double));
    s->gt_area[0] = 2000;
    s->dt_image_id[0] = 42, s->dt_category_id[0] = 1, s->dt_score[0] = 0.9;
    memcpy(s->dt_bbox[0], (double[4]){10, 10, 50, 40}, 4 * sizeof(double));
    s->dt_image_id[1] = 42, s->dt_category_id[1] = 2, s->dt_score[1] = 0.3;
    memcpy(s->dt_bbox[1], (double[4]){200, 200, 5, 5}, 4 * sizeof(double));
    s->image_ids[0] = 42;
    s->category_ids[0] = 1, s->category_ids[1] = 2;
}

typedef struct {
    const char *name, *datatype;
    const void *p;
    int rows, width;
    size_t esize;
} col;

/* The request: its columns binary, params (JSON object text or NULL) and outputs. */
static uint8_t *request(const set *s, const char *params, const char *extra_input,
                        size_t *len, size_t *hlen)
{
    col cols[] = {
        {"gt_image_id", "INT64", s->gt_image_id, s->n_gt, 1, 8},
        {"gt_category_id", "INT64", s->gt_category_id, s->n_gt, 1, 8},
        {"gt_bbox", "FP64", s->gt_bbox, s->n_gt, 4, 8},
        {"gt_area", "FP64", s->gt_area, s->n_gt, 1, 8},
        {"gt_iscrowd", "INT32", s->gt_iscrowd, s->n_gt, 1, 4},
        {"gt_id", "INT64", s->gt_id, s->n_gt, 1, 8},
        {"dt_image_id", "INT64", s->dt_image_id, s->n_dt, 1, 8},
        {"dt_category_id", "INT64", s->dt_category_id, s->n_dt, 1, 8},
        {"dt_bbox", "FP64", s->dt_bbox, s->n_dt, 4, 8},
        {"dt_score", "FP64", s->dt_score, s->n_dt, 1, 8},
        {"image_ids", "INT64", s->image_ids, s->n_img, 1, 8},
        {"category_ids", "INT64", s->category_ids, s->n_cat, 1, 8},
    };
    int n = (int)(sizeof cols / sizeof cols[0]);
    static char head[128 * 1024];
    size_t o = (size_t)snprintf(head, sizeof head, "{\"inputs\":[");
    size_t blob = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)cols[i].rows * (size_t)cols[i].width * cols[i].esize;
        if (cols[i].width == 4)
            o += (size_t)snprintf(head + o, sizeof head - o, "%s{\"name\":\"%s\",\"datatype\":\"%s\","
                                  "\"shape\":[%d,4],\"parameters\":{\"binary_data_size\":%zu}}",
                                  i ? "," : "", cols[i].name, cols[i].datatype, cols[i].rows, bytes);
        else
            o += (size_t)snprintf(head + o, sizeof head - o, "%s{\"name\":\"%s\",\"datatype\":\"%s\","
                                  "\"shape\":[%d],\"parameters\":{\"binary_data_size\":%zu}}",
                                  i ? "," : "", cols[i].name, cols[i].datatype, cols[i].rows, bytes);
        blob += bytes;
    }
    if (extra_input)
        o += (size_t)snprintf(head + o, sizeof head - o, ",%s", extra_input);
    o += (size_t)snprintf(head + o, sizeof head - o, "],\"parameters\":%s}", params ? params : "{}");
    ck_assert_uint_lt(o, sizeof head);
    uint8_t *body = malloc(o + blob + 1);
    memcpy(body, head, o);
    size_t at = o;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)cols[i].rows * (size_t)cols[i].width * cols[i].esize;
        memcpy(body + at, cols[i].p, bytes);
        at += bytes;
    }
    *len = at;
    *hlen = o;
    return body;
}

static long post(const char *model, const set *s, const char *params, const char *extra,
                 yt_resp *r)
{
    size_t len, hl;
    uint8_t *body = request(s, params, extra, &len, &hl);
    char path[128], h[96];
    snprintf(path, sizeof path, "/v2/models/%s/infer", model);
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", hl);
    yt_req req = {.path = path, .body = body, .len = len, .headers = {h, "Expect:"}};
    long st = yt_http(&yt_main, &req, r);
    free(body);
    return st;
}

/* A 400 whose message names want; then the daemon answers the good set. */
static void expect_400(const set *s, const char *params, const char *extra, const char *want)
{
    yt_resp r;
    long st = post("coco-bbox", s, params, extra, &r);
    char msg[600];
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(st == 400, "want 400 '%s', got %ld: %s", want, st, msg);
    ck_assert_msg(strstr(msg, want) != NULL, "message '%s' lacks '%s'", msg, want);
    yt_resp_free(&r);
    set good;
    set_make(&good);
    ck_assert_int_eq(post("coco-bbox", &good, NULL, NULL, &r), 200);
    yt_resp_free(&r);
}

/* The outputs of a 200: name, datatype, shape and the values (binary blobs or JSON data,
 * copied out as 8-byte elements: FP64 or INT64). */
typedef struct {
    char name[32], datatype[16];
    int ndim;
    size_t n;
    void *data;
} ev_out;

typedef struct {
    ev_out out[8];
    int n;
} ev_outs;

static int parse_outs(const yt_resp *r, ev_outs *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    char h[32];
    size_t hl = yt_header(r, "Inference-Header-Content-Length", h, sizeof h) ? strtoul(h, NULL, 10)
                                                                              : r->len;
    json_t *root = json_loadb(r->body, hl, 0, NULL);
    if (!root) {
        snprintf(err, errlen, "not JSON");
        return -1;
    }
    size_t at = hl, i;
    json_t *x;
    json_array_foreach(json_object_get(root, "outputs"), i, x) {
        ev_out *e = &o->out[o->n++];
        snprintf(e->name, sizeof e->name, "%s", json_string_value(json_object_get(x, "name")));
        snprintf(e->datatype, sizeof e->datatype, "%s",
                 json_string_value(json_object_get(x, "datatype")));
        json_t *shape = json_object_get(x, "shape");
        e->ndim = (int)json_array_size(shape);
        e->n = 1;
        for (int d = 0; d < e->ndim; d++)
            e->n *= (size_t)json_integer_value(json_array_get(shape, (size_t)d));
        e->data = malloc(e->n * 8 + 8);
        json_t *data = json_object_get(x, "data");
        bool is_int = !strcmp(e->datatype, "INT64");
        if (data) {
            for (size_t k = 0; k < e->n; k++) {
                json_t *v = json_array_get(data, k);
                if (is_int)
                    ((int64_t *)e->data)[k] = json_integer_value(v);
                else
                    ((double *)e->data)[k] = json_is_null(v) ? NAN : json_number_value(v);
            }
        } else {
            size_t b = (size_t)json_integer_value(
                json_object_get(json_object_get(x, "parameters"), "binary_data_size"));
            if (b != e->n * 8 || at + b > r->len) {
                snprintf(err, errlen, "output %s: %zu bytes", e->name, b);
                json_decref(root);
                return -1;
            }
            memcpy(e->data, r->body + at, b);
            at += b;
        }
    }
    json_decref(root);
    return 0;
}

static void free_outs(ev_outs *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->out[i].data);
}

static const ev_out *output(const ev_outs *o, const char *name)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->out[i].name, name))
            return &o->out[i];
    ck_abort_msg("no output %s", name);
    return NULL;
}

START_TEST(coco_bbox_known_answer)
{
    set s;
    set_make(&s);
    yt_resp r;
    ck_assert_int_eq(post("coco-bbox", &s, "{\"binary_data_output\":true}", NULL, &r), 200);
    ev_outs o;
    char err[256];
    ck_assert_msg(parse_outs(&r, &o, err, sizeof err) == 0, "%s", err);
    /* the one truth is medium (area 2000) and found exactly by the higher-scored
     * detection: AP and AR 1 for all and medium at every threshold and maxDets; no small
     * or large truth: -1 (pycocotools' "absent"). Precision is tp / (tp + fp +
     * np.spacing(1)): 1 / (1 + 2^-52), just below 1, and so are the AP means */
    const double want[12] = {1, 1, 1, -1, 1, -1, 1, 1, 1, -1, 1, -1};
    const ev_out *st = output(&o, "stats");
    ck_assert_str_eq(st->datatype, "FP64");
    ck_assert_int_eq((int)st->n, 12);
    for (int i = 0; i < 12; i++) {
        double v = ((const double *)st->data)[i];
        bool ok = want[i] < 0 || i >= 6 ? v == want[i] : v < 1 && v > 1 - 1e-15;
        ck_assert_msg(ok, "stats[%d] = %.17g, want %g", i, v, want[i]);
    }
    /* per-class AP: category 1 found, category 2 without truths */
    const ev_out *ap = output(&o, "ap");
    ck_assert_int_eq((int)ap->n, 2);
    double a0 = ((const double *)ap->data)[0], a1 = ((const double *)ap->data)[1];
    ck_assert_msg(a0 < 1 && a0 > 1 - 1e-15 && a1 == -1, "ap %.17g %.17g", a0, a1);
    const ev_out *c = output(&o, "counts");
    const int64_t counts[5] = {10, 101, 2, 4, 3};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(((const int64_t *)c->data)[i], counts[i]);
    const ev_out *p = output(&o, "precision");
    ck_assert_int_eq(p->ndim, 5);
    ck_assert_int_eq((int)p->n, 10 * 101 * 2 * 4 * 3);
    ck_assert_int_eq((int)output(&o, "recall")->n, 10 * 2 * 4 * 3);
    ck_assert_int_eq((int)output(&o, "scores")->n, 10 * 101 * 2 * 4 * 3);
    free_outs(&o);
    yt_resp_free(&r);

    /* the same as JSON numbers; a parameter set by pycocotools' name changes the shapes */
    ck_assert_int_eq(post("coco-bbox", &s, "{\"maxDets\":\"[1,5,20,50]\",\"iouThrs\":[0.5]}",
                          NULL, &r), 200);
    ck_assert_msg(parse_outs(&r, &o, err, sizeof err) == 0, "%s", err);
    c = output(&o, "counts");
    ck_assert_int_eq(((const int64_t *)c->data)[0], 1);
    ck_assert_int_eq(((const int64_t *)c->data)[4], 4);
    free_outs(&o);
    yt_resp_free(&r);
}
END_TEST

START_TEST(voc_known_answer)
{
    set s;
    set_make(&s);
    for (int m = 0; m < 2; m++) {
        yt_resp r;
        ck_assert_int_eq(post(m ? "voc" : "voc07", &s, "{\"binary_data_output\":true}", NULL, &r),
                         200);
        ev_outs o;
        char err[256];
        ck_assert_msg(parse_outs(&r, &o, err, sizeof err) == 0, "%s", err);
        const double *ap = output(&o, "ap")->data;
        /* category 1: one truth found first: AP 1; category 2: a detection and no truth,
         * recall voc_eval's 0/0 (NaN): the 11-point AP takes no point of it (0), the
         * all-point AP sums NaN (NaN); the mean AP follows. The 11-point AP of category 1
         * is eleven 1/11 added: 1 to within rounding */
        double map = ((const double *)output(&o, "map")->data)[0];
        if (m == 0)
            ck_assert_msg(fabs(ap[0] - 1) < 1e-15 && ap[1] == 0 && fabs(map - 0.5) < 1e-15,
                          "ap %.17g %g map %.17g", ap[0], ap[1], map);
        else
            ck_assert_msg(ap[0] == 1 && isnan(ap[1]) && isnan(map), "ap %g %g map %g", ap[0],
                          ap[1], map);
        free_outs(&o);
        yt_resp_free(&r);
    }
}
END_TEST

START_TEST(metadata_lists_the_tensors)
{
    json_t *m = yt_get_json(&yt_main, "/v2/models/coco-bbox");
    ck_assert_int_eq((int)json_array_size(json_object_get(m, "inputs")), 13);
    json_t *out = json_object_get(m, "outputs");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(out, 0), "name")), "stats");
    json_decref(m);
    m = yt_get_json(&yt_main, "/v2/models/voc07/config");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(m, "parameters"), "convention"),
                         "string_value")),
                     "voc07");
    json_decref(m);
}
END_TEST

START_TEST(bad_values_name_tensor_and_index)
{
    set s;
    set_make(&s);
    s.gt_bbox[0][2] = NAN;
    expect_400(&s, NULL, NULL, "gt_bbox[0][2] (width) is NaN");
    set_make(&s);
    s.gt_bbox[0][3] = -1;
    expect_400(&s, NULL, NULL, "gt_bbox[0][3]: height -1 is negative");
    set_make(&s);
    s.gt_area[0] = -5;
    expect_400(&s, NULL, NULL, "gt_area[0]: -5 is negative");
    set_make(&s);
    s.dt_bbox[1][0] = INFINITY;
    expect_400(&s, NULL, NULL, "dt_bbox[1][0] (x) is infinite");
    set_make(&s);
    s.dt_score[1] = 1.5;
    expect_400(&s, NULL, NULL, "dt_score[1]: 1.5 is outside [0, 1]");
    set_make(&s);
    s.dt_score[0] = NAN;
    expect_400(&s, NULL, NULL, "dt_score[0]: nan is outside [0, 1]");
    set_make(&s);
    s.dt_score[1] = -0.25;
    expect_400(&s, NULL, NULL, "dt_score[1]: -0.25 is outside [0, 1]");
}
END_TEST

START_TEST(bad_ids_name_tensor_and_index)
{
    set s;
    set_make(&s);
    s.gt_image_id[0] = 43;
    expect_400(&s, NULL, NULL, "gt_image_id[0]: 43 is not in image_ids");
    set_make(&s);
    s.dt_image_id[1] = 5; /* a detection for an image with no entry */
    expect_400(&s, NULL, NULL, "dt_image_id[1]: 5 is not in image_ids");
    set_make(&s);
    s.gt_category_id[0] = 3;
    expect_400(&s, NULL, NULL, "gt_category_id[0]: 3 is not in category_ids");
    set_make(&s);
    s.dt_category_id[1] = 9;
    expect_400(&s, NULL, NULL, "dt_category_id[1]: 9 is not in category_ids");
    set_make(&s);
    s.category_ids[1] = 1;
    expect_400(&s, NULL, NULL, "category_ids[1]: 1 follows 1");
}
END_TEST

START_TEST(bad_shapes_and_parameters)
{
    set s;
    set_make(&s);
    expect_400(&s, NULL,
               "{\"name\":\"gt_difficult\",\"datatype\":\"INT32\",\"shape\":[3],\"data\":[0,0,0]}",
               "input 'gt_difficult' has 3 rows but 'gt_image_id' has 1");
    expect_400(&s, NULL, "{\"name\":\"gt_bbox\",\"datatype\":\"FP64\",\"shape\":[1,4],"
                         "\"data\":[1,2,3,4]}",
               "input 'gt_bbox' is given twice");
    expect_400(&s, NULL, "{\"name\":\"boxes\",\"datatype\":\"FP64\",\"shape\":[1],\"data\":[1]}",
               "unknown input 'boxes'");
    expect_400(&s, "{\"maxDets\":[1,\"x\"]}", NULL, "parameter maxDets[1] is not a number");
    expect_400(&s, "{\"iouThrs\":\"[0.5,\"}", NULL, "parameter iouThrs: its string is not JSON");
    expect_400(&s, "{\"areaRng\":[[0,1,2]]}", NULL, "parameter areaRng[0] must be a [lo, hi] pair");
    expect_400(&s, "{\"useCats\":2}", NULL, "parameter useCats must be 0 or 1");
    expect_400(&s, "{\"run\":\"x\"}", NULL, "unknown request parameter 'run'");
}
END_TEST

START_TEST(over_large_set_is_refused)
{
    /* precision and scores of 1000 categories x 64 IoU x 1024 recall thresholds x 16 area
     * ranges x 16 maxDets: 2 x 8.6 GB per 32 categories, far over any budget */
    set s;
    set_make(&s);
    char *params = malloc(64 * 1024);
    size_t o = (size_t)snprintf(params, 64 * 1024, "{\"catIds\":[");
    for (int k = 0; k < 1000; k++)
        o += (size_t)snprintf(params + o, 64 * 1024 - o, "%s%d", k ? "," : "", k + 1);
    o += (size_t)snprintf(params + o, 64 * 1024 - o, "],\"recThrs\":[");
    for (int k = 0; k < 1024; k++)
        o += (size_t)snprintf(params + o, 64 * 1024 - o, "%s%.6f", k ? "," : "", k / 1023.0);
    o += (size_t)snprintf(params + o, 64 * 1024 - o, "],\"iouThrs\":[");
    for (int k = 0; k < 64; k++)
        o += (size_t)snprintf(params + o, 64 * 1024 - o, "%s%.6f", k ? "," : "", 0.3 + k / 100.0);
    o += (size_t)snprintf(params + o, 64 * 1024 - o, "],\"maxDets\":[1,2,3,4,5,6,7,8,9,10,11,12,"
                          "13,14,15,16],\"areaRng\":[");
    for (int k = 0; k < 16; k++)
        o += (size_t)snprintf(params + o, 64 * 1024 - o, "%s[0,%d]", k ? "," : "", 100 * (k + 1));
    snprintf(params + o, 64 * 1024 - o, "]}");
    expect_400(&s, params, NULL, "over the memory budget");
    free(params);
}
END_TEST

START_TEST(stats_need_three_max_dets)
{
    set s;
    set_make(&s);
    size_t len, hl;
    uint8_t *body = request(&s, "{\"maxDets\":[1,10]}", NULL, &len, &hl);
    /* ask for stats explicitly: replace the final '}' of the header by an outputs list */
    char *text = malloc(len + 128);
    memcpy(text, body, hl - 1);
    size_t n = hl - 1;
    n += (size_t)sprintf(text + n, ",\"outputs\":[{\"name\":\"stats\"}]}");
    size_t nhl = n;
    memcpy(text + n, body + hl, len - hl);
    n += len - hl;
    char h[96];
    snprintf(h, sizeof h, "Inference-Header-Content-Length: %zu", nhl);
    yt_req req = {.path = "/v2/models/coco-bbox/infer", .body = text, .len = n,
                  .headers = {h, "Expect:"}};
    yt_resp r;
    ck_assert_int_eq(yt_http(&yt_main, &req, &r), 400);
    char msg[600];
    yt_error_message(&r, msg, sizeof msg);
    ck_assert_msg(strstr(msg, "outputs[0]: 'stats' needs at least 3 maxDets") != NULL, "%s", msg);
    yt_resp_free(&r);
    free(text);
    free(body);
    /* without outputs, the arrays come back and stats is left out */
    ck_assert_int_eq(post("coco-bbox", &s, "{\"maxDets\":[1,10]}", NULL, &r), 200);
    ck_assert_ptr_null(strstr(r.body, "\"stats\""));
    yt_resp_free(&r);
}
END_TEST

Suite *yt_suite_evaluate(void)
{
    Suite *s = suite_create("evaluate");
    TCase *t = tcase_create("evaluate");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, coco_bbox_known_answer);
    tcase_add_test(t, voc_known_answer);
    tcase_add_test(t, metadata_lists_the_tensors);
    tcase_add_test(t, bad_values_name_tensor_and_index);
    tcase_add_test(t, bad_ids_name_tensor_and_index);
    tcase_add_test(t, bad_shapes_and_parameters);
    tcase_add_test(t, over_large_set_is_refused);
    tcase_add_test(t, stats_need_three_max_dets);
    suite_add_tcase(s, t);
    return s;
}
