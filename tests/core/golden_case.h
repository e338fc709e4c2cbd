/*
 * golden_case.h: the loader and runner of the golden case directories that
 * tests/reference/make_golden.py writes (format described there), on top of the project's
 * one .npy reader and writer (clients/c/npyfile.h). Used by build/eval_case and by the
 * Check suite in test_golden.c.
 *
 * Every function that can fail returns 0 on success or -1 with a complete message in
 * err (errlen bytes, may be NULL). Arrays own their data (malloc'd); npyf_free and
 * case_free release it and accept zeroed or already freed structs.
 */
#ifndef YL_TESTS_GOLDEN_CASE_H
#define YL_TESTS_GOLDEN_CASE_H

#include <stddef.h>
#include <stdint.h>

#include "npyfile.h" /* clients/c: the .npy reader and writer */
#include "yololoss.h"

typedef struct {
    char dir[512];
    yl_config cfg;
    int num_layers;               /* num_anchors / 3 */
    npyf_array output[YL_MAX_LAYERS];
    int output_bf16[YL_MAX_LAYERS];
    int has_boxes;
    npyf_array boxes;
    npyf_array y_true[YL_MAX_LAYERS];
    int y_true_bf16[YL_MAX_LAYERS];
    yl_tensor t_output[YL_MAX_LAYERS]; /* views of the arrays above */
    yl_tensor t_boxes;
    yl_tensor t_y_true[YL_MAX_LAYERS];
    int is_error;                 /* expect_error.txt present */
    char expect_code[32];         /* "YL_ECLASS" */
    char expect_substr[200];      /* what the message must contain */
} golden_case;

/* Load a case directory: config.txt, output_<l>.npy, boxes.npy or y_true_<l>.npy, and
 * expect_error.txt when present (expectation arrays are read by the caller). */
int case_load(const char *dir, golden_case *c, char *err, size_t errlen);
void case_free(golden_case *c);

/* What the core computed for a case. */
typedef struct {
    int num_layers;
    int64_t batch;
    yl_result r;
    double *image_terms;                  /* batch * 4 */
    float *grad[YL_MAX_LAYERS];           /* CASE_GRAD_F32: same element count as output[l] */
    double *grad64[YL_MAX_LAYERS];        /* CASE_GRAD_F64: the same, in double */
    int64_t grad_count[YL_MAX_LAYERS];
    float *y_true[YL_MAX_LAYERS];         /* boxes cases: (B,H,W,3,5+C) fp32 */
    int64_t y_true_count[YL_MAX_LAYERS];
    int64_t y_true_shape[YL_MAX_LAYERS][5];
} case_output;

/* Gradients: none, fp32 or fp64 (yl_grads.dtype). */
#define CASE_GRAD_NONE 0
#define CASE_GRAD_F32 1
#define CASE_GRAD_F64 2

/* yl_problem_init + yl_compute on nthreads threads (with want_grad gradients) and,
 * for boxes cases, yl_boxes_to_y_true. Returns YL_OK or the core's error code with err
 * filled; out is filled on success and must be released with case_output_free either way.
 * A failure of the harness itself (out of memory) returns YL_ENOMEM with a message. */
int case_run(const golden_case *c, int nthreads, int want_grad, case_output *out,
             yl_error *err);
void case_output_free(case_output *out);

#endif /* YL_TESTS_GOLDEN_CASE_H */
