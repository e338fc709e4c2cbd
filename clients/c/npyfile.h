/*
 * npyfile.h: read and write NumPy .npy files for the yololoss CLI: format 1.0, 2.0 and 3.0
 * headers, little-endian <f2 <f4 <f8 <u2 (bfloat16 bit patterns), C order, up to 5
 * dimensions. The one .npy implementation of the project: the CLI ships it, and the core's
 * tests (tests/core/golden_case.c) read and write their cases with it.
 *
 * Functions return 0, or -1 with a complete message in err (errlen bytes).
 */
#ifndef YLC_NPYFILE_H
#define YLC_NPYFILE_H

#include <stddef.h>
#include <stdint.h>

#define NPYF_MAX_DIMS 5

typedef enum { NPYF_F16 = 0, NPYF_F32 = 1, NPYF_F64 = 2, NPYF_U16 = 3 } npyf_dtype;

typedef struct {
    int dtype;                    /* npyf_dtype */
    size_t elem_size;             /* 2, 4 or 8 */
    int ndim;
    int64_t shape[NPYF_MAX_DIMS];
    int64_t count;                /* product of shape */
    void *data;                   /* count * elem_size bytes, malloc'd */
} npyf_array;

/* "<f2", "<f4", "<f8", "<u2", or "?" for an unknown dtype. */
const char *npyf_descr(int dtype);
int npyf_read(const char *path, npyf_array *out, char *err, size_t errlen);
void npyf_free(npyf_array *a);
/* descr: "<f2", "<f4", "<f8" or "<u2". */
int npyf_write(const char *path, const char *descr, int ndim, const int64_t *shape,
               const void *data, char *err, size_t errlen);

#endif /* YLC_NPYFILE_H */
