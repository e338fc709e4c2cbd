/*
 * infer.h: an infer request between the wire and the core, shared by infer.c,
 * infer_request.c (body to tensors) and infer_response.c (results to a body).
 * These functions are pure (no libuv, no libmicrohttpd state) and run on pool threads.
 */
#ifndef YLS_INFER_H
#define YLS_INFER_H

#include "server.h"

/* The gradient kinds: which buffer of a layer a gradient output is (yls_grad_buf grads[k][l]). */
typedef enum {
    YLS_GRAD_NONE = -1, /* not a gradient: filled from the batch result */
    YLS_GRAD_DENSE = 0, /* the shape of output_l (compact: scattered from _OBJ and _ROWS) */
    YLS_GRAD_OBJ,       /* compact: d loss / d t_o of every anchor */
    YLS_GRAD_ROWS,      /* compact: the gradient of each sent row */
    YLS_GRAD_KINDS
} yls_grad_kind;

/* The request forms an output belongs to (asked: may be named; dflt: sent when "outputs" is
 * absent). */
enum { YLS_FORM_DENSE = 1, YLS_FORM_COMPACT = 2, YLS_FORM_BOTH = 3 };
/* The loss definitions that have an output (bits 1 << yl_definition). */
#define YLS_DEFS_ALL 0xffffffffu

/* THE OUTPUT TABLE: one row per output a request may ask for, in the order of a response
 * without "outputs". Adding an output is a row here plus its shape and fill functions in
 * outputs.c (shape_<ID>, fill_<ID>; fill NULL for a gradient, which the core writes); the
 * enum, the names, the parser, the default outputs, the small-array layout, the JSON bound
 * and the model metadata all follow from it.
 *   ID      YLS_OUT_<ID>
 *   NAME    the wire name; a per-layer output is NAME, the layer's digit, then SUFFIX
 *   SUFFIX  "" for most
 *   LAYERED one output per layer
 *   GRAD    yls_grad_kind (YLS_GRAD_NONE: FP32 from the result; else FP32 or FP64 as
 *           grad_datatype)
 *   ASKED   the forms whose requests may name it; DFLT: those that get it by default
 *   META    listed in the model metadata and configuration
 *   DEFS    the definitions that have it (YLS_DEFS_ALL, or a mask of 1 << YL_DEF_x)
 */
#define YLS_OUTPUT_TABLE(X)                                                                    \
    /* ID        NAME           SUFFIX  LAYERED GRAD            ASKED / DFLT                     META  DEFS */ \
    X(LOSS,        "loss",        "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, YLS_DEFS_ALL) \
    X(LOSS_TERMS,  "loss_terms",  "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, YLS_DEFS_ALL) \
    X(LAYER_TERMS, "layer_terms", "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, YLS_DEFS_ALL) \
    X(IMAGE_TERMS, "image_terms", "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, YLS_DEFS_ALL) \
    X(STATS,       "stats",       "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, YLS_DEFS_ALL) \
    X(COST,        "cost",        "",      0, YLS_GRAD_NONE,  YLS_FORM_BOTH, YLS_FORM_BOTH,    1, 1u << YL_DEF_DARKNET) \
    X(GRAD,        "grad_",       "",      1, YLS_GRAD_DENSE, YLS_FORM_BOTH, YLS_FORM_DENSE,   1, YLS_DEFS_ALL) \
    X(GRAD_OBJ,    "grad_",       "_obj",  1, YLS_GRAD_OBJ,   YLS_FORM_COMPACT, YLS_FORM_COMPACT, 0, YLS_DEFS_ALL) \
    X(GRAD_ROWS,   "grad_",       "_rows", 1, YLS_GRAD_ROWS,  YLS_FORM_COMPACT, YLS_FORM_COMPACT, 0, YLS_DEFS_ALL)

typedef enum {
#define YLS__OUT_ENUM(id, name, suffix, layered, grad, asked, dflt, meta, defs) YLS_OUT_##id,
    YLS_OUTPUT_TABLE(YLS__OUT_ENUM)
#undef YLS__OUT_ENUM
    YLS_OUT_COUNT
} yls_output_kind;

/* What the shape of an output depends on; -1 where unknown (the model metadata). */
typedef struct {
    int num_layers, layer;
    int64_t batch, grid_h, grid_w, c5; /* c5: 5 + classes */
    int64_t rows;                      /* N_l of a compact request */
    bool compact;
    int dense_ndim;                    /* output_l as sent */
    const int64_t *dense_shape;
} yls_shape_ctx;

/* What an output is filled from. */
typedef struct {
    const yl_problem *p;
    const yl_result *res;
    const yl_image_result *images; /* p->batch */
} yls_fill_ctx;

typedef struct {
    const char *name, *suffix;
    bool layered;
    yls_grad_kind grad;
    int asked, dflt; /* YLS_FORM_ bits */
    bool meta;
    uint32_t defs;
    int (*shape)(const yls_shape_ctx *c, int64_t *shape); /* the number of dimensions */
    void (*fill)(float *dst, const yls_fill_ctx *c);      /* NULL: a gradient */
} yls_output_def;

extern const yls_output_def yls_outputs[YLS_OUT_COUNT];

/* Whether definition def has output kind. */
bool yls_output_of(yls_output_kind kind, int def);
/* The output a wire name names for a model of L layers and definition def: 0 with kind and
 * layer set, or -1. */
int yls_output_parse(const char *name, int num_layers, int def, yls_output_kind *kind,
                     int *layer);
/* The outputs of a model as a message lists them: "loss, loss_terms, ..., grad_0..grad_2,
 * and for compact requests grad_l_obj, grad_l_rows". */
void yls_output_list(int num_layers, int def, char *buf, size_t len);

/* The most outputs a request names: every row once, a per-layer one once per layer. */
#define YLS__OUT_MAX(id, name, suffix, layered, grad, asked, dflt, meta, defs) \
    +((layered) ? YL_MAX_LAYERS : 1)
#define YLS_MAX_OUTPUTS (0 YLS_OUTPUT_TABLE(YLS__OUT_MAX))
#define YLS_OUTPUT_NAME_MAX 32 /* bytes of an output name, with its NUL */

/* output_l or output_l_box/_rows/_index, y_true_l, boxes, image_ids */
#define YLS_MAX_INPUTS (5 * YL_MAX_LAYERS + 2)

struct yls_shm;
struct yls_shm_region;

/* A tensor placed in a shared-memory region: [offset, offset + size) of the region. */
typedef struct {
    struct yls_shm_region *region; /* NULL: not in shared memory */
    uint64_t offset, size;
} yls_shm_place;

typedef struct {
    yls_output_kind kind;
    int layer; /* for the gradients */
    bool binary;
    yls_shm_place shm; /* written into the region, not sent */
} yls_output_req;

/* A compact layer as sent (yololoss_compact): the box channels of every anchor, the full
 * rows of chosen anchors and their flat anchor indices. */
typedef struct {
    yl_tensor box;        /* [B,H,W,3,5] */
    yl_tensor rows;       /* [N,5+C] */
    const int64_t *index; /* N */
    int64_t n;
} yls_compact_input;

/* A parsed request: the core's inputs (borrowing the body, shared memory or owned buffers)
 * and what to answer. */
typedef struct {
    yl_config cfg; /* the model's, with the request's anchors / ignore_thresh */
    int num_layers;
    bool compact;  /* output_l_box/_rows/_index instead of output_l */
    yl_tensor outputs[YL_MAX_LAYERS];
    yls_compact_input cl[YL_MAX_LAYERS];
    bool has_boxes;
    yl_tensor boxes;
    yl_tensor y_true[YL_MAX_LAYERS];
    void *owned[YLS_MAX_INPUTS]; /* converted JSON data, realigned blobs */
    int n_owned;

    yls_output_req out[YLS_MAX_OUTPUTS];
    int n_out;
    int grad_dtype; /* YL_F32 (default) or YL_F64: grad_datatype */
    bool want_grad[YLS_GRAD_KINDS][YL_MAX_LAYERS]; /* computed: asked for, or needed */

    /* shared memory: the registry, the inputs read from it (for the overlap checks) and
     * every region this request holds a reference on */
    struct yls_shm *shm;
    struct {
        const char *name;
        yls_shm_place at;
    } shm_in[YLS_MAX_INPUTS];
    int n_shm_in;
    struct yls_shm_region *held[YLS_MAX_INPUTS + YLS_MAX_OUTPUTS];
    int n_held;
    char shm_names[YLS_MAX_INPUTS][32]; /* input names (the JSON tree is gone after parse) */

    char *id; /* echoed, NULL when the request had none */
    char run[YLS_RUN_MAX];
    int64_t step;
    bool has_step;

    /* The images' identities (input image_ids, or the parameter image_ids for JSON users):
     * n_image_ids ids in [0, 2^63), no two equal, malloc'd; NULL when the request has none.
     * Checked against the batch after yl_problem_init (yls_image_ids_check). */
    int64_t *image_ids;
    int64_t n_image_ids;
    bool image_ids_param; /* from the parameter (names it in messages) */

    /* parameter eval: decode the batch (yldecode.h, keras's defaults) and store each image's
     * COCO records under (run, step, image id); image ids: image_ids, or image_offset + b */
    bool eval;
    int64_t image_offset;
    bool has_image_offset;
} yls_infer_input;

/* Parse body[0..len): the JSON header is the first header_len bytes (-1: all of it), then
 * the binary blobs. Binary inputs borrow the body, which must outlive in; inputs in shared
 * memory borrow their region (shm: the registry, NULL when the extension is off). The
 * body's binary part should be 16-byte aligned; blobs that are not naturally aligned are
 * copied. 0, or -1 with f set (400, or 500 for memory). yls_infer_input_free must be called
 * either way. */
int yls_infer_parse(yls_infer_input *in, const yls_model *m, const uint8_t *body, size_t len,
                    int64_t header_len, struct yls_shm *shm, yls_fail *f);
void yls_infer_input_free(yls_infer_input *in);
/* The image ids against the batch size: 0, or -1 with f set (400 naming the input). */
int yls_image_ids_check(const yls_infer_input *in, int64_t batch, yls_fail *f);

/* The shape and element count of output i of in for problem p. */
void yls_output_shape(const yls_infer_input *in, const yl_problem *p, int i, int *ndim,
                      int64_t *shape, size_t *elems);
/* Element size of output i: 4, or 8 for FP64 gradients. */
size_t yls_output_esize(const yls_infer_input *in, int i);
/* Check the outputs placed in shared memory against the problem's sizes (region too small,
 * misaligned, overlapping an input or another output): 0, or -1 with f set (400 naming
 * output and region). Then yls_output_shm_ptr gives where output i goes. */
int yls_infer_check_shm_outputs(const yls_infer_input *in, const yl_problem *p, yls_fail *f);
void *yls_output_shm_ptr(const yls_output_req *o);

/* Where a request's gradients are: one buffer per kind and layer, NULL when not computed;
 * borrowed ones lie in shared memory and are not freed. */
typedef struct {
    void *p;
    bool borrowed;
} yls_grad_buf;

/* A response body: iov[0] the JSON, then one blob per binary output (or, compressed, one
 * buffer). Owns everything it points to. */
typedef struct {
    struct MHD_IoVec iov[1 + YLS_MAX_OUTPUTS];
    int niov;
    uint64_t total;     /* bytes in iov */
    size_t json_len;    /* uncompressed JSON length (Inference-Header-Content-Length) */
    bool binary;        /* some output is binary */
    yls_encoding enc;   /* the body's Content-Encoding */
    char *json;
    float *small;       /* loss, terms, stats */
    void *grads[YLS_GRAD_KINDS][YL_MAX_LAYERS];
    uint8_t *packed;    /* compressed body */
} yls_payload;

/* Build the response for in's outputs from the batch result. images: p->batch results (for
 * image_terms); grads: taken over by the payload (set to NULL) unless borrowed. A dense
 * grad_l of a compact request is scattered here from grad_l_obj and grad_l_rows.
 * Outputs in shared memory are written there. 0, or -1 with f set. */
int yls_infer_respond(yls_payload *out, const yls_infer_input *in, const char *model_name,
                      const yl_problem *p, const yl_result *res, const yl_image_result *images,
                      yls_grad_buf grads[YLS_GRAD_KINDS][YL_MAX_LAYERS], yls_encoding enc,
                      yls_fail *f);
void yls_payload_free(yls_payload *p);

/* "loss", "grad_2", "grad_0_obj", ... (buf: YLS_OUTPUT_NAME_MAX bytes) */
const char *yls_output_name(yls_output_kind kind, int layer, char *buf, size_t len);

#endif /* YLS_INFER_H */
