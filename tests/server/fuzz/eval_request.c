/* libFuzzer target: the evaluation models' request parser (server/v2/eval_request.c) and,
 * on what it accepts, the evaluation and its response body (server/v2/eval_run.c).
 *
 * Input layout: byte 0 selects the convention (modulo 3: coco, voc07, voc); bit 2 says the
 * body has an Inference-Header-Content-Length, taken from bytes 1-2 (little endian) modulo
 * the body length + 1; the rest is the body (JSON header, then binary blobs).
 *
 * Invariants: the parser returns 0 or -1; on -1 the failure has a 4xx/5xx status and a
 * non-empty message; on 0 every truth's and detection's image is in image_ids and its
 * category in category_ids, ids strictly increasing, boxes finite with no negative size,
 * scores in [0, 1]; the evaluation of a small accepted set returns 0 or a failure, and on
 * 0 precision lies in [-1, 1] and the body's JSON parses.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "../../../server/v2/eval.h"

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "\nINVARIANT VIOLATED at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                        \
            fprintf(stderr, "\n");                                               \
            abort();                                                             \
        }                                                                        \
    } while (0)

static void check_fail(const yls_fail *f)
{
    CHECK(f->status >= 400 && f->status < 600, "status %u", f->status);
    CHECK(f->msg[0] != '\0' && memchr(f->msg, '\0', sizeof f->msg), "message");
}

static void check_sets(const yls_eval_sets *s, int convention)
{
    for (int64_t i = 1; i < s->n_img; i++)
        CHECK(s->image_ids[i] > s->image_ids[i - 1], "image_ids[%lld]", (long long)i);
    for (int64_t i = 1; i < s->n_cat; i++)
        CHECK(s->category_ids[i] > s->category_ids[i - 1], "category_ids[%lld]", (long long)i);
    for (int64_t j = 0; j < s->n_gt; j++) {
        CHECK(yle_find_id(s->image_ids, s->n_img, s->gt_image[j]) >= 0, "gt %lld image", (long long)j);
        CHECK(yle_find_id(s->category_ids, s->n_cat, s->gt[j].category_id) >= 0, "gt %lld cat",
              (long long)j);
        for (int c = 0; c < 4; c++)
            CHECK(isfinite(s->gt[j].box[c]), "gt %lld box", (long long)j);
        CHECK(convention != YLE_COCO || (s->gt[j].box[2] >= 0 && s->gt[j].box[3] >= 0 &&
                                         s->gt[j].area >= 0), "gt %lld size", (long long)j);
    }
    for (int64_t j = 0; j < s->n_dt; j++) {
        CHECK(yle_find_id(s->image_ids, s->n_img, s->dt_image[j]) >= 0, "dt %lld image", (long long)j);
        CHECK(s->dt[j].score >= 0 && s->dt[j].score <= 1, "dt %lld score", (long long)j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int convention = data[0] % 3;
    bool has_header = data[0] & 4;
    const uint8_t *body = data + 3;
    size_t len = size - 3;
    size_t json_len = has_header ? (size_t)(data[1] | data[2] << 8) % (len + 1) : len;
    json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return 0;
    yle_params p;
    yle_params_default(&p, convention);
    int64_t *img_ids = NULL, *cat_ids = NULL, n_img = 0, n_cat = 0;
    yls_fail f = {0};
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(json_object_get(root, "parameters"), key, v) {
        rc = yls_eval_param(&p, key, v, &img_ids, &n_img, &cat_ids, &n_cat, &f);
        CHECK(rc >= -1 && rc <= 1, "param rc %d", rc);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        check_fail(&f);
        goto out;
    }
    yls_eval_sets s;
    if (yls_eval_sets_parse(&s, convention, json_object_get(root, "inputs"), body, len, json_len,
                            has_header, &f)) {
        check_fail(&f);
        yls_eval_sets_free(&s);
        goto out;
    }
    check_sets(&s, convention);
    p.img_ids = img_ids ? img_ids : s.image_ids;
    p.n_img = img_ids ? n_img : s.n_img;
    p.cat_ids = cat_ids ? cat_ids : s.category_ids;
    p.n_cat = cat_ids ? n_cat : s.n_cat;
    p.known_cat_ids = s.category_ids;
    p.n_known_cat = s.n_cat;
    yle_error err;
    if (yle_params_check(&p, &err) == YLE_OK && p.n_cat <= 64 && s.n_img <= 256) {
        bool want[YLS_EVOUT_COUNT];
        memset(want, 1, sizeof want);
        yls_eval_result res;
        memset(&f, 0, sizeof f);
        if (yls_eval_run(&res, &p, &s, want, &f) == 0) {
            if (p.convention == YLE_COCO) {
                int64_t n = yls_eval_elems(&p, YLS_EVOUT_PRECISION);
                for (int64_t i = 0; i < n; i++) {
                    double x = res.v[YLS_EVOUT_PRECISION][i];
                    CHECK(x >= -1 && x <= 1, "precision[%lld] = %g", (long long)i, x);
                }
            }
            yls_eval_want w = {.n = 0};
            for (int o = 0; o < YLS_EVOUT_COUNT; o++)
                if (res.v[o] && (o != YLS_EVOUT_STATS || res.has_stats)) {
                    w.binary[w.n] = o % 2;
                    w.out[w.n++] = o;
                }
            yls_eval_body b;
            if (yls_eval_json_bound(&res, &w) < ((uint64_t)64 << 20) &&
                yls_eval_respond(&b, &res, &w, "coco-bbox", NULL, &f) == 0) {
                json_t *j = json_loadb(b.json, b.json_len, 0, NULL);
                CHECK(j != NULL, "response JSON");
                json_decref(j);
                free(b.json);
            }
            yls_eval_result_free(&res);
        } else {
            check_fail(&f);
        }
    }
    yls_eval_sets_free(&s);
out:
    free(img_ids);
    free(cat_ids);
    json_decref(root);
    return 0;
}
