/*
 * eval_request.c: an evaluation's tensors and parameters (eval_request.h) from the wire.
 *
 * Each input is one column: JSON "data" (flat or nested, row-major) or a binary blob of the
 * body. Every column is copied into its own typed array (blobs after an odd-sized one are
 * not aligned, and the core wants structs), then the columns are joined into the core's
 * yle_truth / yle_det rows and checked here, so that a message names the wire's tensor and
 * its index in the request ("dt_score[7]"), not the index inside one image that the core
 * would report.
 */
#include "eval_request.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const yls_eval_input_names[YLS_EVIN_COUNT] = {
#define YLS__EV_NAME(e, name, kind, count, req) name,
    YLS_EVAL_INPUT_MAP(YLS__EV_NAME)
#undef YLS__EV_NAME
};

static const int in_kind[YLS_EVIN_COUNT] = {
#define YLS__EV_KIND(e, name, kind, count, req) kind,
    YLS_EVAL_INPUT_MAP(YLS__EV_KIND)
#undef YLS__EV_KIND
};

static const int in_count[YLS_EVIN_COUNT] = {
#define YLS__EV_COUNT(e, name, kind, count, req) count,
    YLS_EVAL_INPUT_MAP(YLS__EV_COUNT)
#undef YLS__EV_COUNT
};

static const bool in_required[YLS_EVIN_COUNT] = {
#define YLS__EV_REQ(e, name, kind, count, req) req,
    YLS_EVAL_INPUT_MAP(YLS__EV_REQ)
#undef YLS__EV_REQ
};

static const char *const count_names[] = {"truths", "detections", "images", "categories"};

/* --------------------------------------------------------------------------------------- */
/* Columns                                                                                   */

/* One column as received: n rows (4 values each for boxes), as int64 or double. */
typedef struct {
    bool present;
    int64_t n;
    int64_t *i; /* YLS_EV_ID, YLS_EV_FLAG */
    double *d;  /* YLS_EV_BOX, YLS_EV_REAL */
} column;

/* Wire datatypes a kind accepts and their element sizes. */
typedef struct {
    const char *name;
    size_t size;
} wire_type;

static const wire_type id_types[] = {{"INT64", 8}, {"INT32", 4}, {NULL, 0}};
static const wire_type flag_types[] = {{"INT32", 4}, {"INT64", 8}, {"BOOL", 1}, {"UINT8", 1},
                                       {NULL, 0}};
static const wire_type real_types[] = {{"FP64", 8}, {NULL, 0}};

static const wire_type *types_of(int kind)
{
    return kind == YLS_EV_ID ? id_types : kind == YLS_EV_FLAG ? flag_types : real_types;
}

static int find_input(const char *name)
{
    for (int k = 0; k < YLS_EVIN_COUNT; k++)
        if (!strcmp(name, yls_eval_input_names[k]))
            return k;
    return -1;
}

static void *alloc_n(int64_t n, size_t each)
{
    if (n < 0 || (uint64_t)n > SIZE_MAX / 8 / each)
        return NULL;
    return yls_big_alloc((size_t)(n ? n : 1) * each);
}

/* The little-endian value of element j of a blob of type t, as int64 or double. */
static int64_t blob_int(const uint8_t *p, const wire_type *t, int64_t j)
{
    const uint8_t *q = p + (size_t)j * t->size;
    if (t->size == 8) {
        int64_t v;
        memcpy(&v, q, 8);
        return v;
    }
    if (t->size == 4) {
        int32_t v;
        memcpy(&v, q, 4);
        return v;
    }
    return *q;
}

static int oom(yls_fail *f, const char *name)
{
    if (yls_budget_hit())
        return yls_budget_fail(f, name);
    return yls_fail_set(f, 503, "out of memory for input '%s'; retry later", name);
}

/* Flatten nested JSON arrays of numbers into c (kind k), n values expected. */
static int json_values(const json_t *a, int kind, column *c, int64_t want, int64_t *pos,
                       const char *name, int depth, yls_fail *f)
{
    if (json_is_array(a)) {
        if (depth > 2)
            return yls_fail_set(f, 400, "input '%s': \"data\" is nested too deeply", name);
        size_t i;
        const json_t *v;
        json_array_foreach(a, i, v) {
            if (json_values(v, kind, c, want, pos, name, depth + 1, f))
                return -1;
        }
        return 0;
    }
    if (*pos >= want)
        return yls_fail_set(f, 400, "input '%s': \"data\" has more values than its shape (%" PRId64
                            ")", name, want);
    if (kind == YLS_EV_BOX || kind == YLS_EV_REAL) {
        if (!json_is_number(a))
            return yls_fail_set(f, 400, "input '%s': data[%" PRId64 "] is not a number", name, *pos);
        c->d[(*pos)++] = json_number_value(a);
    } else if (json_is_integer(a)) {
        c->i[(*pos)++] = json_integer_value(a);
    } else if (kind == YLS_EV_FLAG && json_is_boolean(a)) {
        c->i[(*pos)++] = json_is_true(a);
    } else {
        return yls_fail_set(f, 400, "input '%s': data[%" PRId64 "] is not an integer", name, *pos);
    }
    return 0;
}

/* One input object: its column. *offset: where its blob starts (binary inputs). */
static int parse_column(const json_t *o, size_t idx, column *cols, const uint8_t *body,
                        size_t len, size_t *offset, bool has_header, yls_fail *f)
{
    if (!json_is_object(o))
        return yls_fail_set(f, 400, "inputs[%zu] must be an object", idx);
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!name)
        return yls_fail_set(f, 400, "inputs[%zu] has no \"name\"", idx);
    int k = find_input(name);
    if (k < 0)
        return yls_fail_set(f, 400,
                            "unknown input '%.64s' (inputs: gt_image_id, gt_category_id, gt_bbox, "
                            "gt_area, gt_iscrowd, gt_difficult, gt_id, dt_image_id, "
                            "dt_category_id, dt_bbox, dt_score, image_ids, category_ids)",
                            name);
    column *c = &cols[k];
    if (c->present)
        return yls_fail_set(f, 400, "input '%s' is given twice", name);
    c->present = true;
    const int kind = in_kind[k];
    const char *dt = json_string_value(json_object_get(o, "datatype"));
    const wire_type *t = NULL;
    for (const wire_type *w = types_of(kind); dt && w->name; w++)
        if (!strcmp(dt, w->name))
            t = w;
    if (!t) {
        const wire_type *w = types_of(kind);
        return yls_fail_set(f, 400, "input '%s': datatype %s%s%s is not accepted (want %s%s%s%s%s)",
                            name, dt ? "'" : "", dt ? dt : "(missing)", dt ? "'" : "", w[0].name,
                            w[1].name ? " or " : "", w[1].name ? w[1].name : "",
                            w[1].name && w[2].name ? ", ..." : "", "");
    }
    const json_t *shape = json_object_get(o, "shape");
    int want_ndim = kind == YLS_EV_BOX ? 2 : 1;
    if (!json_is_array(shape) || json_array_size(shape) != (size_t)want_ndim)
        return yls_fail_set(f, 400, "input '%s': shape must be %s", name,
                            kind == YLS_EV_BOX ? "[N, 4]" : "[N]");
    const json_t *d0 = json_array_get(shape, 0);
    if (!json_is_integer(d0) || json_integer_value(d0) < 0 ||
        json_integer_value(d0) > (int64_t)1 << 40)
        return yls_fail_set(f, 400, "input '%s': shape[0] must be a count from 0 to 2^40", name);
    if (kind == YLS_EV_BOX) {
        const json_t *d1 = json_array_get(shape, 1);
        if (!json_is_integer(d1) || json_integer_value(d1) != 4)
            return yls_fail_set(f, 400, "input '%s': shape must be [N, 4] (x, y, width, height)",
                                name);
    }
    c->n = json_integer_value(d0);
    int64_t values = c->n * (kind == YLS_EV_BOX ? 4 : 1);
    const json_t *params = json_object_get(o, "parameters");
    const json_t *bsize = params ? json_object_get(params, "binary_data_size") : NULL;
    const json_t *data = json_object_get(o, "data");
    if (bsize && data)
        return yls_fail_set(f, 400, "input '%s' has both \"data\" and binary_data_size", name);
    if (!bsize && !data)
        return yls_fail_set(f, 400, "input '%s' has neither \"data\" nor binary_data_size", name);
    if (kind == YLS_EV_BOX || kind == YLS_EV_REAL)
        c->d = alloc_n(values, sizeof(double));
    else
        c->i = alloc_n(values, sizeof(int64_t));
    if (!c->d && !c->i) {
        /* a shape within 2^40 rows still may not fit: over the budget, or out of memory */
        return oom(f, name);
    }
    if (data) {
        int64_t pos = 0;
        if (json_values(data, kind, c, values, &pos, name, 0, f))
            return -1;
        if (pos != values)
            return yls_fail_set(f, 400, "input '%s': \"data\" has %" PRId64 " values, its shape %"
                                PRId64 "", name, pos, values);
        return 0;
    }
    if (!has_header)
        return yls_fail_set(f, 400, "input '%s' has binary_data_size but the request has no "
                            "Inference-Header-Content-Length header", name);
    if (!json_is_integer(bsize) || json_integer_value(bsize) < 0 ||
        (uint64_t)json_integer_value(bsize) != (uint64_t)values * t->size)
        return yls_fail_set(f, 400, "input '%s': binary_data_size must be %" PRIu64
                            " (%" PRId64 " values of %s)", name, (uint64_t)values * t->size,
                            values, t->name);
    size_t n = (size_t)json_integer_value(bsize);
    if (n > len - *offset)
        return yls_fail_set(f, 400, "truncated binary body: input '%s' needs %zu bytes at offset "
                            "%zu but the body ends at %zu", name, n, *offset, len);
    const uint8_t *p = body + *offset;
    *offset += n;
    if (c->d) {
        memcpy(c->d, p, n); /* FP64 only */
    } else {
        for (int64_t j = 0; j < values; j++)
            c->i[j] = blob_int(p, t, j);
    }
    return 0;
}

static void columns_free(column *cols)
{
    for (int k = 0; k < YLS_EVIN_COUNT; k++) {
        yls_big_free(cols[k].i);
        yls_big_free(cols[k].d);
    }
}

/* --------------------------------------------------------------------------------------- */
/* Checks, naming the wire's tensor and index                                                */

static int check_increasing(const column *c, const char *name, yls_fail *f)
{
    for (int64_t j = 1; j < c->n; j++)
        if (c->i[j] <= c->i[j - 1])
            return yls_fail_set(f, 400,
                                "%s[%" PRId64 "]: %" PRId64 " follows %" PRId64 "; the ids must be "
                                "strictly increasing (sorted, each once)",
                                name, j, c->i[j], c->i[j - 1]);
    return 0;
}

static int check_box(const double *b, const char *name, int64_t j, yls_fail *f)
{
    static const char *const part[4] = {"x", "y", "width", "height"};
    for (int c = 0; c < 4; c++)
        if (!isfinite(b[c]))
            return yls_fail_set(f, 400, "%s[%" PRId64 "][%d] (%s) is %s", name, j, c, part[c],
                                isnan(b[c]) ? "NaN" : "infinite");
    for (int c = 2; c < 4; c++)
        if (b[c] < 0)
            return yls_fail_set(f, 400, "%s[%" PRId64 "][%d]: %s %.17g is negative", name, j, c,
                                part[c], b[c]);
    return 0;
}

static int check_member(const int64_t *ids, int64_t n, int64_t v, const char *name, int64_t j,
                        const char *list, yls_fail *f)
{
    if (yle_find_id(ids, n, v) >= 0)
        return 0;
    return yls_fail_set(f, 400, "%s[%" PRId64 "]: %" PRId64 " is not in %s%s", name, j, v, list,
                        !strcmp(list, "image_ids") ? " (every truth's and detection's image "
                                                     "needs an entry there)"
                                                   : " (the dataset's categories)");
}

#define NAME(k) yls_eval_input_names[YLS_EVIN_##k]

static int build_truths(yls_eval_sets *s, int convention, const column *cols, yls_fail *f)
{
    const column *box = &cols[YLS_EVIN_GT_BBOX], *area = &cols[YLS_EVIN_GT_AREA];
    const column *img = &cols[YLS_EVIN_GT_IMAGE_ID], *cat = &cols[YLS_EVIN_GT_CATEGORY_ID];
    const column *crowd = &cols[YLS_EVIN_GT_ISCROWD], *diff = &cols[YLS_EVIN_GT_DIFFICULT];
    const column *id = &cols[YLS_EVIN_GT_ID];
    for (int64_t j = 0; j < s->n_gt; j++) {
        const double *b = box->d + 4 * j;
        if (check_box(b, NAME(GT_BBOX), j, f))
            return -1;
        yle_truth *t = &s->gt[j];
        memcpy(t->box, b, sizeof t->box);
        /* pycocotools reads the annotation's area; one without gets w * h (docs/metrics.md) */
        t->area = area->present ? area->d[j] : b[2] * b[3];
        if (!isfinite(t->area))
            return yls_fail_set(f, 400, "%s[%" PRId64 "] is %s", NAME(GT_AREA), j,
                                isnan(t->area) ? "NaN" : "infinite");
        if (t->area < 0)
            return yls_fail_set(f, 400, "%s[%" PRId64 "]: %.17g is negative", NAME(GT_AREA), j,
                                t->area);
        if (check_member(s->image_ids, s->n_img, img->i[j], NAME(GT_IMAGE_ID), j, "image_ids", f) ||
            check_member(s->category_ids, s->n_cat, cat->i[j], NAME(GT_CATEGORY_ID), j,
                         "category_ids", f))
            return -1;
        s->gt_image[j] = img->i[j];
        t->category_id = cat->i[j];
        t->iscrowd = crowd->present && crowd->i[j] != 0;
        t->difficult = diff->present && diff->i[j] != 0;
        /* loadRes numbers results from 1; truths without ids are numbered the same way */
        t->id = id->present ? id->i[j] : j + 1;
        if (convention != YLE_COCO) {
            t->box[2] += t->box[0];
            t->box[3] += t->box[1];
        }
    }
    return 0;
}

static int build_dets(yls_eval_sets *s, int convention, const column *cols, yls_fail *f)
{
    const column *box = &cols[YLS_EVIN_DT_BBOX], *score = &cols[YLS_EVIN_DT_SCORE];
    const column *img = &cols[YLS_EVIN_DT_IMAGE_ID], *cat = &cols[YLS_EVIN_DT_CATEGORY_ID];
    for (int64_t j = 0; j < s->n_dt; j++) {
        const double *b = box->d + 4 * j;
        if (check_box(b, NAME(DT_BBOX), j, f))
            return -1;
        double sc = score->d[j];
        if (!(sc >= 0 && sc <= 1))
            return yls_fail_set(f, 400, "%s[%" PRId64 "]: %.17g is outside [0, 1]", NAME(DT_SCORE),
                                j, sc);
        if (check_member(s->image_ids, s->n_img, img->i[j], NAME(DT_IMAGE_ID), j, "image_ids", f) ||
            check_member(s->category_ids, s->n_cat, cat->i[j], NAME(DT_CATEGORY_ID), j,
                         "category_ids", f))
            return -1;
        yle_det *d = &s->dt[j];
        memcpy(d->box, b, sizeof d->box);
        d->score = sc;
        d->category_id = cat->i[j];
        s->dt_image[j] = img->i[j];
        if (convention != YLE_COCO) {
            d->box[2] += d->box[0];
            d->box[3] += d->box[1];
        }
    }
    return 0;
}

int yls_eval_sets_parse(yls_eval_sets *s, int convention, const json_t *inputs,
                        const uint8_t *body, size_t len, size_t json_len, bool has_header,
                        yls_fail *f)
{
    memset(s, 0, sizeof *s);
    if (!json_is_array(inputs))
        return yls_fail_set(f, 400, "the request needs an \"inputs\" array");
    column cols[YLS_EVIN_COUNT];
    memset(cols, 0, sizeof cols);
    int rc = -1;
    size_t offset = json_len, i;
    const json_t *o;
    json_array_foreach(inputs, i, o) {
        if (parse_column(o, i, cols, body, len, &offset, has_header, f))
            goto out;
    }
    if (offset != len) {
        yls_fail_set(f, 400, "the body has %zu bytes after the JSON header and the binary inputs "
                     "(binary inputs end at %zu, body %zu)", len - offset, offset, len);
        goto out;
    }
    /* every tensor of one count has the same first dimension: the first given sets it */
    int64_t count[4] = {-1, -1, -1, -1};
    int first[4] = {-1, -1, -1, -1};
    for (int k = 0; k < YLS_EVIN_COUNT; k++) {
        if (!cols[k].present) {
            if (in_required[k]) {
                yls_fail_set(f, 400, "input '%s' is missing (an evaluation needs gt_image_id, "
                             "gt_category_id, gt_bbox, dt_image_id, dt_category_id, dt_bbox, "
                             "dt_score, image_ids and category_ids)", yls_eval_input_names[k]);
                goto out;
            }
            continue;
        }
        int c = in_count[k];
        if (first[c] < 0) {
            first[c] = k;
            count[c] = cols[k].n;
        } else if (cols[k].n != count[c]) {
            yls_fail_set(f, 400, "input '%s' has %" PRId64 " rows but '%s' has %" PRId64
                         " (one row per %s)", yls_eval_input_names[k], cols[k].n,
                         yls_eval_input_names[first[c]], count[c], count_names[c]);
            goto out;
        }
    }
    s->n_gt = count[YLS_EV_NGT];
    s->n_dt = count[YLS_EV_NDT];
    if (check_increasing(&cols[YLS_EVIN_IMAGE_IDS], NAME(IMAGE_IDS), f) ||
        check_increasing(&cols[YLS_EVIN_CATEGORY_IDS], NAME(CATEGORY_IDS), f))
        goto out;
    /* the id lists are taken over as they are */
    s->n_img = cols[YLS_EVIN_IMAGE_IDS].n;
    s->image_ids = cols[YLS_EVIN_IMAGE_IDS].i;
    cols[YLS_EVIN_IMAGE_IDS].i = NULL;
    s->n_cat = cols[YLS_EVIN_CATEGORY_IDS].n;
    s->category_ids = cols[YLS_EVIN_CATEGORY_IDS].i;
    cols[YLS_EVIN_CATEGORY_IDS].i = NULL;
    s->gt = alloc_n(s->n_gt, sizeof *s->gt);
    s->gt_image = alloc_n(s->n_gt, sizeof *s->gt_image);
    s->dt = alloc_n(s->n_dt, sizeof *s->dt);
    s->dt_image = alloc_n(s->n_dt, sizeof *s->dt_image);
    if (!s->gt || !s->gt_image || !s->dt || !s->dt_image) {
        oom(f, "the truths and detections");
        goto out;
    }
    if (build_truths(s, convention, cols, f) || build_dets(s, convention, cols, f))
        goto out;
    rc = 0;
out:
    columns_free(cols);
    return rc;
}

void yls_eval_sets_free(yls_eval_sets *s)
{
    yls_big_free(s->gt);
    yls_big_free(s->gt_image);
    yls_big_free(s->dt);
    yls_big_free(s->dt_image);
    yls_big_free(s->image_ids);
    yls_big_free(s->category_ids);
    memset(s, 0, sizeof *s);
}

/* --------------------------------------------------------------------------------------- */
/* Parameters                                                                                */

/* The value itself, or the JSON text a string holds (decref *owned after). */
static const json_t *param_value(const json_t *v, json_t **owned)
{
    *owned = NULL;
    if (!json_is_string(v))
        return v;
    *owned = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
    return *owned;
}

static int numbers(const json_t *a, const char *key, double *out, int max, yls_fail *f)
{
    if (!json_is_array(a) || json_array_size(a) < 1 || json_array_size(a) > (size_t)max)
        return yls_fail_set(f, 400, "parameter %s must be a list of 1 to %d numbers", key, max);
    size_t i;
    const json_t *x;
    json_array_foreach(a, i, x) {
        if (!json_is_number(x))
            return yls_fail_set(f, 400, "parameter %s[%zu] is not a number", key, i);
        out[i] = json_number_value(x);
    }
    return (int)json_array_size(a);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A list of integer ids, sorted and unique (np.unique). */
static int id_list(const json_t *a, const char *key, int64_t **out, int64_t *n, yls_fail *f)
{
    if (!json_is_array(a))
        return yls_fail_set(f, 400, "parameter %s must be a list of integer ids", key);
    size_t m = json_array_size(a);
    int64_t *v = malloc((m ? m : 1) * sizeof *v);
    if (!v)
        return yls_fail_set(f, 503, "out of memory for parameter %s; retry later", key);
    size_t i;
    const json_t *x;
    json_array_foreach(a, i, x) {
        if (!json_is_integer(x)) {
            free(v);
            return yls_fail_set(f, 400, "parameter %s[%zu] is not an integer", key, i);
        }
        v[i] = json_integer_value(x);
    }
    qsort(v, m, sizeof *v, cmp_i64);
    size_t u = 0;
    for (i = 0; i < m; i++)
        if (u == 0 || v[i] != v[u - 1])
            v[u++] = v[i];
    free(*out);
    *out = v;
    *n = (int64_t)u;
    return 0;
}

static int param_body(yle_params *p, const char *key, const json_t *v, int64_t **img_ids,
                      int64_t *n_img, int64_t **cat_ids, int64_t *n_cat, yls_fail *f)
{
    if (!strcmp(key, "iouThrs")) {
        int n = numbers(v, key, p->iou_thrs, YLE_MAX_T, f);
        return n < 0 ? -1 : (p->n_iou = n, 0);
    }
    if (!strcmp(key, "recThrs")) {
        int n = numbers(v, key, p->rec_thrs, YLE_MAX_R, f);
        return n < 0 ? -1 : (p->n_rec = n, 0);
    }
    if (!strcmp(key, "maxDets")) {
        double d[YLE_MAX_M];
        int n = numbers(v, key, d, YLE_MAX_M, f);
        if (n < 0)
            return -1;
        for (int m = 0; m < n; m++) {
            if (d[m] != floor(d[m]) || d[m] < 0 || d[m] > 1e15)
                return yls_fail_set(f, 400, "parameter maxDets[%d] is not a count", m);
            p->max_dets[m] = (int64_t)d[m];
        }
        qsort(p->max_dets, (size_t)n, sizeof p->max_dets[0], cmp_i64); /* sorted(maxDets) */
        p->n_max_dets = n;
        return 0;
    }
    if (!strcmp(key, "areaRng")) {
        if (!json_is_array(v) || json_array_size(v) < 1 || json_array_size(v) > YLE_MAX_A)
            return yls_fail_set(f, 400, "parameter areaRng must be a list of 1 to %d [lo, hi] pairs",
                                YLE_MAX_A);
        size_t a;
        const json_t *pair;
        json_array_foreach(v, a, pair) {
            double d[2];
            char what[32];
            snprintf(what, sizeof what, "areaRng[%zu]", a);
            if (json_array_size(pair) != 2)
                return yls_fail_set(f, 400, "parameter %s must be a [lo, hi] pair", what);
            if (numbers(pair, what, d, 2, f) < 0)
                return -1;
            p->area_rng[a][0] = d[0];
            p->area_rng[a][1] = d[1];
        }
        for (size_t b = json_array_size(v); b < (size_t)p->n_area && b < YLE_MAX_A; b++)
            p->area_lbl[b][0] = '\0';
        p->n_area = (int)json_array_size(v);
        return 0;
    }
    if (!strcmp(key, "areaRngLbl")) {
        if (!json_is_array(v) || json_array_size(v) > YLE_MAX_A)
            return yls_fail_set(f, 400, "parameter areaRngLbl must be a list of at most %d labels",
                                YLE_MAX_A);
        for (int a = 0; a < YLE_MAX_A; a++) {
            const json_t *s = json_array_get(v, (size_t)a);
            if (s && (!json_is_string(s) || json_string_length(s) >= YLE_LABEL))
                return yls_fail_set(f, 400, "parameter areaRngLbl[%d] must be a string of at most "
                                    "%d bytes", a, YLE_LABEL - 1);
            snprintf(p->area_lbl[a], YLE_LABEL, "%s", s ? json_string_value(s) : "");
        }
        return 0;
    }
    if (!strcmp(key, "useCats")) {
        if (json_is_boolean(v))
            p->use_cats = json_is_true(v);
        else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
            p->use_cats = (int)json_integer_value(v);
        else
            return yls_fail_set(f, 400, "parameter useCats must be 0 or 1");
        return 0;
    }
    if (!strcmp(key, "imgIds"))
        return id_list(v, key, img_ids, n_img, f);
    return id_list(v, key, cat_ids, n_cat, f);
}

int yls_eval_param(yle_params *p, const char *key, const json_t *v, int64_t **img_ids,
                   int64_t *n_img, int64_t **cat_ids, int64_t *n_cat, yls_fail *f)
{
    static const char *const known[] = {"iouThrs", "recThrs", "maxDets", "areaRng",
                                        "areaRngLbl", "useCats", "imgIds", "catIds"};
    bool found = false;
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        found |= !strcmp(key, known[k]);
    if (!found)
        return 0;
    json_t *owned;
    const json_t *val = param_value(v, &owned);
    if (!val) {
        return yls_fail_set(f, 400, "parameter %s: its string is not JSON text (give a list, or "
                            "its JSON as a string)", key);
    }
    int rc = param_body(p, key, val, img_ids, n_img, cat_ids, n_cat, f);
    json_decref(owned);
    return rc ? -1 : 1;
}
