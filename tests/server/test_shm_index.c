/*
 * test_shm_index.c: a compact request's output_l_index read from a shared-memory region is
 * the daemon's own copy (server/v2/infer_request.c and shm.c, linked in). The index steers
 * where the core (the rows of anchors without a truth) and the response (grad_l, the dense
 * gradient) write; it is checked once, when the problem is made. A client that rewrites
 * the region after that check must not move those writes: here the region is rewritten
 * between the check and the computation, deterministically, and the parsed index still
 * holds the values checked, so the computation writes where it should.
 */
#include "harness.h"

#include "../../server/v2/infer.h"
#include "../../server/v2/shm.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* yolov3-tiny, compact, one image: layer 0 a 1x1 grid, layer 1 2x2, one class; one row per
 * layer (anchor 1 of layer 0, anchor 5 of layer 1), both indices in the region. */
static const char request_fmt[] =
    "{\"inputs\": ["
    "{\"name\": \"output_0_box\", \"datatype\": \"FP32\", \"shape\": [1,1,1,3,5], \"data\": "
    "[0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0]},"
    "{\"name\": \"output_0_rows\", \"datatype\": \"FP32\", \"shape\": [1,6], \"data\": "
    "[0,0,0,0,0.5,0]},"
    "{\"name\": \"output_0_index\", \"datatype\": \"INT64\", \"shape\": [1], \"parameters\": "
    "{\"shared_memory_region\": \"%s\", \"shared_memory_offset\": 0, "
    "\"shared_memory_byte_size\": 8}},"
    "{\"name\": \"output_1_box\", \"datatype\": \"FP32\", \"shape\": [1,2,2,3,5], \"data\": "
    "[0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0,"
    " 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0, 0,0,0,0,0]},"
    "{\"name\": \"output_1_rows\", \"datatype\": \"FP32\", \"shape\": [1,6], \"data\": "
    "[0,0,0,0,-0.5,0]},"
    "{\"name\": \"output_1_index\", \"datatype\": \"INT64\", \"shape\": [1], \"parameters\": "
    "{\"shared_memory_region\": \"%s\", \"shared_memory_offset\": 8, "
    "\"shared_memory_byte_size\": 8}},"
    "{\"name\": \"boxes\", \"datatype\": \"FP32\", \"shape\": [1,1,5], \"data\": [0,0,0,0,0]}"
    "]}";

START_TEST(index_in_region_is_copied_before_its_check)
{
    char key[64], name[32], err[128];
    snprintf(key, sizeof key, "/yl-test-index-%d", (int)getpid());
    snprintf(name, sizeof name, "idx%d", (int)getpid());
    shm_unlink(key);
    int fd = shm_open(key, O_RDWR | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, 4096), 0);
    int64_t *region = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(region, MAP_FAILED);
    close(fd);
    region[0] = 1;
    region[1] = 5;

    yls_models models;
    ck_assert_int_eq(yls_models_init(&models, NULL, err, sizeof err), 0);
    const yls_model *m = yls_models_find(&models, "yolov3-tiny", strlen("yolov3-tiny"));
    ck_assert_ptr_nonnull(m);
    yls_shm *shm = yls_shm_new();
    ck_assert_ptr_nonnull(shm);
    yls_fail f = {0};
    ck_assert_msg(yls_shm_register(shm, name, key, 0, 4096, &f) == 0, "%s", f.msg);

    char body[sizeof request_fmt + 64];
    int len = snprintf(body, sizeof body, request_fmt, name, name);
    yls_infer_input in;
    int rc = yls_infer_parse(&in, m, (const uint8_t *)body, (size_t)len, -1, shm, &f);
    ck_assert_msg(rc == 0, "parse: %d %s", f.status, f.msg);
    ck_assert(in.compact);

    yl_compact_layer cl[2];
    for (int l = 0; l < 2; l++)
        cl[l] = (yl_compact_layer){in.cl[l].box, in.cl[l].rows, in.cl[l].index};
    yl_problem p;
    yl_error e;
    ck_assert_msg(yl_problem_init_compact(&p, &in.cfg, cl, 2, &in.boxes, NULL, 0, &e) == YL_OK,
                  "%s", e.msg);

    /* the client rewrites the region once the indices are checked */
    region[0] = (int64_t)1 << 40;
    region[1] = -((int64_t)1 << 40);
    ck_assert_int_eq(in.cl[0].index[0], 1);
    ck_assert_int_eq(in.cl[1].index[0], 5);

    /* and the computation writes where the checked indices say: each row of an anchor
     * without a truth is zero but its t_o gradient, the anchor's in grad_l_obj */
    float obj0[3], obj1[12], rows0[6], rows1[6];
    memset(rows0, 0x7f, sizeof rows0);
    memset(rows1, 0x7f, sizeof rows1);
    yl_grads g = {.dtype = YL_F32, .layer = {obj0, obj1}, .rows = {rows0, rows1}};
    yl_result res;
    ck_assert_msg(yl_compute(&p, 1, &g, &res, NULL, &e) == YL_OK, "%s", e.msg);
    for (int c = 0; c < 6; c++) {
        ck_assert(c == 4 ? rows0[c] == obj0[1] : rows0[c] == 0.0f);
        ck_assert(c == 4 ? rows1[c] == obj1[5] : rows1[c] == 0.0f);
    }
    ck_assert(rows0[4] > 0 && rows1[4] > 0); /* sigmoid(t_o) / B: there is a gradient */

    yls_infer_input_free(&in);
    yls_shm_free(shm);
    yls_models_free(&models);
    munmap(region, 4096);
    shm_unlink(key);
}
END_TEST

Suite *yt_suite_shm_index(void)
{
    Suite *s = suite_create("shm-index");
    TCase *tc = tcase_create("copy");
    tcase_add_test(tc, index_in_region_is_copied_before_its_check);
    suite_add_tcase(s, tc);
    return s;
}
