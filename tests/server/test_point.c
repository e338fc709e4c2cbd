/*
 * test_point.c: how a point's per-layer matrices (layer terms, statistics) are stored as
 * text by both history backends (server/monitor/point.c, linked in): finite values come
 * back bit for bit, a non-finite one is null and reads back as NaN (the API writes null
 * again), and text that is short or not such a matrix reads as NaN, never as a made-up 0.
 * (The SQLite backend once had its own copy that dropped a non-finite value from its row,
 * so every later value of the row moved one place left; PostgreSQL's copy wrote 0.)
 */
#include "harness.h"

#include "../../server/monitor/history.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(matrix_text_round_trips)
{
    double v[2][3] = {{0.1, -1e-300, 3.0000000000000004}, {NAN, INFINITY, 7.5}};
    char *text = yls_matrix_json(&v[0][0], 2, 3);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "[[0.10000000000000001,-1e-300,3.0000000000000004],"
                           "[null,null,7.5]]");
    double back[2][3];
    yls_matrix_parse(text, &back[0][0], 2, 3);
    for (int j = 0; j < 3; j++)
        ck_assert_mem_eq(&back[0][j], &v[0][j], sizeof(double)); /* bit for bit */
    ck_assert(isnan(back[1][0]) && isnan(back[1][1]));
    ck_assert_double_eq(back[1][2], 7.5);
    free(text);
}
END_TEST

START_TEST(matrix_text_missing_values_are_nan)
{
    double back[2][2];
    yls_matrix_parse("[[1.5]]", &back[0][0], 2, 2); /* short row, missing row */
    ck_assert_double_eq(back[0][0], 1.5);
    ck_assert(isnan(back[0][1]) && isnan(back[1][0]) && isnan(back[1][1]));
    yls_matrix_parse("not json", &back[0][0], 2, 2);
    ck_assert(isnan(back[0][0]) && isnan(back[1][1]));
    yls_matrix_parse(NULL, &back[0][0], 2, 2);
    ck_assert(isnan(back[0][0]));
    yls_matrix_parse("[[\"1\",true]]", &back[0][0], 1, 2);
    ck_assert(isnan(back[0][0]) && isnan(back[0][1]));
}
END_TEST

Suite *yt_suite_point(void)
{
    Suite *s = suite_create("point");
    TCase *tc = tcase_create("point");
    tcase_add_test(tc, matrix_text_round_trips);
    tcase_add_test(tc, matrix_text_missing_values_are_nan);
    suite_add_tcase(s, tc);
    return s;
}
