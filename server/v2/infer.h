/*
 * infer.h: an infer request between the wire and the core, shared by infer.c,
 * infer_request.c (body to tensors) and infer_response.c (results to a body).
 * These functions are pure (no libuv, no libmicrohttpd state) and run on pool threads.
 */
#ifndef YLS_INFER_H
#define YLS_INFER_H

#include "server.h"

/* The outputs a request may ask for, in the order of a response without "outputs". */
typedef enum {
    YLS_OUT_LOSS = 0,    /* FP32 [1] */
    YLS_OUT_LOSS_TERMS,  /* FP32 [4]: xy, wh, confidence, class */
    YLS_OUT_LAYER_TERMS, /* FP32 [L,4] */
    YLS_OUT_IMAGE_TERMS, /* FP32 [B,4] */
    YLS_OUT_STATS,       /* FP32 [L,8] */
    YLS_OUT_GRAD,        /* grad_l: the dense gradient, the shape of output_l (compact:
                            [B,H,W,3,5+C]); FP32 or FP64 (grad_datatype) */
    YLS_OUT_GRAD_OBJ,    /* grad_l_obj (compact): [B,H,W,3], d loss / d t_o */
    YLS_OUT_GRAD_ROWS,   /* grad_l_rows (compact): [N_l,5+C], the gradient of each sent row */
} yls_output_kind;

#define YLS_GRAD_KINDS 3 /* YLS_OUT_GRAD, _OBJ, _ROWS */
#define YLS_MAX_OUTPUTS (YLS_OUT_GRAD + YLS_GRAD_KINDS * YL_MAX_LAYERS)
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
    char run[64];
    int64_t step;
    bool has_step;

    /* The images' identities (input image_ids, or the parameter image_ids for JSON users):
     * n_image_ids ids in [0, 2^63), no two equal, malloc'd; NULL when the request has none.
     * Checked against the batch after yl_problem_init (yls_image_ids_check). */
    int64_t *image_ids;
    int64_t n_image_ids;
    bool image_ids_param; /* from the parameter (names it in messages) */
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

/* "output_1", "y_true_0", "grad_2", "grad_0_obj", ... */
const char *yls_output_name(yls_output_kind kind, int layer, char *buf, size_t len);

#endif /* YLS_INFER_H */
