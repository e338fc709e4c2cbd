/*
 * yololoss.h: the YOLOv3 loss of keras-yolo3, exactly, with gradients and darknet statistics.
 *
 * libyololoss is pure C11 + libm. It computes `yolo_loss` (and `preprocess_true_boxes`) of
 * qqwweee/keras-yolo3 in double precision, for 3-layer (9 anchors) and tiny (6 anchors)
 * models, from raw network outputs in fp32, fp16, bf16 or fp64. docs/semantics.md (a copy
 * of the project's semantics) lists every quirk it reproduces and every input it refuses.
 *
 * OWNERSHIP. The library never allocates memory it hands back and never frees memory it
 * was given. Every buffer (tensors, gradients, scratch, results) belongs to the caller and
 * must stay valid for the duration of the call that uses it; a yl_problem borrows the
 * tensor pointers (and compact index arrays) it was initialised with, so those must outlive
 * the problem. A compact index is checked once, by yl_problem_init_compact, and steers
 * where gradients are written: it must not change while the problem lives (copy it first
 * from memory another process may write). Tensor values may change: they are checked as
 * each image reads them. Only the convenience function yl_compute allocates, and it frees everything
 * before returning.
 * Nothing has global state: any function may run on any thread at any time, and calls
 * that share a yl_problem only read it.
 *
 * WORKED EXAMPLE (a 3-layer model, 416x416 input, 80 classes, boxes as ground truth):
 *
 *     yl_config cfg;
 *     yl_config_default(&cfg, 9);                    // YOLOv3 anchors, ignore_thresh 0.5
 *     yl_tensor out[3] = {
 *         {.data = o13, .dtype = YL_F32, .ndim = 4, .shape = {B, 13, 13, 255}},
 *         {.data = o26, .dtype = YL_F32, .ndim = 4, .shape = {B, 26, 26, 255}},
 *         {.data = o52, .dtype = YL_F32, .ndim = 4, .shape = {B, 52, 52, 255}},
 *     };
 *     yl_tensor boxes = {.data = bx, .dtype = YL_F32, .ndim = 3, .shape = {B, T, 5}};
 *     yl_problem p;
 *     yl_error err;
 *     if (yl_problem_init(&p, &cfg, out, 3, &boxes, NULL, 0, &err) != YL_OK) {
 *         fprintf(stderr, "%s\n", err.msg);          // e.g. "boxes[1][3]: class id 80 ..."
 *         return 1;
 *     }
 *     yl_grads g = {.dtype = YL_F32, .layer = {g13, g26, g52}}; // as many elements as out[l]
 *     yl_result r;
 *     if (yl_compute(&p, 4, &g, &r, NULL, &err) != YL_OK) { ... err.msg ... }
 *     printf("loss %g = xy %g + wh %g + conf %g + class %g\n",
 *            r.loss, r.terms[0], r.terms[1], r.terms[2], r.terms[3]);
 *     // g13[i] is d loss / d out[0][i] (float); box and class channels of anchors without
 *     // an object are exactly 0 (keras's ignore mask carries no gradient either).
 *     // .dtype = YL_F64 with double buffers gives the gradient without the float rounding;
 *     // yl_compute(&p, 4, NULL, &r, NULL, &err) computes the loss only.
 *
 * COMPACT PROBLEMS. The loss reads the class logits only at anchors that hold a truth, and
 * the gradient is zero everywhere except the objectness channel of the other anchors. So
 * yl_problem_init_compact takes, per layer, the 5 box/objectness channels of every anchor
 * (B, H, W, 3, 5) plus the full rows (N, 5+C) of chosen anchors with their flat indices
 * ((b*H + j)*W + i)*3 + k, strictly increasing; the rows must include every truth anchor
 * (yl_image fails with YL_ENOROW naming image, layer, cell and anchor otherwise), and
 * extra rows are allowed and ignored. A truth anchor is read entirely from its row, every
 * other anchor from the box tensor. The result is bit-identical to the dense problem built
 * from the same values. Its gradient comes back compact too: yl_grads.layer[l] gets the
 * objectness gradient of every anchor (B, H, W, 3), yl_grads.rows[l] the full gradient row
 * of each sent row (zeros but channel 4 for rows of anchors without a truth):
 *
 *     yl_compact_layer cl[3] = {{.box = box13, .rows = rows13, .index = idx13}, ...};
 *     yl_problem_init_compact(&p, &cfg, cl, 3, &boxes, NULL, 0, &err);
 *     yl_grads g = {.dtype = YL_F32, .layer = {go13, go26, go52}, .rows = {gr13, gr26, gr52}};
 *     yl_compute(&p, 4, &g, &r, NULL, &err);
 *
 * To run images on your own thread pool instead of yl_compute: give each worker a scratch
 * buffer of yl_scratch_size(&p) bytes, call yl_image(&p, b, scratch, &g, &img[b], &err)
 * for every image b in any order on any threads, then yl_reduce(&p, img, &r) on one
 * thread. yl_image is a pure function of its arguments and yl_reduce sums in image order,
 * so the result is bit-identical for every thread count and schedule. When several images
 * fail, report the error of the lowest b to stay deterministic too.
 */
#ifndef YOLOLOSS_H
#define YOLOLOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define YL_VERSION "0.1.0"
#define YL_MAX_LAYERS 3
#define YL_NUM_ANCHORS_PER_LAYER 3
#define YL_MAX_DIMS 5

/* Errors: negative codes from one table; yl_strerror names them, yl_error says where. */
#define YL_ERRNO_MAP(X)                                                           \
    X(EINVAL, -1, "invalid argument")                                             \
    X(ESHAPE, -2, "shape mismatch")                                               \
    X(EDTYPE, -3, "unsupported dtype")                                            \
    X(ENONFINITE, -4, "non-finite value")                                         \
    X(EBOX, -5, "invalid box")                                                    \
    X(ECLASS, -6, "class id out of range")                                        \
    X(EOVERFLOW, -7, "size overflow")                                             \
    X(ENOMEM, -8, "out of memory")                                                \
    X(ENOROW, -9, "missing compact row")

typedef enum {
    YL_OK = 0,
#define YL__ERR_ENUM(name, code, text) YL_##name = code,
    YL_ERRNO_MAP(YL__ERR_ENUM)
#undef YL__ERR_ENUM
} yl_status;

/* "invalid argument", ... ; "unknown error" for anything else. */
const char *yl_strerror(int code);
/* "YL_EINVAL", ... ; "YL_UNKNOWN" for anything else. */
const char *yl_err_name(int code);

/* An error with its context. msg is complete and self-contained, for example
 * "boxes[1][3]: class id 80 is not an integer in [0, 80)" or
 * "output_1[0][3][4][250] is NaN"; tensor is "output_1", "y_true_0", "boxes", "anchors",
 * "ignore_thresh", "grads", for compact problems "output_1_box", "output_1_rows" or
 * "output_1_index", or "", and image/index are -1 where they do not apply. */
typedef struct {
    int code;
    char tensor[16];
    int64_t image;
    int64_t index;
    char msg[256];
} yl_error;

typedef enum { YL_F32 = 0, YL_F16 = 1, YL_BF16 = 2, YL_F64 = 3 } yl_dtype;

/* Element size in bytes, 0 for an unknown dtype. */
size_t yl_dtype_size(int dtype);
/* "FP32", "FP16", "BF16", "FP64" (the wire names of the Open Inference Protocol), or NULL. */
const char *yl_dtype_name(int dtype);
/* The dtype for a wire name, or -1. */
int yl_dtype_from_name(const char *name);

/* A borrowed, dense, row-major, little-endian tensor. */
typedef struct {
    const void *data;
    int dtype; /* yl_dtype */
    int ndim;
    int64_t shape[YL_MAX_DIMS];
} yl_tensor;

/* LOSS DEFINITIONS. Each row: its enum name, its name on the wire, the source it reproduces
 * (repository, commit, file), whether its terms are means over the batch (keras divides by
 * the batch size m; darknet's delta is per image and darknet applies 1/batch in its weight
 * update, so its loss and gradient are sums). The functions of a row are in definitions.c. */
#define YL_DEFINITION_MAP(X)                                                                 \
    X(KERAS, "keras-yolo3", "qqwweee/keras-yolo3 yolo3/model.py yolo_loss", 1)                \
    X(DARKNET, "darknet", "pjreddie/darknet 481d9d98 src/yolo_layer.c forward_yolo_layer", 0)

typedef enum {
#define YL__DEF_ENUM(name, wire, source, mean) YL_DEF_##name,
    YL_DEFINITION_MAP(YL__DEF_ENUM)
#undef YL__DEF_ENUM
    YL_NUM_DEFINITIONS
} yl_definition;

/* "keras-yolo3", "darknet"; NULL for an unknown definition. */
const char *yl_definition_name(int definition);
/* The source a definition reproduces (repository, commit, file), or NULL. */
const char *yl_definition_source(int definition);
/* The definition for a wire name, or -1. */
int yl_definition_from_name(const char *name);

#define YL_MAX_ANCHORS 18          /* all layers together */
#define YL_MAX_LAYER_ANCHORS 9     /* anchors of one layer */

/* darknet's [yolo] parameters (cfg/yolov3.cfg's values by default). */
typedef struct {
    double truth_thresh; /* a prediction whose best IoU exceeds it becomes a positive (1) */
    int max_truths;      /* darknet's max: truths read per image (90) */
    int fp32;            /* 1: darknet's float32 arithmetic, its deltas bit for bit;
                            0: the same formulas in float64 */
} yl_darknet_params;

/* THE MODEL DESCRIPTOR: the definition, the layers (coarsest grid first) with their anchors,
 * the stride of each layer (input pixels per cell: the input is stride * grid), the class
 * count and the definition's hyper-parameters. yl_config_default fills keras-yolo3's rows
 * (which the original two-argument form always meant), yl_config_model any definition's.
 * keras-yolo3's layers follow from its anchor count as keras-yolo3 derives them (9: three
 * layers, masks 678/345/012, strides 32/16/8; 6: two, masks 345/123, strides 32/16), so for
 * it only num_anchors, anchors and ignore_thresh are read. */
typedef struct {
    int num_anchors;      /* anchors of all layers: keras 9 (3 layers) or 6 (tiny, 2 layers) */
    double anchors[2 * YL_MAX_ANCHORS]; /* w,h pairs in input pixels, anchor n at [2n], [2n+1] */
    double ignore_thresh; /* keras's default 0.5, darknet's (yolov3.cfg) 0.7 */
    int definition;       /* yl_definition; 0 = keras-yolo3 */
    int num_layers;       /* L */
    int layer_anchors[YL_MAX_LAYERS];                /* anchors of layer l */
    int mask[YL_MAX_LAYERS][YL_MAX_LAYER_ANCHORS];   /* their indices into anchors */
    int stride[YL_MAX_LAYERS];                       /* input pixels per grid cell */
    int num_classes;      /* 0: whatever the outputs hold (5 + C channels per anchor) */
    yl_darknet_params darknet;
} yl_config;

/* num_anchors 9: YOLOv3's anchors; 6: yolov3-tiny's. ignore_thresh 0.5. keras-yolo3. */
int yl_config_default(yl_config *cfg, int num_anchors);
/* The default model of a definition: 9 anchors (yolov3) or 6 (yolov3-tiny) with their
 * source's anchors, masks, strides and hyper-parameters (darknet: cfg/yolov3.cfg and
 * cfg/yolov3-tiny.cfg, ignore_thresh 0.7, truth_thresh 1, max 90, float32 arithmetic).
 * YL_EINVAL for an unknown definition or anchor count. */
int yl_config_model(yl_config *cfg, int definition, int num_anchors);

/* A validated batch: shapes, dtypes and config checked, derived sizes computed. Values
 * (non-finite numbers, bad boxes, missing compact rows) are checked per image by yl_image.
 * Treat as read-only. */
typedef struct {
    yl_config cfg;
    int num_layers;                    /* L */
    int num_classes;                   /* C */
    int64_t batch;                     /* B, also keras's m */
    int64_t grid_h[YL_MAX_LAYERS];     /* H_l */
    int64_t grid_w[YL_MAX_LAYERS];     /* W_l */
    double input_h, input_w;           /* 32*H_0, 32*W_0 */
    int mask[YL_MAX_LAYERS][YL_NUM_ANCHORS_PER_LAYER]; /* anchor indices per layer */
    yl_tensor output[YL_MAX_LAYERS];   /* dense: the raw output; compact: the box tensor */
    int has_boxes;                     /* 1: boxes, 0: y_true */
    yl_tensor boxes;                   /* (B, T, 5) */
    yl_tensor y_true[YL_MAX_LAYERS];   /* (B, H_l, W_l, 3, 5+C) or (B, H_l, W_l, 3*(5+C)) */
    int64_t layer_elems[YL_MAX_LAYERS]; /* H_l*W_l*3*(5+C): elements of a dense output_l
                                           per image (compact problems too) */
    int64_t anchors[YL_MAX_LAYERS];    /* H_l*W_l*3: anchors per image */
    int compact;                       /* 1: made by yl_problem_init_compact */
    yl_tensor rows[YL_MAX_LAYERS];     /* compact: (N_l, 5+C) */
    const int64_t *row_index[YL_MAX_LAYERS]; /* compact: N_l flat anchor indices */
    int64_t n_rows[YL_MAX_LAYERS];     /* compact: N_l */
    int kernel;                        /* YL_KERNEL_*: AUTO after init */
    size_t scratch_size;
} yl_problem;

/* Which build of the per-element kernels yl_image runs. AUTO (what init sets): AVX2 where
 * the CPU has it, else SCALAR. SCALAR is the reference branch; every branch gives the same
 * bits (tested), so this only ever changes the speed. */
#define YL_KERNEL_AUTO 0
#define YL_KERNEL_SCALAR 1
#define YL_KERNEL_AVX2 2
/* "scalar" or "avx2": the kernels p's yl_image calls run on this CPU. */
const char *yl_kernel_name(const yl_problem *p);

/* Validate a batch. outputs: n_outputs = L raw outputs, 4-D (B,H,W,3*(5+C)) or 5-D
 * (B,H,W,3,5+C), any float dtype. Ground truth: exactly one of boxes (B,T,5; FP32 or FP64;
 * absolute pixels x_min,y_min,x_max,y_max,class) or y_true (n_y_true = L dense tensors,
 * 4-D or 5-D, any float dtype). Returns YL_OK or an error with err filled (err may be NULL). */
int yl_problem_init(yl_problem *p, const yl_config *cfg, const yl_tensor *outputs,
                    int n_outputs, const yl_tensor *boxes, const yl_tensor *y_true,
                    int n_y_true, yl_error *err);

/* Compact layout of one layer's raw output: the 5 box/objectness channels of every anchor plus
   the full rows of chosen anchors (a superset of the truth anchors; extra rows are allowed and
   ignored). A truth anchor is read entirely from its row, every other anchor from box. */
typedef struct {
    yl_tensor box;          /* (B, H, W, 3, 5): t_x, t_y, t_w, t_h, t_o; any float dtype */
    yl_tensor rows;         /* (N, 5+C); any float dtype (may differ from box's); N may be 0
                               (then data may be NULL; shape[1] still gives 5+C) */
    const int64_t *index;   /* N flat anchor indices ((b*H + j)*W + i)*3 + k, strictly increasing */
} yl_compact_layer;

/* yl_problem_init for compact outputs (see the top of this file): n_layers = L layers, the
 * ground truth as for yl_problem_init. Shapes, dtypes and the index (in range, strictly
 * increasing) are checked here, naming output_<l>_box, output_<l>_rows, output_<l>_index[n];
 * whether every truth anchor has a row is checked by yl_image (YL_ENOROW). */
int yl_problem_init_compact(yl_problem *p, const yl_config *cfg, const yl_compact_layer *layers,
                            int n_layers, const yl_tensor *boxes, const yl_tensor *y_true,
                            int n_y_true, yl_error *err);

/* Bytes of scratch one yl_image call needs (also p->scratch_size). */
size_t yl_scratch_size(const yl_problem *p);

/* Per-layer sums of one image, before the division by the batch size. */
typedef struct {
    double terms[4];      /* xy, wh, confidence, class */
    int64_t count;        /* anchors with an assigned truth (nonzero objectness) */
    double sum_iou;       /* IoU(prediction, its truth) over those */
    double sum_class;     /* sigmoid of class logits whose target is 1 */
    int64_t n_class;      /* how many such logits */
    double sum_obj;       /* sigmoid(t_o) over truth anchors */
    double sum_noobj;     /* sigmoid(t_o) over anchors without truth */
    int64_t n_noobj;
    int64_t n_recall50, n_recall75;
    int64_t ignored;      /* anchors without truth whose confidence loss is ignored */
    double cost;          /* darknet: sum of its delta^2 (0 for keras-yolo3) */
} yl_layer_sums;

typedef struct {
    int num_layers;
    yl_layer_sums layer[YL_MAX_LAYERS];
} yl_image_result;

/* Where gradients go. dtype YL_F32 (float) or YL_F64 (double). A NULL layer[l] skips
 * layer l's gradient. Gradients are computed in double; YL_F32 rounds them once on store. */
typedef struct {
    int dtype;                   /* YL_F32 or YL_F64 */
    void *layer[YL_MAX_LAYERS];  /* dense problem: as many elements as output[l] (whole batch);
                                    compact problem: (B, H_l, W_l, 3): d loss / d t_o of every anchor */
    void *rows[YL_MAX_LAYERS];   /* compact problem only: (N_l, 5+C), the full gradient row of each sent row
                                    (rows of anchors without a truth: zeros but channel 4 = that anchor's t_o gradient);
                                    required when layer[l] is set and N_l > 0 */
} yl_grads;

/* Compute image b. scratch: yl_scratch_size(p) bytes, any alignment the caller's malloc
 * gives. grads: NULL for loss only; only image b's part is written (its slice of layer[l],
 * the rows whose index lies in image b). Pure: same arguments, same bytes out. Errors name
 * the tensor, image and row or element; after an error the image's gradient may be partly
 * written, and out is unspecified. */
int yl_image(const yl_problem *p, int64_t b, void *scratch, const yl_grads *grads,
             yl_image_result *out, yl_error *err);

/* The batch result. keras-yolo3: terms are means over the batch (/ B), its statistics as
 * docs/semantics.md lists them. darknet: sums over the batch (no 1/B, as its delta), and
 * the statistics its forward_yolo_layer prints per layer: Avg IOU, Class, Obj, No Obj (the
 * mean sigmoid(t_o) over ALL anchors), .5R, .75R, count; IGNORED counts the anchors whose
 * objectness delta its ignore rule zeroed (and no truth set again). */
#define YL_STAT_COUNT 0
#define YL_STAT_AVG_IOU 1
#define YL_STAT_AVG_CLASS 2
#define YL_STAT_AVG_OBJ 3
#define YL_STAT_AVG_NOOBJ 4
#define YL_STAT_RECALL50 5
#define YL_STAT_RECALL75 6
#define YL_STAT_IGNORED 7
#define YL_NUM_STATS 8

typedef struct {
    int num_layers;
    double loss;                            /* sum of terms */
    double terms[4];                        /* xy, wh, confidence, class; each / B */
    double layer_terms[YL_MAX_LAYERS][4];   /* per layer, / B */
    double stats[YL_MAX_LAYERS][YL_NUM_STATS];
    double cost[YL_MAX_LAYERS];             /* darknet's cost per layer (sum of delta^2 over the
                                               batch, what it prints as the loss); 0 for keras */
} yl_result;

/* Reduce per-image results (p->batch of them, image order) into r. */
void yl_reduce(const yl_problem *p, const yl_image_result *images, yl_result *r);

/* The four terms of one image (xy, wh, confidence, class; not divided by B). */
void yl_image_terms(const yl_image_result *img, double out[4]);

/* Whole batch on nthreads threads (<= 0: 1). grads as for yl_image (NULL: loss only).
 * image_terms: NULL or B*4 doubles, image b's terms at [4b]. On error r and image_terms
 * are not written but gradients may be partly written, and the error is that of the lowest
 * failing image. */
int yl_compute(const yl_problem *p, int nthreads, const yl_grads *grads, yl_result *r,
               double *image_terms, yl_error *err);

/* preprocess_true_boxes: write the dense y_true keras would build from p's boxes into L
 * fp32 buffers of shape (B, H_l, W_l, 3, 5+C), fully overwritten. Only for box problems. */
int yl_boxes_to_y_true(const yl_problem *p, float *const *y_true, yl_error *err);

/* Conversions used for every input, exposed for clients and tests. */
double yl_half_to_double(uint16_t h);
double yl_bf16_to_double(uint16_t h);
uint16_t yl_double_to_half(double x);  /* round to nearest even */
uint16_t yl_double_to_bf16(double x);  /* round to nearest even */

#ifdef __cplusplus
}
#endif
#endif /* YOLOLOSS_H */
