/* COCO-format JSON to the evaluator's arrays (coco_json.h). */
#include "coco_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* An integer id: a JSON integer, or a real holding an integer value below 2^63. */
static int get_id(json_t *o, const char *key, int64_t *out, int need) {
    json_t *v = json_object_get(o, key);
    if (!v)
        return need ? -1 : 1;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9.2e18) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return -1;
}

static int get_num(json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v)
        return 1;
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

static int get_bbox(json_t *o, double box[4]) {
    json_t *b = json_object_get(o, "bbox");
    if (!json_is_array(b) || json_array_size(b) != 4)
        return -1;
    for (size_t i = 0; i < 4; i++) {
        json_t *v = json_array_get(b, i);
        if (!json_is_number(v))
            return -1;
        box[i] = json_number_value(v);
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t ycj_sort_unique(int64_t *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || v[i] != v[m - 1])
            v[m++] = v[i];
    return m;
}

static json_t *parse(const char *text, size_t len, const char *what, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        fail(err, errlen, "%s: JSON error at line %d column %d: %s", what, je.line, je.column,
             je.text);
    return root;
}

/* ids of an array of objects ("images", "categories"), sorted; duplicates refused */
static int load_ids(json_t *arr, const char *name, int64_t **ids, int64_t *n, char *err,
                    size_t errlen) {
    if (!json_is_array(arr))
        return fail(err, errlen, "truths: \"%s\" is missing or not an array", name);
    size_t cnt = json_array_size(arr);
    *ids = malloc((cnt ? cnt : 1) * sizeof **ids);
    if (!*ids)
        return fail(err, errlen, "out of memory");
    for (size_t i = 0; i < cnt; i++) {
        json_t *o = json_array_get(arr, i);
        if (!json_is_object(o) || get_id(o, "id", &(*ids)[i], 1))
            return fail(err, errlen, "truths: %s[%zu].id is missing or not an integer", name, i);
    }
    *n = (int64_t)cnt;
    qsort(*ids, cnt, sizeof **ids, cmp_i64);
    for (size_t i = 1; i < cnt; i++)
        if ((*ids)[i] == (*ids)[i - 1])
            return fail(err, errlen, "truths: %s: id %lld appears twice", name,
                        (long long)(*ids)[i]);
    return 0;
}

int ycj_load_gt(const char *text, size_t len, ycj_set *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    json_t *root = parse(text, len, "truths", err, errlen);
    if (!root)
        return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        fail(err, errlen, "truths: the file is not a JSON object");
        goto done;
    }
    json_t *cats = json_object_get(root, "categories");
    if (load_ids(json_object_get(root, "images"), "images", &s->img_ids, &s->n_img, err, errlen) ||
        load_ids(cats, "categories", &s->cat_ids, &s->n_cat, err, errlen))
        goto done;
    s->cat_names = calloc((size_t)s->n_cat + 1, sizeof *s->cat_names);
    if (!s->cat_names) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < json_array_size(cats); i++) {
        json_t *o = json_array_get(cats, i);
        int64_t id = 0;
        get_id(o, "id", &id, 1);
        json_t *nm = json_object_get(o, "name");
        int64_t k = yle_find_id(s->cat_ids, s->n_cat, id);
        s->cat_names[k] = strdup(json_is_string(nm) ? json_string_value(nm) : "");
        if (!s->cat_names[k]) {
            fail(err, errlen, "out of memory");
            goto done;
        }
    }
    json_t *anns = json_object_get(root, "annotations");
    if (!json_is_array(anns)) {
        fail(err, errlen, "truths: \"annotations\" is missing or not an array");
        goto done;
    }
    size_t n = json_array_size(anns);
    s->gt = calloc(n ? n : 1, sizeof *s->gt);
    s->gt_img = calloc(n ? n : 1, sizeof *s->gt_img);
    if (!s->gt || !s->gt_img) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(anns, i);
        yle_truth *t = &s->gt[i];
        if (!json_is_object(o)) {
            fail(err, errlen, "truths: annotations[%zu] is not an object", i);
            goto done;
        }
        if (get_id(o, "image_id", &s->gt_img[i], 1) || get_id(o, "category_id", &t->category_id, 1)) {
            fail(err, errlen, "truths: annotations[%zu]: image_id or category_id is missing or "
                 "not an integer", i);
            goto done;
        }
        if (get_bbox(o, t->box)) {
            fail(err, errlen, "truths: annotations[%zu].bbox is not 4 numbers", i);
            goto done;
        }
        int r = get_id(o, "id", &t->id, 0);
        if (r < 0) {
            fail(err, errlen, "truths: annotations[%zu].id is not an integer", i);
            goto done;
        }
        if (r > 0)
            t->id = (int64_t)i + 1;
        r = get_num(o, "area", &t->area);
        if (r < 0) {
            fail(err, errlen, "truths: annotations[%zu].area is not a number", i);
            goto done;
        }
        if (r > 0)
            t->area = t->box[2] * t->box[3];
        /* pycocotools: int(iscrowd) and truthiness; a bool or number is accepted */
        json_t *c = json_object_get(o, "iscrowd");
        if (c && !json_is_number(c) && !json_is_boolean(c)) {
            fail(err, errlen, "truths: annotations[%zu].iscrowd is not a number", i);
            goto done;
        }
        t->iscrowd = c && (json_is_true(c) || (json_is_number(c) && json_number_value(c) != 0));
        json_t *df = json_object_get(o, "difficult");
        if (df && !json_is_number(df) && !json_is_boolean(df)) {
            fail(err, errlen, "truths: annotations[%zu].difficult is not a number", i);
            goto done;
        }
        t->difficult = df && (json_is_true(df) || (json_is_number(df) && json_number_value(df) != 0));
        if (yle_find_id(s->img_ids, s->n_img, s->gt_img[i]) < 0) {
            fail(err, errlen, "truths: annotations[%zu].image_id: %lld is not among the images", i,
                 (long long)s->gt_img[i]);
            goto done;
        }
        if (yle_find_id(s->cat_ids, s->n_cat, t->category_id) < 0) {
            fail(err, errlen, "truths: annotations[%zu].category_id: %lld is not among the "
                 "categories", i, (long long)t->category_id);
            goto done;
        }
    }
    s->n_gt = (int64_t)n;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int ycj_load_dt(const char *text, size_t len, ycj_set *s, char *err, size_t errlen) {
    json_t *root = parse(text, len, "results", err, errlen);
    if (!root)
        return -1;
    int rc = -1;
    if (!json_is_array(root)) {
        fail(err, errlen, "results: the file is not a JSON array");
        goto done;
    }
    size_t n = json_array_size(root);
    free(s->dt);
    free(s->dt_img);
    s->dt = calloc(n ? n : 1, sizeof *s->dt);
    s->dt_img = calloc(n ? n : 1, sizeof *s->dt_img);
    s->n_dt = 0;
    if (!s->dt || !s->dt_img) {
        fail(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_array_get(root, i);
        yle_det *d = &s->dt[i];
        if (!json_is_object(o) || get_id(o, "image_id", &s->dt_img[i], 1) ||
            get_id(o, "category_id", &d->category_id, 1)) {
            fail(err, errlen, "results[%zu]: not an object with integer image_id and "
                 "category_id", i);
            goto done;
        }
        if (get_bbox(o, d->box)) {
            fail(err, errlen, "results[%zu].bbox is not 4 numbers", i);
            goto done;
        }
        if (get_num(o, "score", &d->score)) {
            fail(err, errlen, "results[%zu].score is missing or not a number", i);
            goto done;
        }
        if (yle_find_id(s->img_ids, s->n_img, s->dt_img[i]) < 0) {
            fail(err, errlen, "results[%zu].image_id: %lld is not among the truths' images", i,
                 (long long)s->dt_img[i]);
            goto done;
        }
        if (yle_find_id(s->cat_ids, s->n_cat, d->category_id) < 0) {
            fail(err, errlen, "results[%zu].category_id: %lld is not among the truths' "
                 "categories", i, (long long)d->category_id);
            goto done;
        }
    }
    s->n_dt = (int64_t)n;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

void ycj_free(ycj_set *s) {
    free(s->img_ids);
    for (int64_t k = 0; s->cat_names && k < s->n_cat; k++)
        free(s->cat_names[k]);
    free(s->cat_names);
    free(s->cat_ids);
    free(s->gt);
    free(s->gt_img);
    free(s->dt);
    free(s->dt_img);
    memset(s, 0, sizeof *s);
}
