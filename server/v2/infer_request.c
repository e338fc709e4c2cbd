/*
 * infer_request.c: an Open Inference Protocol v2 request body to the core's tensors.
 *
 * The body is a JSON header optionally followed by raw little-endian blobs (Triton's binary
 * tensor extension). jansson parses the header; each input is then either converted from its
 * JSON "data" (flat or nested, row-major) into a buffer of its declared datatype, or pointed
 * at its blob in the body (copied only when the blob is not naturally aligned). Everything
 * the core checks (shapes across layers and batch, box rows, non-finite binary values) is
 * left to yl_problem_init / yl_image, whose messages already name tensor, image and row;
 * this file checks what only the wire knows, and names the input in every message.
 */
#include "infer.h"
#include "shm.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* --------------------------------------------------------------------------------------- */
/* Names                                                                                     */

/* The inputs a request sends. IN_BOX, IN_ROWS, IN_INDEX: the compact form of output_l
 * (yololoss_compact). Each but image_ids has a slot in parse_inputs' by_slot (slot_index):
 * IN_BOXES one, the others one per layer, in this order. */
enum { IN_OUTPUT, IN_BOXES, IN_Y_TRUE, IN_BOX, IN_ROWS, IN_INDEX, IN_IMAGE_IDS };

/* The slot of input kind k for layer l of a model of L layers. */
static int slot_index(int k, int L, int l)
{
    return k == IN_OUTPUT ? l : k == IN_BOXES ? L : L + 1 + (k - IN_Y_TRUE) * L + l;
}

#define IMAGE_IDS "image_ids"

/* "prefix<digit>_<part>" with the digit below L: the digit, else -1. */
static int layer_part(const char *name, const char *prefix, const char *part, int num_layers)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || name[n] < '0' || name[n] > '9' || name[n + 1] != '_' ||
        strcmp(name + n + 2, part))
        return -1;
    int l = name[n] - '0';
    return l < num_layers ? l : -1;
}

/* "prefix<digit>" with the digit below L: the digit, else -1. */
static int layer_suffix(const char *name, const char *prefix, int num_layers)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || name[n] < '0' || name[n] > '9' || name[n + 1])
        return -1;
    int l = name[n] - '0';
    return l < num_layers ? l : -1;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, d ? "," : "", shape[d]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

/* --------------------------------------------------------------------------------------- */
/* JSON errors                                                                               */

/* Does text[from..to) contain needle? */
static bool window_has(const uint8_t *text, size_t len, size_t from, size_t to,
                       const char *needle)
{
    size_t n = strlen(needle);
    if (to > len)
        to = len;
    for (size_t i = from; i + n <= to; i++)
        if (memcmp(text + i, needle, n) == 0)
            return true;
    return false;
}

/* jansson reports NaN / Infinity (which Python's json and tritonclient may write) as an
 * "invalid token"; say what it is. */
static int json_error_fail(const json_error_t *e, const uint8_t *text, size_t len,
                           yls_fail *f)
{
    size_t pos = e->position > 0 ? (size_t)e->position : 0;
    size_t from = pos > 16 ? pos - 16 : 0, to = pos + 16;
    if (strstr(e->text, "invalid token") &&
        (window_has(text, len, from, to, "NaN") || window_has(text, len, from, to, "nan") ||
         window_has(text, len, from, to, "Infinity") || window_has(text, len, from, to, "inf")))
        return yls_fail_set(f, 400,
                            "invalid JSON at line %d, column %d: NaN and Infinity are not "
                            "JSON numbers; every value must be finite",
                            e->line, e->column);
    if (strstr(e->text, "real number overflow"))
        return yls_fail_set(f, 400,
                            "invalid JSON at line %d, column %d: %s (the number is not "
                            "finite as a double; every value must be finite)",
                            e->line, e->column, e->text);
    if (strstr(e->text, "maximum parsing depth"))
        return yls_fail_set(f, 400,
                            "invalid JSON at line %d, column %d: nested too deeply (%s)",
                            e->line, e->column, e->text);
    return yls_fail_set(f, 400, "invalid JSON at line %d, column %d: %s", e->line, e->column,
                        e->text);
}

/* --------------------------------------------------------------------------------------- */
/* Request parameters                                                                        */

/* A number, or a string holding one (parameter values may be either). */
static bool param_number(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        double d = strtod(s, &end);
        if (end != s && *end == '\0' && errno == 0) {
            *out = d;
            return true;
        }
    }
    return false;
}

static bool param_bool(const json_t *v, bool *out)
{
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!strcmp(s, "true") || !strcmp(s, "false")) {
            *out = s[0] == 't';
            return true;
        }
    }
    return false;
}

/* Image ids                                                                                 */

#define ID_RANGE "an integer from 0 to 9223372036854775807"

/* "1,2,3" (spaces around the numbers allowed) into in->image_ids. */
static int parse_image_ids_param(yls_infer_input *in, const char *s, yls_fail *f)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    in->image_ids = malloc(n * sizeof *in->image_ids);
    if (!in->image_ids)
        return yls_fail_set(f, 500, "out of memory for parameter image_ids");
    in->image_ids_param = true;
    const char *p = s;
    for (size_t i = 0; i < n; i++) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long long v = *p >= '0' && *p <= '9' ? strtoll(p, &end, 10) : (end = (char *)p, -1);
        while (*end == ' ')
            end++;
        if (errno || v < 0 || end == p || (*end != ',' && *end != '\0'))
            return yls_fail_set(f, 400, "parameter image_ids: element %zu is not " ID_RANGE, i);
        in->image_ids[i] = v;
        p = *end ? end + 1 : end;
    }
    in->n_image_ids = (int64_t)n;
    return 0;
}

typedef struct {
    int64_t id, index;
} id_at;

static int cmp_id_at(const void *a, const void *b)
{
    const id_at *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Two images with one id would be one row of the per-image table: say which. */
static int image_ids_unique(const yls_infer_input *in, yls_fail *f)
{
    int64_t n = in->n_image_ids;
    id_at *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v)
        return yls_fail_set(f, 500, "out of memory checking image_ids");
    for (int64_t i = 0; i < n; i++)
        v[i] = (id_at){in->image_ids[i], i};
    qsort(v, (size_t)n, sizeof *v, cmp_id_at);
    int rc = 0;
    for (int64_t i = 1; i < n && rc == 0; i++)
        if (v[i].id == v[i - 1].id)
            rc = yls_fail_set(f, 400,
                              "%s image_ids: id %" PRId64 " is given twice (images %" PRId64
                              " and %" PRId64 "); each image of a batch needs its own id",
                              in->image_ids_param ? "parameter" : "input", v[i].id,
                              v[i - 1].index, v[i].index);
    free(v);
    return rc;
}

int yls_image_ids_check(const yls_infer_input *in, int64_t batch, yls_fail *f)
{
    if (!in->image_ids || in->n_image_ids == batch)
        return 0;
    return yls_fail_set(f, 400, "%s image_ids has %" PRId64 " ids but the batch has %" PRId64
                        " images (one id per image)",
                        in->image_ids_param ? "parameter" : "input", in->n_image_ids, batch);
}

static int parse_request_parameters(yls_infer_input *in, const json_t *params,
                                    bool *binary_output, yls_fail *f)
{
    if (!params || json_is_null(params))
        return 0;
    if (!json_is_object(params))
        return yls_fail_set(f, 400, "\"parameters\" must be an object, not %s",
                            json_type_name(params));
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)params, key, v) {
        if (!strcmp(key, "binary_data_output")) {
            if (!param_bool(v, binary_output))
                return yls_fail_set(f, 400, "parameter binary_data_output must be a boolean");
        } else if (!strcmp(key, "ignore_thresh")) {
            double t;
            if (!param_number(v, &t) || !isfinite(t))
                return yls_fail_set(f, 400, "parameter ignore_thresh must be a finite number");
            in->cfg.ignore_thresh = t;
        } else if (!strcmp(key, "truth_thresh") && in->cfg.definition == YL_DEF_DARKNET) {
            double t;
            if (!param_number(v, &t) || !isfinite(t) || t < 0)
                return yls_fail_set(f, 400, "parameter truth_thresh must be a finite number >= 0");
            in->cfg.darknet.truth_thresh = t;
        } else if (!strcmp(key, "anchors")) {
            if (!json_is_string(v))
                return yls_fail_set(f, 400,
                                    "parameter anchors must be a string \"w,h,w,h,...\" of 12 "
                                    "or 18 numbers, not %s",
                                    json_type_name(v));
            if (yls_anchors_parse(&in->cfg, json_string_value(v), f))
                return -1;
        } else if (!strcmp(key, "run")) {
            if (!json_is_string(v) || json_string_length(v) >= sizeof in->run)
                return yls_fail_set(f, 400, "parameter run must be a string of at most %zu bytes",
                                    sizeof in->run - 1);
            snprintf(in->run, sizeof in->run, "%s", json_string_value(v));
        } else if (!strcmp(key, "step")) {
            double s;
            if (json_is_integer(v)) {
                in->step = json_integer_value(v);
            } else if (param_number(v, &s) && s == floor(s) && fabs(s) < 9e15) {
                in->step = (int64_t)s;
            } else {
                return yls_fail_set(f, 400, "parameter step must be an integer");
            }
            in->has_step = true;
        } else if (!strcmp(key, IMAGE_IDS)) {
            if (!json_is_string(v))
                return yls_fail_set(f, 400,
                                    "parameter image_ids must be a string of comma-separated "
                                    "integers \"1,2,3\" (one per image), not %s",
                                    json_type_name(v));
            if (parse_image_ids_param(in, json_string_value(v), f))
                return -1;
        } else if (!strcmp(key, "eval")) {
            if (!param_bool(v, &in->eval))
                return yls_fail_set(f, 400, "parameter eval must be a boolean");
        } else if (!strcmp(key, "image_offset")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > (INT64_MAX >> 2))
                return yls_fail_set(f, 400, "parameter image_offset must be an integer >= 0");
            in->image_offset = json_integer_value(v);
            in->has_image_offset = true;
        } else if (!strcmp(key, "grad_datatype")) {
            const char *g = json_is_string(v) ? json_string_value(v) : "";
            if (strcmp(g, "FP32") && strcmp(g, "FP64"))
                return yls_fail_set(f, 400, "parameter grad_datatype must be \"FP32\" or \"FP64\"");
            in->grad_dtype = g[2] == '6' ? YL_F64 : YL_F32;
        } else if (!strcmp(key, "sequence_id") || !strcmp(key, "sequence_start") ||
                   !strcmp(key, "sequence_end") || !strcmp(key, "priority") ||
                   !strcmp(key, "timeout")) {
            /* Triton's scheduling parameters (tritonclient sends them when set): a loss has
             * no sequences or priorities, and every request runs to completion */
            if (!json_is_number(v) && !json_is_boolean(v) && !json_is_string(v))
                return yls_fail_set(f, 400, "parameter %s must be a number", key);
        } else {
            return yls_fail_set(f, 400,
                                "unknown request parameter '%s' (known: ignore_thresh, %sanchors, "
                                "run, step, image_ids, eval, image_offset, binary_data_output, "
                                "grad_datatype)",
                                key, in->cfg.definition == YL_DEF_DARKNET ? "truth_thresh, " : "");
        }
    }
    return 0;
}

/* --------------------------------------------------------------------------------------- */
/* Requested outputs                                                                         */

/* shared_memory_region / _offset / _byte_size of an input or output: 1 when given (place
 * filled, the region held by in), 0 when not, -1 with f set. */
static int shm_params(yls_infer_input *in, const char *what, const json_t *region,
                      const json_t *offset, const json_t *size, yls_shm_place *place,
                      yls_fail *f)
{
    if (!region && !offset && !size)
        return 0;
    if (!json_is_string(region) || !json_is_integer(size))
        return yls_fail_set(f, 400,
                            "%s: shared memory needs both shared_memory_region (a string) and "
                            "shared_memory_byte_size (an integer)",
                            what);
    if (offset && (!json_is_integer(offset) || json_integer_value(offset) < 0))
        return yls_fail_set(f, 400, "%s: shared_memory_offset must be a non-negative integer",
                            what);
    if (json_integer_value(size) < 0)
        return yls_fail_set(f, 400, "%s: shared_memory_byte_size must be non-negative", what);
    const char *name = json_string_value(region);
    yls_shm_region *r = yls_shm_acquire(in->shm, name, what, f);
    if (!r)
        return -1;
    in->held[in->n_held++] = r;
    place->region = r;
    place->offset = offset ? (uint64_t)json_integer_value(offset) : 0;
    place->size = (uint64_t)json_integer_value(size);
    if (place->offset > r->byte_size || place->size > r->byte_size - place->offset)
        return yls_fail_set(f, 400,
                            "%s: shared_memory_offset %" PRIu64 " + shared_memory_byte_size %" PRIu64
                            " is beyond the end of region '%s' (%" PRIu64 " bytes)",
                            what, place->offset, place->size, name, r->byte_size);
    return 1;
}

static int parse_outputs(yls_infer_input *in, const yls_model *m, const json_t *outputs,
                         bool binary_default, yls_fail *f)
{
    int L = in->num_layers;
    if (!outputs || json_is_null(outputs) ||
        (json_is_array(outputs) && json_array_size(outputs) == 0))
        return 0; /* every output: finish_outputs, once the form (dense, compact) is known */
    if (!json_is_array(outputs))
        return yls_fail_set(f, 400, "\"outputs\" must be an array, not %s",
                            json_type_name(outputs));
    size_t i;
    const json_t *o;
    json_array_foreach(outputs, i, o) {
        if (!json_is_object(o))
            return yls_fail_set(f, 400, "outputs[%zu] must be an object, not %s", i,
                                json_type_name(o));
        const json_t *name = NULL, *params = NULL;
        const char *key;
        const json_t *v;
        json_object_foreach((json_t *)o, key, v) {
            if (!strcmp(key, "name"))
                name = v;
            else if (!strcmp(key, "parameters"))
                params = v;
            else
                return yls_fail_set(f, 400, "outputs[%zu]: unknown key '%s' (name, parameters)",
                                    i, key);
        }
        if (!json_is_string(name))
            return yls_fail_set(f, 400, "outputs[%zu] needs a \"name\" string", i);
        const char *nm = json_string_value(name);
        yls_output_kind kind;
        int layer;
        if (yls_output_parse(nm, L, m->cfg.definition, &kind, &layer)) {
            char list[256];
            yls_output_list(L, m->cfg.definition, list, sizeof list);
            return yls_fail_set(f, 400, "unknown output '%s' (model '%s' has %s)", nm, m->name,
                                list);
        }
        for (int j = 0; j < in->n_out; j++)
            if (in->out[j].kind == kind && in->out[j].layer == layer)
                return yls_fail_set(f, 400, "output '%s' is requested twice", nm);
        bool binary = binary_default;
        yls_shm_place shm = {0};
        if (params && !json_is_null(params)) {
            if (!json_is_object(params))
                return yls_fail_set(f, 400, "output '%s': \"parameters\" must be an object", nm);
            const json_t *region = NULL, *offset = NULL, *size = NULL;
            json_object_foreach((json_t *)params, key, v) {
                if (!strcmp(key, "binary_data")) {
                    if (!param_bool(v, &binary))
                        return yls_fail_set(f, 400,
                                            "output '%s': parameter binary_data must be a boolean",
                                            nm);
                } else if (!strcmp(key, "shared_memory_region")) {
                    region = v;
                } else if (!strcmp(key, "shared_memory_offset")) {
                    offset = v;
                } else if (!strcmp(key, "shared_memory_byte_size")) {
                    size = v;
                } else {
                    return yls_fail_set(f, 400,
                                        "output '%s': unsupported parameter '%s' (binary_data, "
                                        "shared_memory_region, shared_memory_offset, "
                                        "shared_memory_byte_size)",
                                        nm, key);
                }
            }
            char what[48];
            snprintf(what, sizeof what, "output '%s'", nm);
            if (shm_params(in, what, region, offset, size, &shm, f) < 0)
                return -1;
        }
        yls_output_req *r = &in->out[in->n_out++];
        r->kind = kind;
        r->layer = layer;
        r->binary = binary;
        r->shm = shm;
    }
    return 0;
}

/* After the inputs: the default outputs (none named), and which gradients to compute. */
static int finish_outputs(yls_infer_input *in, int def, bool all, bool binary_default,
                          yls_fail *f)
{
    int L = in->num_layers, form = in->compact ? YLS_FORM_COMPACT : YLS_FORM_DENSE;
    if (all)
        for (int k = 0; k < YLS_OUT_COUNT; k++)
            if ((yls_outputs[k].dflt & form) && yls_output_of((yls_output_kind)k, def))
                for (int l = 0; l < (yls_outputs[k].layered ? L : 1); l++)
                    in->out[in->n_out++] = (yls_output_req){
                        .kind = (yls_output_kind)k, .layer = l, .binary = binary_default};
    for (int i = 0; i < in->n_out; i++) {
        const yls_output_req *o = &in->out[i];
        yls_grad_kind g = yls_outputs[o->kind].grad;
        if (g == YLS_GRAD_NONE)
            continue;
        char name[YLS_OUTPUT_NAME_MAX];
        yls_output_name(o->kind, o->layer, name, sizeof name);
        if (!(yls_outputs[o->kind].asked & form))
            return yls_fail_set(f, 400,
                                "output '%s' belongs to compact requests (inputs output_%d_box, "
                                "output_%d_rows, output_%d_index); a dense request has grad_%d",
                                name, o->layer, o->layer, o->layer, o->layer);
        in->want_grad[g][o->layer] = true;
        if (g == YLS_GRAD_DENSE && in->compact) /* scattered from the compact gradient */
            in->want_grad[YLS_GRAD_OBJ][o->layer] = in->want_grad[YLS_GRAD_ROWS][o->layer] = true;
    }
    return 0;
}

/* --------------------------------------------------------------------------------------- */
/* Inputs                                                                                    */

typedef struct {
    const char *name;
    int kind;  /* IN_OUTPUT, IN_BOXES, IN_Y_TRUE */
    int layer;
    int dtype;
    size_t esize;
    int ndim;
    int64_t shape[YL_MAX_DIMS];
    int64_t count;        /* elements */
    const json_t *data;   /* JSON data, or */
    int64_t binary_size;  /* -1 when not binary */
    bool ids_unsigned;    /* image_ids given as UINT64 */
    size_t offset;        /* of the blob in the body */
    bool in_shm;          /* in a shared-memory region: */
    yls_shm_place shm;
} input_desc;

#define YL_INT64 (-2) /* output_l_index's datatype, known to the wire only */

static int parse_shape(input_desc *d, const json_t *shape, yls_fail *f)
{
    if (!json_is_array(shape))
        return yls_fail_set(f, 400, "input '%s' needs a \"shape\" array of dimensions", d->name);
    size_t n = json_array_size(shape);
    if (n == 0 || n > YL_MAX_DIMS)
        return yls_fail_set(f, 400, "input '%s': shape has %zu dimensions (1 to %d allowed)",
                            d->name, n, YL_MAX_DIMS);
    d->ndim = (int)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(shape, i);
        if (!json_is_integer(v))
            return yls_fail_set(f, 400, "input '%s': shape[%zu] must be an integer, not %s",
                                d->name, i, json_type_name(v));
        d->shape[i] = json_integer_value(v);
    }
    char s[160];
    format_shape(d->shape, d->ndim, s, sizeof s);
    int64_t count = 1;
    for (int i = 0; i < d->ndim; i++) {
        if (i == 0 && d->shape[0] == 0 && (d->kind == IN_ROWS || d->kind == IN_INDEX))
            continue; /* a compact layer may send no rows */
        if (d->shape[i] <= 0)
            return yls_fail_set(f, 400, "input '%s': shape %s has a %s dimension", d->name, s,
                                d->shape[i] == 0 ? "zero" : "negative");
    }
    for (int i = 0; i < d->ndim; i++) {
        if (__builtin_mul_overflow(count, d->shape[i], &count))
            return yls_fail_set(f, 400,
                                "input '%s': shape %s has more elements than 64 bits count",
                                d->name, s);
    }
    int64_t bytes;
    if (__builtin_mul_overflow(count, (int64_t)d->esize, &bytes) || (uint64_t)bytes > SIZE_MAX)
        return yls_fail_set(f, 400, "input '%s': shape %s is too large (its bytes overflow)",
                            d->name, s);
    d->count = count;
    return 0;
}

/* binary_data_size, and the shared-memory parameters when in is given (NULL: the input
 * cannot be in shared memory). */
static int parse_input_parameters(yls_infer_input *in, input_desc *d, const json_t *params,
                                  yls_fail *f)
{
    d->binary_size = -1;
    if (!params || json_is_null(params))
        return 0;
    if (!json_is_object(params))
        return yls_fail_set(f, 400, "input '%s': \"parameters\" must be an object", d->name);
    const char *key;
    const json_t *v, *region = NULL, *offset = NULL, *size = NULL;
    json_object_foreach((json_t *)params, key, v) {
        if (!strcmp(key, "binary_data_size")) {
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return yls_fail_set(f, 400,
                                    "input '%s': binary_data_size must be a non-negative integer",
                                    d->name);
            d->binary_size = json_integer_value(v);
        } else if (in && !strcmp(key, "shared_memory_region")) {
            region = v;
        } else if (in && !strcmp(key, "shared_memory_offset")) {
            offset = v;
        } else if (in && !strcmp(key, "shared_memory_byte_size")) {
            size = v;
        } else {
            return yls_fail_set(f, 400,
                                "input '%s': unsupported parameter '%s' (binary_data_size%s)",
                                d->name, key,
                                in ? ", shared_memory_region, shared_memory_offset, "
                                     "shared_memory_byte_size"
                                   : " is the only one");
        }
    }
    if (!in)
        return 0;
    char what[48];
    snprintf(what, sizeof what, "input '%s'", d->name);
    int rc = shm_params(in, what, region, offset, size, &d->shm, f);
    if (rc < 0)
        return -1;
    d->in_shm = rc == 1;
    return 0;
}

static const char *dtype_name(int dtype)
{
    return dtype == YL_INT64 ? "INT64" : yl_dtype_name(dtype);
}

/* Store the JSON number v as element i of the dtype buffer. */
static int store_number(const input_desc *d, void *buf, int64_t i, const json_t *v,
                        yls_fail *f)
{
    if (d->dtype == YL_INT64) {
        if (!json_is_integer(v))
            return yls_fail_set(f, 400, "input '%s': element %" PRId64 " is not an integer",
                                d->name, i);
        ((int64_t *)buf)[i] = json_integer_value(v);
        return 0;
    }
    double x = json_number_value(v);
    switch (d->dtype) {
    case YL_F32: {
        float y = (float)x;
        if (!isfinite(y))
            return yls_fail_set(f, 400, "input '%s': element %" PRId64 " (%g) overflows FP32",
                                d->name, i, x);
        ((float *)buf)[i] = y;
        return 0;
    }
    case YL_F64:
        ((double *)buf)[i] = x;
        return 0;
    case YL_F16: {
        uint16_t h = yl_double_to_half(x);
        if (!isfinite(yl_half_to_double(h)))
            return yls_fail_set(f, 400, "input '%s': element %" PRId64 " (%g) overflows FP16",
                                d->name, i, x);
        ((uint16_t *)buf)[i] = h;
        return 0;
    }
    default:
        return yls_fail_set(f, 400, "input '%s': datatype %s cannot be given as JSON data",
                            d->name, yl_dtype_name(d->dtype));
    }
}

/* Row-major values of a flat or nested array, at most as deep as the shape. */
static int flatten(const input_desc *d, const json_t *a, int depth, void *buf, int64_t *pos,
                   yls_fail *f)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (json_is_array(v)) {
            if (depth + 1 >= d->ndim)
                return yls_fail_set(f, 400,
                                    "input '%s': data is nested deeper than its %d-D shape",
                                    d->name, d->ndim);
            if (flatten(d, v, depth + 1, buf, pos, f))
                return -1;
        } else if (json_is_number(v)) {
            if (*pos >= d->count)
                return yls_fail_set(f, 400,
                                    "input '%s': data has more than the %" PRId64
                                    " values its shape holds",
                                    d->name, d->count);
            if (store_number(d, buf, *pos, v, f))
                return -1;
            (*pos)++;
        } else {
            return yls_fail_set(f, 400, "input '%s': element %" PRId64 " is %s, not a number",
                                d->name, *pos, json_type_name(v));
        }
    }
    return 0;
}

/* Count the values (non-array leaves) of a data array into *n, stopping past limit, and
 * check its nesting: before the shape's buffer is allocated, so that a small body cannot
 * declare a huge shape. 0 or -1 with f set. */
static int count_values(const input_desc *d, const json_t *a, int depth, int64_t limit,
                        int64_t *n, yls_fail *f)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (*n > limit)
            break;
        if (!json_is_array(v)) {
            (*n)++;
            continue;
        }
        if (depth + 1 >= d->ndim)
            return yls_fail_set(f, 400, "input '%s': data is nested deeper than its %d-D shape",
                                d->name, d->ndim);
        if (count_values(d, v, depth + 1, limit, n, f))
            return -1;
    }
    return 0;
}

static int convert_json_data(yls_infer_input *in, const input_desc *d, yl_tensor *t,
                             yls_fail *f)
{
    if (!json_is_array(d->data))
        return yls_fail_set(f, 400, "input '%s': \"data\" must be an array, not %s", d->name,
                            json_type_name(d->data));
    int64_t have = 0;
    if (count_values(d, d->data, 0, d->count, &have, f))
        return -1;
    if (have != d->count) {
        char s[160];
        format_shape(d->shape, d->ndim, s, sizeof s);
        return yls_fail_set(f, 400,
                            "input '%s': data has %s%" PRId64 " values, shape %s needs %" PRId64,
                            d->name, have > d->count ? "more than " : "",
                            have > d->count ? d->count : have, s, d->count);
    }
    void *buf = yls_big_alloc((size_t)d->count * d->esize + 1); /* + 1: count may be 0 */
    if (!buf)
        return yls_fail_set(f, 500, "out of memory for input '%s'", d->name);
    in->owned[in->n_owned++] = buf;
    int64_t pos = 0;
    if (flatten(d, d->data, 0, buf, &pos, f))
        return -1;
    if (pos != d->count) {
        char s[160];
        format_shape(d->shape, d->ndim, s, sizeof s);
        return yls_fail_set(f, 400,
                            "input '%s': data has %" PRId64 " values, shape %s needs %" PRId64,
                            d->name, pos, s, d->count);
    }
    t->data = buf;
    return 0;
}

/* binary_data_size, when given, against the shape; or the data. */
static int check_binary_size(const input_desc *d, yls_fail *f)
{
    if (d->binary_size >= 0) {
        if (d->data)
            return yls_fail_set(f, 400,
                                "input '%s' has both \"data\" and binary_data_size; give one",
                                d->name);
        if ((uint64_t)d->binary_size != (uint64_t)d->count * d->esize) {
            char s[160];
            format_shape(d->shape, d->ndim, s, sizeof s);
            return yls_fail_set(f, 400,
                                "input '%s': binary_data_size %" PRId64 " is not shape %s x %zu "
                                "bytes (%s) = %" PRIu64,
                                d->name, d->binary_size, s, d->esize,
                                d->kind == IN_IMAGE_IDS ? (d->ids_unsigned ? "UINT64" : "INT64")
                                                        : dtype_name(d->dtype),
                                (uint64_t)d->count * d->esize);
        }
    } else if (!d->data) {
        return yls_fail_set(f, 400,
                            "input '%s' has neither \"data\" nor a binary_data_size parameter",
                            d->name);
    }
    return 0;
}

/* The image_ids input: INT64 or UINT64, shape [B] (B is checked once the batch is known). */
static int describe_image_ids(input_desc *d, const char *datatype, const json_t *shape,
                              const json_t *params, const json_t *data, yls_fail *f)
{
    if (strcmp(datatype, "INT64") && strcmp(datatype, "UINT64"))
        return yls_fail_set(f, 400, "input 'image_ids': datatype must be INT64 or UINT64, not '%s'",
                            datatype);
    d->ids_unsigned = datatype[0] == 'U';
    d->dtype = -1;
    d->esize = 8;
    if (parse_shape(d, shape, f) || parse_input_parameters(NULL, d, params, f))
        return -1;
    if (d->ndim != 1) {
        char s[160];
        format_shape(d->shape, d->ndim, s, sizeof s);
        return yls_fail_set(f, 400, "input 'image_ids': shape %s must be [B], one id per image", s);
    }
    d->data = data;
    return check_binary_size(d, f);
}

/* The ids, from JSON integers or the little-endian blob, each in [0, 2^63). */
static int convert_image_ids(yls_infer_input *in, const input_desc *d, const uint8_t *body,
                             yls_fail *f)
{
    int64_t n = d->count;
    in->image_ids = malloc((size_t)n * sizeof *in->image_ids);
    if (!in->image_ids)
        return yls_fail_set(f, 500, "out of memory for input 'image_ids'");
    in->n_image_ids = n;
    if (d->binary_size < 0) {
        if (!json_is_array(d->data))
            return yls_fail_set(f, 400, "input 'image_ids': \"data\" must be an array, not %s",
                                json_type_name(d->data));
        if ((int64_t)json_array_size(d->data) != n)
            return yls_fail_set(f, 400,
                                "input 'image_ids': data has %zu values, shape [%" PRId64
                                "] needs %" PRId64,
                                json_array_size(d->data), n, n);
        for (int64_t i = 0; i < n; i++) {
            const json_t *v = json_array_get(d->data, (size_t)i);
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return yls_fail_set(f, 400, "input 'image_ids': element %" PRId64 " is not " ID_RANGE,
                                    i);
            in->image_ids[i] = json_integer_value(v);
        }
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t u;
        memcpy(&u, body + d->offset + (size_t)i * 8, 8);
        if (u > (uint64_t)INT64_MAX)
            return yls_fail_set(f, 400,
                                "input 'image_ids': element %" PRId64 " (%s%" PRIu64 ") is not "
                                ID_RANGE,
                                i, d->ids_unsigned ? "" : "-", d->ids_unsigned ? u : -u);
        in->image_ids[i] = (int64_t)u;
    }
    return 0;
}

/* One entry of "inputs": name, datatype, shape, parameters, data. */
static int describe_input(yls_infer_input *in, const yls_model *m, const json_t *o, size_t idx,
                          input_desc *descs, int n_desc, input_desc *d, yls_fail *f)
{
    if (!json_is_object(o))
        return yls_fail_set(f, 400, "inputs[%zu] must be an object, not %s", idx,
                            json_type_name(o));
    const json_t *name = NULL, *shape = NULL, *datatype = NULL, *params = NULL, *data = NULL;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)o, key, v) {
        if (!strcmp(key, "name"))
            name = v;
        else if (!strcmp(key, "shape"))
            shape = v;
        else if (!strcmp(key, "datatype"))
            datatype = v;
        else if (!strcmp(key, "parameters"))
            params = v;
        else if (!strcmp(key, "data"))
            data = v;
        else
            return yls_fail_set(f, 400,
                                "inputs[%zu]: unknown key '%s' (name, shape, datatype, "
                                "parameters, data)",
                                idx, key);
    }
    if (!json_is_string(name))
        return yls_fail_set(f, 400, "inputs[%zu] needs a \"name\" string", idx);
    d->name = json_string_value(name);
    int L = in->num_layers, l;
    if (!strcmp(d->name, in->cfg.definition == YL_DEF_DARKNET ? "truths" : "boxes")) {
        d->kind = IN_BOXES;
        d->layer = 0;
    } else if ((l = layer_suffix(d->name, "output_", L)) >= 0) {
        d->kind = IN_OUTPUT;
        d->layer = l;
    } else if ((l = layer_suffix(d->name, "y_true_", L)) >= 0) {
        d->kind = IN_Y_TRUE;
        d->layer = l;
    } else if (!strcmp(d->name, IMAGE_IDS)) {
        d->kind = IN_IMAGE_IDS;
        d->layer = 0;
    } else if ((l = layer_part(d->name, "output_", "box", L)) >= 0) {
        d->kind = IN_BOX;
        d->layer = l;
    } else if ((l = layer_part(d->name, "output_", "rows", L)) >= 0) {
        d->kind = IN_ROWS;
        d->layer = l;
    } else if ((l = layer_part(d->name, "output_", "index", L)) >= 0) {
        d->kind = IN_INDEX;
        d->layer = l;
    } else if (in->cfg.definition == YL_DEF_DARKNET) {
        return yls_fail_set(f, 400,
                            "unknown input '%s' (model '%s' takes output_0..output_%d or their "
                            "compact form output_l_box, output_l_rows, output_l_index, truths "
                            "(B, T, 5: x, y, w, h, class normalised), and optionally image_ids)",
                            d->name, m->name, L - 1);
    } else {
        return yls_fail_set(f, 400,
                            "unknown input '%s' (model '%s' takes output_0..output_%d or their "
                            "compact form output_l_box, output_l_rows, output_l_index, either "
                            "boxes or y_true_0..y_true_%d, and optionally image_ids)",
                            d->name, m->name, L - 1, L - 1);
    }
    for (int j = 0; j < n_desc; j++)
        if (!strcmp(descs[j].name, d->name))
            return yls_fail_set(f, 400, "input '%s' is given twice", d->name);

    if (!json_is_string(datatype))
        return yls_fail_set(f, 400, "input '%s' needs a \"datatype\" string", d->name);
    if (d->kind == IN_IMAGE_IDS)
        return describe_image_ids(d, json_string_value(datatype), shape, params, data, f);
    if (d->kind == IN_INDEX) {
        if (strcmp(json_string_value(datatype), "INT64"))
            return yls_fail_set(f, 400, "input '%s': datatype must be INT64, not '%s'", d->name,
                                json_string_value(datatype));
        d->dtype = YL_INT64;
        d->esize = 8;
    } else {
        d->dtype = yl_dtype_from_name(json_string_value(datatype));
        if (d->dtype < 0)
            return yls_fail_set(f, 400,
                                "input '%s': unsupported datatype '%s' (FP32, FP16, BF16 or FP64)",
                                d->name, json_string_value(datatype));
        d->esize = yl_dtype_size(d->dtype);
    }
    if (parse_shape(d, shape, f) || parse_input_parameters(in, d, params, f))
        return -1;
    d->data = data;
    if (d->in_shm) {
        if (data || d->binary_size >= 0)
            return yls_fail_set(f, 400,
                                "input '%s' is in shared memory and has %s too; give one",
                                d->name, data ? "\"data\"" : "binary_data_size");
        if (d->shm.size != (uint64_t)d->count * d->esize) {
            char s[160];
            format_shape(d->shape, d->ndim, s, sizeof s);
            return yls_fail_set(f, 400,
                                "input '%s': shared_memory_byte_size %" PRIu64 " (region '%s') is "
                                "not shape %s x %zu bytes = %" PRIu64,
                                d->name, d->shm.size, d->shm.region->name, s, d->esize,
                                (uint64_t)d->count * d->esize);
        }
        return 0;
    }
    if (check_binary_size(d, f))
        return -1;
    if (d->binary_size < 0) {
        if (d->dtype == YL_BF16)
            return yls_fail_set(f, 400,
                                "input '%s': BF16 is accepted only as binary data "
                                "(binary_data_size), not as JSON",
                                d->name);
    }
    return 0;
}

/* Point t at p (the blob, or the tensor in shared memory), or at a copy of it: an aligned
 * one, or (own) the daemon's own. output_l_index in shared memory is always copied: it
 * steers where the core and the response write, it is checked once
 * (yl_problem_init_compact), and a client may rewrite its region at any moment, so the
 * values checked must be the values used. Every other tensor only feeds arithmetic: read in
 * place, a rewrite changes numbers, never an address. */
static int bind_bytes(yls_infer_input *in, const input_desc *d, const uint8_t *p, bool own,
                      yl_tensor *t, yls_fail *f)
{
    if (!own && (uintptr_t)p % d->esize == 0) {
        t->data = p;
        return 0;
    }
    size_t n = (size_t)d->count * d->esize;
    void *copy = yls_big_alloc(n + 1);
    if (!copy)
        return yls_fail_set(f, 500, "out of memory for input '%s'", d->name);
    memcpy(copy, p, n);
    in->owned[in->n_owned++] = copy;
    t->data = copy;
    return 0;
}

static int slot_of(const input_desc *d, int L)
{
    return d->kind == IN_IMAGE_IDS ? -1 : slot_index(d->kind, L, d->layer);
}

/* Every output_l, or every output_l_box/_rows/_index; boxes or every y_true_l. */
static int check_present(yls_infer_input *in, const yls_model *m,
                         const input_desc *const *by_slot, yls_fail *f)
{
    int L = in->num_layers;
    char range[192];
    snprintf(range, sizeof range,
             "model '%s' takes output_0..output_%d and either boxes or y_true_0..y_true_%d",
             m->name, L - 1, L - 1);
    bool any_dense = false, any_compact = false;
    for (int l = 0; l < L; l++) {
        any_dense |= by_slot[l] != NULL;
        for (int k = IN_BOX; k <= IN_INDEX; k++)
            any_compact |= by_slot[slot_index(k, L, l)] != NULL;
    }
    if (any_dense && any_compact)
        return yls_fail_set(f, 400,
                            "the request mixes dense inputs (output_l) and compact ones "
                            "(output_l_box, output_l_rows, output_l_index): every layer must "
                            "use the same form");
    in->compact = any_compact;
    static const char *const part[] = {"box", "rows", "index"};
    for (int l = 0; l < L; l++) {
        if (!any_compact && !by_slot[l])
            return yls_fail_set(f, 400, "missing input 'output_%d' (%s)", l, range);
        if (any_compact)
            for (int k = IN_BOX; k <= IN_INDEX; k++)
                if (!by_slot[slot_index(k, L, l)])
                    return yls_fail_set(f, 400,
                                        "missing input 'output_%d_%s' (a compact request gives "
                                        "output_l_box, output_l_rows and output_l_index for "
                                        "every layer)",
                                        l, part[k - IN_BOX]);
    }
    bool has_boxes = by_slot[slot_index(IN_BOXES, L, 0)] != NULL, any_y = false;
    for (int l = 0; l < L; l++)
        any_y |= by_slot[slot_index(IN_Y_TRUE, L, l)] != NULL;
    if (has_boxes && any_y)
        return yls_fail_set(f, 400,
                            "both 'boxes' and y_true inputs are given: the ground truth must be "
                            "one or the other");
    if (!has_boxes && !any_y)
        return yls_fail_set(f, 400, "missing ground truth: give 'boxes' or y_true_0..y_true_%d",
                            L - 1);
    if (any_y)
        for (int l = 0; l < L; l++)
            if (!by_slot[slot_index(IN_Y_TRUE, L, l)])
                return yls_fail_set(f, 400, "missing input 'y_true_%d' (%s)", l, range);
    in->has_boxes = has_boxes;
    return 0;
}

/* The shapes only the wire relates: output_l_index [N] and output_l_rows [N, 5+C]. */
static int check_compact(yls_infer_input *in, const input_desc *const *by_slot, yls_fail *f)
{
    int L = in->num_layers;
    for (int l = 0; l < L; l++) {
        const input_desc *rows = by_slot[slot_index(IN_ROWS, L, l)],
                         *index = by_slot[slot_index(IN_INDEX, L, l)];
        if (index->ndim != 1)
            return yls_fail_set(f, 400, "input 'output_%d_index' must be 1-D [N], not %d-D", l,
                                index->ndim);
        if (rows->ndim != 2)
            return yls_fail_set(f, 400, "input 'output_%d_rows' must be 2-D [N, 5+C], not %d-D",
                                l, rows->ndim);
        if (rows->shape[0] != index->shape[0])
            return yls_fail_set(f, 400,
                                "input 'output_%d_rows' has %" PRId64 " rows but "
                                "'output_%d_index' has %" PRId64 " indices",
                                l, rows->shape[0], l, index->shape[0]);
        in->cl[l].n = index->shape[0];
    }
    return 0;
}

static int parse_inputs(yls_infer_input *in, const yls_model *m, const json_t *inputs,
                        const uint8_t *body, size_t len, size_t json_len, bool has_header,
                        yls_fail *f)
{
    int L = in->num_layers;
    if (!json_is_array(inputs))
        return yls_fail_set(f, 400, "the request needs an \"inputs\" array");
    size_t n = json_array_size(inputs);
    if (n > YLS_MAX_INPUTS)
        n = YLS_MAX_INPUTS + 1; /* the extra one is a duplicate or unknown: reported below */
    input_desc descs[YLS_MAX_INPUTS + 1];
    memset(descs, 0, sizeof descs);
    size_t offset = json_len;
    for (size_t i = 0; i < n; i++) {
        input_desc *d = &descs[i];
        if (describe_input(in, m, json_array_get(inputs, i), i, descs, (int)i, d, f))
            return -1;
        if (d->binary_size >= 0) {
            if (!has_header)
                return yls_fail_set(f, 400,
                                    "input '%s' has binary_data_size but the request has no "
                                    "Inference-Header-Content-Length header",
                                    d->name);
            if ((uint64_t)d->binary_size > len - offset)
                return yls_fail_set(f, 400,
                                    "truncated binary body: input '%s' needs %" PRId64
                                    " bytes at offset %zu but the body ends at %zu",
                                    d->name, d->binary_size, offset, len);
            d->offset = offset;
            offset += (size_t)d->binary_size;
        }
    }
    if (offset != len)
        return yls_fail_set(f, 400,
                            "the body has %zu bytes after the JSON header and the binary inputs "
                            "(JSON header %zu bytes, binary inputs end at %zu, body %zu)",
                            len - offset, json_len, offset, len);

    /* what is there: every output_l (or its compact parts), and boxes or every y_true_l */
    const input_desc *by_slot[YLS_MAX_INPUTS] = {0};
    for (size_t i = 0; i < n; i++)
        if (slot_of(&descs[i], L) >= 0)
            by_slot[slot_of(&descs[i], L)] = &descs[i];
    if (check_present(in, m, by_slot, f) || (in->compact && check_compact(in, by_slot, f)))
        return -1;

    /* tensors */
    for (size_t i = 0; i < n; i++) {
        const input_desc *d = &descs[i];
        if (d->kind == IN_IMAGE_IDS) {
            if (in->image_ids)
                return yls_fail_set(f, 400, "image_ids is given both as an input and as a "
                                            "parameter; give one");
            if (convert_image_ids(in, d, body, f))
                return -1;
            continue;
        }
        yl_tensor tmp, *t = d->kind == IN_OUTPUT  ? &in->outputs[d->layer]
                            : d->kind == IN_BOXES ? &in->boxes
                            : d->kind == IN_Y_TRUE ? &in->y_true[d->layer]
                            : d->kind == IN_BOX    ? &in->cl[d->layer].box
                            : d->kind == IN_ROWS   ? &in->cl[d->layer].rows
                                                   : &tmp;
        t->dtype = d->dtype;
        t->ndim = d->ndim;
        memcpy(t->shape, d->shape, sizeof t->shape);
        int rc;
        if (d->in_shm) {
            rc = bind_bytes(in, d, d->shm.region->base + d->shm.offset, d->kind == IN_INDEX,
                            t, f);
            int k = in->n_shm_in++;
            snprintf(in->shm_names[k], sizeof in->shm_names[k], "%s", d->name);
            in->shm_in[k].name = in->shm_names[k];
            in->shm_in[k].at = d->shm;
        } else if (d->binary_size >= 0) {
            rc = bind_bytes(in, d, body + d->offset, false, t, f);
        } else {
            rc = convert_json_data(in, d, t, f);
        }
        if (rc)
            return -1;
        if (d->kind == IN_INDEX)
            in->cl[d->layer].index = t->data;
    }
    return 0;
}

/* --------------------------------------------------------------------------------------- */

int yls_infer_parse(yls_infer_input *in, const yls_model *m, const uint8_t *body, size_t len,
                    int64_t header_len, struct yls_shm *shm, yls_fail *f)
{
    memset(in, 0, sizeof *in);
    in->step = -1;
    in->shm = shm;
    in->grad_dtype = YL_F32;
    in->cfg = m->cfg;
    size_t json_len = header_len >= 0 ? (size_t)header_len : len;
    if (json_len > len)
        return yls_fail_set(f, 400,
                            "Inference-Header-Content-Length %zu is larger than the body (%zu "
                            "bytes)",
                            json_len, len);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return json_error_fail(&jerr, body, json_len, f);
    int rc = -1;
    if (!json_is_object(root)) {
        yls_fail_set(f, 400, "the request must be a JSON object, not %s", json_type_name(root));
        goto out;
    }
    const json_t *id = NULL, *params = NULL, *inputs = NULL, *outputs = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "id"))
            id = v;
        else if (!strcmp(key, "parameters"))
            params = v;
        else if (!strcmp(key, "inputs"))
            inputs = v;
        else if (!strcmp(key, "outputs"))
            outputs = v;
        else {
            yls_fail_set(f, 400,
                         "unknown key '%s' in the request (id, parameters, inputs, outputs)", key);
            goto out;
        }
    }
    if (id && !json_is_null(id)) {
        if (!json_is_string(id)) {
            yls_fail_set(f, 400, "\"id\" must be a string, not %s", json_type_name(id));
            goto out;
        }
        in->id = strdup(json_string_value(id));
        if (!in->id) {
            yls_fail_set(f, 500, "out of memory");
            goto out;
        }
    }
    bool binary_output = false;
    if (parse_request_parameters(in, params, &binary_output, f))
        goto out;
    /* keras-yolo3's layers follow from its anchor count (a request may send 12 or 18);
     * every other definition's from its model */
    in->num_layers = in->cfg.definition == YL_DEF_KERAS
                         ? in->cfg.num_anchors / YL_NUM_ANCHORS_PER_LAYER
                         : in->cfg.num_layers;
    bool all_outputs = !outputs || json_is_null(outputs) ||
                       (json_is_array(outputs) && json_array_size(outputs) == 0);
    if (parse_outputs(in, m, outputs, binary_output, f) ||
        parse_inputs(in, m, inputs, body, len, json_len, header_len >= 0, f) ||
        finish_outputs(in, m->cfg.definition, all_outputs, binary_output, f))
        goto out;
    if (in->image_ids) {
        if (!in->run[0]) {
            yls_fail_set(f, 400, "%s image_ids needs the parameter run (the ids are recorded "
                                 "with the run's steps)",
                         in->image_ids_param ? "parameter" : "input");
            goto out;
        }
        if (image_ids_unique(in, f))
            goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

void yls_infer_input_free(yls_infer_input *in)
{
    if (!in)
        return;
    for (int i = 0; i < in->n_owned; i++)
        yls_big_free(in->owned[i]);
    in->n_owned = 0;
    free(in->id);
    in->id = NULL;
    free(in->image_ids);
    in->image_ids = NULL;
    for (int i = 0; i < in->n_held; i++)
        yls_shm_release(in->shm, in->held[i]);
    in->n_held = 0;
}

/* --------------------------------------------------------------------------------------- */
/* Output shapes and outputs in shared memory                                                */

void *yls_output_shm_ptr(const yls_output_req *o)
{
    return o->shm.region->base + o->shm.offset;
}

/* The bytes [from, to) of the shared-memory object that a placement covers. */
static void object_span(const yls_shm_place *at, uint64_t bytes, uint64_t *from, uint64_t *to)
{
    *from = at->region->offset + at->offset;
    *to = *from + bytes;
}

static bool spans_overlap(const yls_shm_place *a, uint64_t na, const yls_shm_place *b,
                          uint64_t nb)
{
    if (a->region->dev != b->region->dev || a->region->ino != b->region->ino || !na || !nb)
        return false;
    uint64_t a0, a1, b0, b1;
    object_span(a, na, &a0, &a1);
    object_span(b, nb, &b0, &b1);
    return a0 < b1 && b0 < a1;
}

int yls_infer_check_shm_outputs(const yls_infer_input *in, const yl_problem *p, yls_fail *f)
{
    uint64_t need[YLS_MAX_OUTPUTS];
    for (int i = 0; i < in->n_out; i++) {
        const yls_output_req *o = &in->out[i];
        if (!o->shm.region)
            continue;
        int ndim;
        int64_t shape[YL_MAX_DIMS];
        size_t elems, es = yls_output_esize(in, i);
        yls_output_shape(in, p, i, &ndim, shape, &elems);
        need[i] = (uint64_t)elems * es;
        char name[YLS_OUTPUT_NAME_MAX];
        yls_output_name(o->kind, o->layer, name, sizeof name);
        if (need[i] > o->shm.size)
            return yls_fail_set(f, 400,
                                "output '%s': region '%s' is too small: shared_memory_byte_size "
                                "%" PRIu64 " but the output needs %" PRIu64 " bytes (%zu x %s)",
                                name, o->shm.region->name, o->shm.size, need[i], elems,
                                es == 8 ? "FP64" : "FP32");
        if ((uintptr_t)yls_output_shm_ptr(o) % es)
            return yls_fail_set(f, 400,
                                "output '%s': shared_memory_offset %" PRIu64 " in region '%s' is "
                                "not a multiple of %zu (the output's element size)",
                                name, o->shm.offset, o->shm.region->name, es);
        for (int k = 0; k < in->n_shm_in; k++)
            if (spans_overlap(&o->shm, need[i], &in->shm_in[k].at, in->shm_in[k].at.size))
                return yls_fail_set(f, 400,
                                    "output '%s' (region '%s', offset %" PRIu64 ", %" PRIu64
                                    " bytes) overlaps input '%s' (region '%s', offset %" PRIu64
                                    ", %" PRIu64 " bytes) in the same shared-memory object",
                                    name, o->shm.region->name, o->shm.offset, need[i],
                                    in->shm_in[k].name, in->shm_in[k].at.region->name,
                                    in->shm_in[k].at.offset, in->shm_in[k].at.size);
        for (int j = 0; j < i; j++) {
            const yls_output_req *q = &in->out[j];
            if (q->shm.region && spans_overlap(&o->shm, need[i], &q->shm, need[j])) {
                char other[YLS_OUTPUT_NAME_MAX];
                yls_output_name(q->kind, q->layer, other, sizeof other);
                return yls_fail_set(f, 400,
                                    "output '%s' (region '%s') overlaps output '%s' (region '%s') "
                                    "in the same shared-memory object",
                                    name, o->shm.region->name, other, q->shm.region->name);
            }
        }
    }
    return 0;
}

