/*
 * outputs.c: the outputs of the loss models (YLS_OUTPUT_TABLE in infer.h): their names,
 * shapes and how each is filled from the batch result. Everything else about an output
 * (parsing a requested name, the default outputs, the small-array layout of a response, the
 * JSON bound, the model metadata) reads the table, so an output added there is added
 * everywhere.
 */
#include "infer.h"

#include <stdio.h>
#include <string.h>

/* --------------------------------------------------------------------------------------- */
/* Shapes: the number of dimensions, shape[] filled                                         */

static int shape_LOSS(const yls_shape_ctx *c, int64_t *shape)
{
    (void)c;
    shape[0] = 1;
    return 1;
}

static int shape_LOSS_TERMS(const yls_shape_ctx *c, int64_t *shape)
{
    (void)c;
    shape[0] = 4; /* xy, wh, confidence, class */
    return 1;
}

static int shape_LAYER_TERMS(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->num_layers, shape[1] = 4;
    return 2;
}

static int shape_IMAGE_TERMS(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->batch, shape[1] = 4;
    return 2;
}

static int shape_STATS(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->num_layers, shape[1] = YL_NUM_STATS;
    return 2;
}

static int shape_COST(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->num_layers; /* darknet's cost (sum of delta^2) per layer */
    return 1;
}

/* the shape of output_l as sent; a compact request's [B,H,W,3,5+C] */
static int shape_GRAD(const yls_shape_ctx *c, int64_t *shape)
{
    if (c->compact) {
        shape[0] = c->batch, shape[1] = c->grid_h, shape[2] = c->grid_w, shape[3] = 3,
        shape[4] = c->c5;
        return 5;
    }
    memcpy(shape, c->dense_shape, (size_t)c->dense_ndim * sizeof *shape);
    return c->dense_ndim;
}

static int shape_GRAD_OBJ(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->batch, shape[1] = c->grid_h, shape[2] = c->grid_w, shape[3] = 3;
    return 4;
}

static int shape_GRAD_ROWS(const yls_shape_ctx *c, int64_t *shape)
{
    shape[0] = c->rows, shape[1] = c->c5;
    return 2;
}

/* --------------------------------------------------------------------------------------- */
/* Fills: FP32 from the double-precision result                                             */

static void fill_LOSS(float *dst, const yls_fill_ctx *c) { dst[0] = (float)c->res->loss; }

static void fill_LOSS_TERMS(float *dst, const yls_fill_ctx *c)
{
    for (int k = 0; k < 4; k++)
        dst[k] = (float)c->res->terms[k];
}

static void fill_LAYER_TERMS(float *dst, const yls_fill_ctx *c)
{
    for (int l = 0; l < c->p->num_layers; l++)
        for (int k = 0; k < 4; k++)
            dst[l * 4 + k] = (float)c->res->layer_terms[l][k];
}

static void fill_IMAGE_TERMS(float *dst, const yls_fill_ctx *c)
{
    for (int64_t b = 0; b < c->p->batch; b++) {
        double t[4];
        yl_image_terms(&c->images[b], t);
        for (int k = 0; k < 4; k++)
            dst[b * 4 + k] = (float)t[k];
    }
}

static void fill_STATS(float *dst, const yls_fill_ctx *c)
{
    for (int l = 0; l < c->p->num_layers; l++)
        for (int k = 0; k < YL_NUM_STATS; k++)
            dst[l * YL_NUM_STATS + k] = (float)c->res->stats[l][k];
}

static void fill_COST(float *dst, const yls_fill_ctx *c)
{
    for (int l = 0; l < c->p->num_layers; l++)
        dst[l] = (float)c->res->cost[l];
}

/* the gradients are written by the core into the request's buffers */
#define fill_GRAD NULL
#define fill_GRAD_OBJ NULL
#define fill_GRAD_ROWS NULL

/* --------------------------------------------------------------------------------------- */
/* The table                                                                                */

const yls_output_def yls_outputs[YLS_OUT_COUNT] = {
#define ROW(id, name, suffix, layered, grad, asked, dflt, meta, defs)                         \
    [YLS_OUT_##id] = {name, suffix, layered, grad, asked, dflt, meta, defs, shape_##id, fill_##id},
    YLS_OUTPUT_TABLE(ROW)
#undef ROW
};

bool yls_output_of(yls_output_kind kind, int def)
{
    return def >= 0 && def < 32 && (yls_outputs[kind].defs >> def & 1u);
}

const char *yls_output_name(yls_output_kind kind, int layer, char *buf, size_t len)
{
    const yls_output_def *d = &yls_outputs[kind];
    if (d->layered)
        snprintf(buf, len, "%s%d%s", d->name, layer, d->suffix);
    else
        snprintf(buf, len, "%s", d->name);
    return buf;
}

int yls_output_parse(const char *name, int num_layers, int def, yls_output_kind *kind,
                     int *layer)
{
    for (int k = 0; k < YLS_OUT_COUNT; k++) {
        const yls_output_def *d = &yls_outputs[k];
        if (!yls_output_of((yls_output_kind)k, def))
            continue;
        if (!d->layered) {
            if (strcmp(name, d->name))
                continue;
            *kind = (yls_output_kind)k;
            *layer = 0;
            return 0;
        }
        /* name, one digit below L, suffix */
        size_t n = strlen(d->name);
        if (strncmp(name, d->name, n) || name[n] < '0' || name[n] > '9' ||
            strcmp(name + n + 1, d->suffix) || name[n] - '0' >= num_layers)
            continue;
        *kind = (yls_output_kind)k;
        *layer = name[n] - '0';
        return 0;
    }
    return -1;
}

void yls_output_list(int num_layers, int def, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    /* the outputs of every request, then those of compact requests only */
    for (int pass = 0; pass < 2; pass++) {
        bool first = true;
        for (int k = 0; k < YLS_OUT_COUNT; k++) {
            const yls_output_def *d = &yls_outputs[k];
            if (!yls_output_of((yls_output_kind)k, def) ||
                (d->asked == YLS_FORM_COMPACT) != (pass == 1))
                continue;
            const char *sep = !first ? ", " : pass ? ", and for compact requests " : "";
            first = false;
            int w;
            if (!d->layered)
                w = snprintf(buf + at, len - at, "%s%s", sep, d->name);
            else if (pass == 0)
                w = snprintf(buf + at, len - at, "%s%s0%s..%s%d%s", sep, d->name, d->suffix,
                             d->name, num_layers - 1, d->suffix);
            else
                w = snprintf(buf + at, len - at, "%s%sl%s", sep, d->name, d->suffix);
            if (w < 0 || (size_t)w >= len - at)
                return; /* cut short: still a string */
            at += (size_t)w;
        }
    }
}

/* --------------------------------------------------------------------------------------- */
/* The outputs of a request                                                                  */

void yls_output_shape(const yls_infer_input *in, const yl_problem *p, int i, int *ndim,
                      int64_t *shape, size_t *elems)
{
    const yls_output_req *o = &in->out[i];
    int l = o->layer;
    yls_shape_ctx c = {.num_layers = p->num_layers,
                       .layer = l,
                       .batch = p->batch,
                       .grid_h = p->grid_h[l],
                       .grid_w = p->grid_w[l],
                       .c5 = 5 + p->num_classes,
                       .rows = in->cl[l].n,
                       .compact = in->compact,
                       .dense_ndim = in->outputs[l].ndim,
                       .dense_shape = in->outputs[l].shape};
    *ndim = yls_outputs[o->kind].shape(&c, shape);
    size_t n = 1;
    for (int d = 0; d < *ndim; d++)
        n *= (size_t)shape[d];
    *elems = n;
}

size_t yls_output_esize(const yls_infer_input *in, int i)
{
    return yls_outputs[in->out[i].kind].grad != YLS_GRAD_NONE && in->grad_dtype == YL_F64 ? 8
                                                                                          : 4;
}
