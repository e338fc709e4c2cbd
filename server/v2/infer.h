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
    YLS_OUT_GRAD,        /* FP32, the shape of output_<layer> */
} yls_output_kind;

#define YLS_MAX_OUTPUTS (YLS_OUT_GRAD + YL_MAX_LAYERS)
#define YLS_MAX_INPUTS (2 * YL_MAX_LAYERS + 2) /* outputs, truth, image_ids */

typedef struct {
    yls_output_kind kind;
    int layer; /* for YLS_OUT_GRAD */
    bool binary;
} yls_output_req;

/* A parsed request: the core's inputs (borrowing the body or owned buffers) and what to
 * answer. */
typedef struct {
    yl_config cfg; /* the model's, with the request's anchors / ignore_thresh */
    int num_layers;
    yl_tensor outputs[YL_MAX_LAYERS];
    bool has_boxes;
    yl_tensor boxes;
    yl_tensor y_true[YL_MAX_LAYERS];
    void *owned[YLS_MAX_INPUTS]; /* converted JSON data, realigned blobs */
    int n_owned;

    yls_output_req out[YLS_MAX_OUTPUTS];
    int n_out;
    bool want_grads;

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
 * the binary blobs. Binary inputs borrow the body, which must outlive in. The body's binary
 * part should be 16-byte aligned; blobs that are not naturally aligned are copied.
 * 0, or -1 with f set (400, or 500 for memory). */
int yls_infer_parse(yls_infer_input *in, const yls_model *m, const uint8_t *body, size_t len,
                    int64_t header_len, yls_fail *f);
void yls_infer_input_free(yls_infer_input *in);
/* The image ids against the batch size: 0, or -1 with f set (400 naming the input). */
int yls_image_ids_check(const yls_infer_input *in, int64_t batch, yls_fail *f);

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
    float *grads[YL_MAX_LAYERS];
    uint8_t *packed;    /* compressed body */
} yls_payload;

/* Build the response for in's outputs from the batch result. images: p->batch results (for
 * image_terms); grads: taken over by the payload (set to NULL in the array) when used.
 * 0, or -1 with f set. */
int yls_infer_respond(yls_payload *out, const yls_infer_input *in, const char *model_name,
                      const yl_problem *p, const yl_result *res, const yl_image_result *images,
                      float **grads, yls_encoding enc, yls_fail *f);
void yls_payload_free(yls_payload *p);

/* "output_1", "y_true_0", "grad_2", ... */
const char *yls_output_name(yls_output_kind kind, int layer, char *buf, size_t len);

#endif /* YLS_INFER_H */
