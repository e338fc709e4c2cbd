/*
 * yololoss_client.h: a small C client of yololossd (libcurl + jansson), the keras-yolo3
 * YOLOv3 loss served over the Open Inference Protocol v2 with Triton's binary tensors.
 *
 * OWNERSHIP. Tensors given to ylc_compute are borrowed for the duration of the call. A
 * ylc_result owns what it points to (image terms, gradients) until ylc_result_free; a
 * ylc_client owns its connection (kept alive between calls) until ylc_client_free. Free
 * functions accept NULL and zeroed structs.
 *
 * THREADS. A ylc_client is used by one thread at a time; make one per thread (each has its
 * own connection and shared-memory region). ylc_client_new may be called from several
 * threads at once: it calls curl_global_init once per process.
 *
 * ERRORS. Functions return 0, or -1 with err->status (the HTTP status: 400, 401, 404, 413,
 * 503, ...; 0 when no answer came back or the call was refused before sending) and
 * err->msg (the server's {"error": ...} text or the client's own explanation).
 *
 * RETRIES. A call is retried when the connection was refused, reset or closed without an
 * answer, and when the answer is 502, 503 or 504 (a proxy during a rolling update, an
 * overloaded or draining daemon). The wait before retry n (n = 0, 1, ...) is the answer's
 * Retry-After when it has one, else a uniform draw in [0, min(backoff_max, backoff_base *
 * 2^n)] ("full jitter", so that clients refused together spread out). Everything happens
 * inside the call's one deadline (its timeout): a wait that would end past it is not
 * started and the last failure is returned. Replaying an infer is safe: the loss is a pure
 * function of the request, and a step logged with run/step is recorded once.
 *
 * WORKED EXAMPLE (yolov3-tiny, 2 layers, boxes as ground truth):
 *
 *     ylc_client *c;
 *     ylc_error err;
 *     ylc_options opt = {.url = "http://127.0.0.1:8000", .model = "yolov3-tiny"};
 *     if (ylc_client_new(&c, &opt, &err) != 0) { fprintf(stderr, "%s\n", err.msg); ... }
 *     ylc_tensor out[2] = {
 *         {.data = o13, .dtype = YLC_F32, .ndim = 4, .shape = {B, 13, 13, 255}},
 *         {.data = o26, .dtype = YLC_F32, .ndim = 4, .shape = {B, 26, 26, 255}},
 *     };
 *     ylc_tensor boxes = {.data = bx, .dtype = YLC_F32, .ndim = 3, .shape = {B, T, 5}};
 *     ylc_request req = {.outputs = out, .n_outputs = 2, .boxes = &boxes, .grads = 1};
 *     ylc_result r;
 *     if (ylc_compute(c, &req, &r, &err) != 0)
 *         fprintf(stderr, "HTTP %d: %s\n", err.status, err.msg);  // e.g. 400 "boxes[1][3]: ..."
 *     else
 *         printf("loss %g, grad_0[0] %g\n", r.loss, r.grads[0][0]);
 *     ylc_result_free(&r);
 *     ylc_client_free(c);
 */
#ifndef YOLOLOSS_CLIENT_H
#define YOLOLOSS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define YLC_VERSION "0.1.0"
#define YLC_MAX_LAYERS 3
#define YLC_MAX_DIMS 5
#define YLC_NUM_STATS 8

/* Element types, with the same values as the core's yl_dtype. BF16 data are the raw
 * bfloat16 bit patterns (uint16_t). All data little-endian, dense, row-major. */
typedef enum { YLC_F32 = 0, YLC_F16 = 1, YLC_BF16 = 2, YLC_F64 = 3 } ylc_dtype;

typedef struct {
    const void *data;
    int dtype; /* ylc_dtype */
    int ndim;
    int64_t shape[YLC_MAX_DIMS];
} ylc_tensor;

/* TENSORS. With YLC_TENSORS_AUTO (the default) a call sends the compact exact tensors of
 * the daemon's "yololoss_compact" extension when the daemon offers it: per layer the 5
 * box/objectness channels of every anchor plus the full rows of the anchors that may hold
 * a truth (all 3 anchors of each box's cell; with y_true the anchors of nonzero
 * objectness), about 1/17 of the bytes for C = 80. The loss, terms, statistics and
 * gradients are bit-identical to the dense request's; the dense gradient is rebuilt here
 * from the objectness gradient of every anchor and the rows (or handed over compact, see
 * ylc_request.grad_layout). The class logits of anchors without a truth are not sent, so
 * a NaN there is not seen (the dense request would be refused; the loss does not depend
 * on them). YLC_TENSORS_DENSE always sends output_l; YLC_TENSORS_COMPACT always compact. */
typedef enum { YLC_TENSORS_AUTO = 0, YLC_TENSORS_COMPACT = 1, YLC_TENSORS_DENSE = 2 } ylc_tensors;

/* TRANSPORT. With YLC_TRANSPORT_AUTO (the default) tensors and gradients go through a POSIX
 * shared-memory region (Triton's system shared-memory extension) when the URL's host is
 * loopback (127.0.0.0/8, ::1, localhost) and the daemon offers "system_shared_memory";
 * if the daemon cannot open the client's region (another /dev/shm, a container) the client
 * falls back to the HTTP body for good, silently. YLC_TRANSPORT_SHM insists (a failure is
 * an error), YLC_TRANSPORT_WIRE never uses shared memory. The region, one per client,
 * grows as needed; it is unlinked from /dev/shm as soon as the daemon has registered it
 * (nothing is left behind if the client dies) and unregistered by ylc_client_free. */
typedef enum { YLC_TRANSPORT_AUTO = 0, YLC_TRANSPORT_SHM = 1, YLC_TRANSPORT_WIRE = 2 } ylc_transport;

/* The layout of the gradient a compact call hands back (ylc_request.grad_layout). */
typedef enum { YLC_GRAD_DENSE = 0, YLC_GRAD_COMPACT = 1 } ylc_grad_layout;

typedef struct {
    int status;    /* HTTP status, 0: none (transport failure or refused locally) */
    char msg[512];
} ylc_error;

typedef struct {
    const char *url;    /* "http://127.0.0.1:8000" (NULL: that); a path prefix is kept */
    const char *model;  /* "yolov3" (NULL: that), "yolov3-tiny", ... */
    const char *token;  /* bearer token, NULL: none */
    double timeout;     /* seconds for a whole call, retries included; <= 0: 60 */
    int max_attempts;   /* attempts per call, the first included: 0 = as many as the
                           timeout allows, 1 = no retry */
    double backoff_base; /* seconds before the first retry at most; <= 0: 0.1 */
    double backoff_max;  /* the cap of the doubling wait; <= 0: 5 */
    int tensors;         /* ylc_tensors: compact or dense tensors on the wire */
    int transport;       /* ylc_transport: shared memory or the HTTP body */
} ylc_options;

typedef struct ylc_client ylc_client;

int ylc_client_new(ylc_client **out, const ylc_options *opt, ylc_error *err);
void ylc_client_free(ylc_client *c);
/* How many retries this client made so far (all calls, all causes). */
unsigned long ylc_client_retries(const ylc_client *c);

/* One batch. outputs: L raw head outputs [B,H,W,3*(5+C)] or [B,H,W,3,5+C]; exactly one of
 * boxes [B,T,5] (FP32 or FP64; pixels x_min, y_min, x_max, y_max, class) or y_true
 * (n_y_true = L dense tensors). */
typedef struct {
    const ylc_tensor *outputs;
    int n_outputs;
    const ylc_tensor *boxes;
    const ylc_tensor *y_true;
    int n_y_true;
    int grads;             /* also return d loss / d outputs */
    int json;              /* send JSON numbers and ask for JSON (BF16 inputs stay binary) */
    int has_ignore_thresh; /* override the model's ignore_thresh with ignore_thresh */
    double ignore_thresh;
    const char *anchors;   /* "w,h,w,h,..." (12 or 18 numbers) or NULL: the model's */
    const char *run;       /* monitoring label or NULL */
    int has_step;
    int64_t step;
    double timeout;        /* this call's deadline in seconds, retries included;
                              <= 0: the client's */
    int grad_datatype;     /* YLC_F32 (default): float gradients in res.grads; YLC_F64:
                              computed in double and never rounded, in res.grads_f64 */
    int grad_layout;       /* YLC_GRAD_DENSE (default): shaped as output l; YLC_GRAD_COMPACT:
                              as the daemon sent it (res.cgrads) when the call was compact */
    void *grad_into[YLC_MAX_LAYERS]; /* optional, dense layout: write layer l's gradient
                              here (as many float, or with YLC_F64 double, elements as
                              output l) instead of a new buffer; res.grads[l] (grads_f64)
                              then points here and ylc_result_free leaves it alone. Saves
                              the allocation and page faults of a fresh buffer per call.
                              After a failed call it may be partly written. */
} ylc_request;

/* A compact gradient of one layer: d loss / d t_o of every anchor, and the full gradient
 * rows of the anchors sent (every other value of the dense gradient is exactly 0). Values
 * are float or double as the result's grad_datatype says. */
typedef struct {
    void *obj;            /* [B, H, W, 3] */
    void *rows;           /* [n_rows, row_len] */
    int64_t *index;       /* n_rows flat anchor indices ((b*H + j)*W + i)*3 + k, increasing */
    int64_t n_rows, row_len, anchors;
} ylc_compact_grad;

/* The answer. Values are the server's FP32 outputs, widened; gradients as asked for. */
typedef struct {
    char model_name[64];
    int num_layers;
    int64_t batch;
    double loss;
    double terms[4];                          /* xy, wh, confidence, class */
    double layer_terms[YLC_MAX_LAYERS][4];
    double stats[YLC_MAX_LAYERS][YLC_NUM_STATS]; /* count, avg_iou, avg_class, avg_obj,
                                                    avg_noobj, recall50, recall75, ignored */
    float *image_terms;                       /* batch x 4, per image, not divided by B */
    float *grads[YLC_MAX_LAYERS];             /* NULL unless asked for; shaped as output l */
    double *grads_f64[YLC_MAX_LAYERS];        /* instead, with grad_datatype YLC_F64 */
    int grad_ndim[YLC_MAX_LAYERS];
    int64_t grad_shape[YLC_MAX_LAYERS][YLC_MAX_DIMS];
    int64_t grad_count[YLC_MAX_LAYERS];
    int grad_datatype;                        /* YLC_F32 or YLC_F64 */
    ylc_compact_grad cgrads[YLC_MAX_LAYERS];  /* instead, with grad_layout YLC_GRAD_COMPACT
                                                 when compact was set */
    int compact;                              /* 1: the call sent compact tensors */
    int shm;                                  /* 1: tensors went through shared memory */
    int64_t bytes_sent, bytes_received;       /* of the infer exchange, HTTP bodies only */
    unsigned char grad_borrowed[YLC_MAX_LAYERS]; /* grads[l] is the caller's grad_into[l] */
} ylc_result;

int ylc_compute(ylc_client *c, const ylc_request *req, ylc_result *res, ylc_error *err);
void ylc_result_free(ylc_result *r);

/* GET a path ("/v2/health/ready", "/v2/models/yolov3", ...) relative to the URL. Returns
 * the HTTP status (0 with err filled on a transport failure); *body (malloc'd,
 * NUL-terminated, may be NULL) receives the answer. */
long ylc_get(ylc_client *c, const char *path, char **body, ylc_error *err);

/* "xy", "wh", "confidence", "class" and "count", "avg_iou", ... for the indices. */
const char *ylc_term_name(int k);
const char *ylc_stat_name(int k);
/* "FP32", "FP16", "BF16", "FP64" or NULL. */
const char *ylc_dtype_name(int dtype);

#ifdef __cplusplus
}
#endif
#endif /* YOLOLOSS_CLIENT_H */
