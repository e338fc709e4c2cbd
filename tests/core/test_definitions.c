/* test_definitions.c: the model descriptor and the definition table. */
#include <string.h>

#include "suites.h"
#include "yololoss.h"

/* keras-yolo3's row: the two-argument default and yl_config_model agree, and the layers
 * they describe are keras-yolo3's (masks 678/345/012 or 345/123, strides 32/16/8). */
START_TEST(keras_row_is_the_default)
{
    yl_config a, b;
    ck_assert_int_eq(yl_config_default(&a, 9), YL_OK);
    ck_assert_int_eq(yl_config_model(&b, YL_DEF_KERAS, 9), YL_OK);
    ck_assert(memcmp(&a, &b, sizeof a) == 0);
    ck_assert_int_eq(a.definition, YL_DEF_KERAS);
    ck_assert_int_eq(a.num_layers, 3);
    const int want9[3][3] = {{6, 7, 8}, {3, 4, 5}, {0, 1, 2}};
    for (int l = 0; l < 3; l++) {
        ck_assert_int_eq(a.layer_anchors[l], 3);
        ck_assert_int_eq(a.stride[l], 32 >> l);
        for (int k = 0; k < 3; k++)
            ck_assert_int_eq(a.mask[l][k], want9[l][k]);
    }
    ck_assert_int_eq(yl_config_model(&b, YL_DEF_KERAS, 6), YL_OK);
    ck_assert_int_eq(b.num_layers, 2);
    ck_assert_int_eq(b.mask[1][0], 1);
    ck_assert_int_eq(b.mask[1][2], 3);
    ck_assert_int_eq(b.stride[1], 16);
    ck_assert_int_eq(yl_config_model(&b, YL_DEF_KERAS, 7), YL_EINVAL);
    ck_assert_int_eq(yl_config_model(&b, YL_NUM_DEFINITIONS, 9), YL_EINVAL);
    ck_assert_int_eq(yl_config_model(&b, -1, 9), YL_EINVAL);
}
END_TEST

START_TEST(definition_names_round_trip)
{
    for (int d = 0; d < YL_NUM_DEFINITIONS; d++) {
        ck_assert_ptr_nonnull(yl_definition_name(d));
        ck_assert_ptr_nonnull(yl_definition_source(d));
        ck_assert_int_eq(yl_definition_from_name(yl_definition_name(d)), d);
    }
    ck_assert_str_eq(yl_definition_name(YL_DEF_KERAS), "keras-yolo3");
    ck_assert_ptr_null(yl_definition_name(YL_NUM_DEFINITIONS));
    ck_assert_int_eq(yl_definition_from_name("yolo"), -1);
    ck_assert_int_eq(yl_definition_from_name(NULL), -1);
}
END_TEST

/* An unknown definition and a class count the outputs do not hold are refused by name. */
START_TEST(descriptor_errors_name_the_field)
{
    float out0[1 * 2 * 2 * 18] = {0}, out1[1 * 4 * 4 * 18] = {0}, out2[1 * 8 * 8 * 18] = {0};
    float boxes[5] = {0};
    yl_tensor o[3] = {{.data = out0, .dtype = YL_F32, .ndim = 4, .shape = {1, 2, 2, 18}},
                      {.data = out1, .dtype = YL_F32, .ndim = 4, .shape = {1, 4, 4, 18}},
                      {.data = out2, .dtype = YL_F32, .ndim = 4, .shape = {1, 8, 8, 18}}};
    yl_tensor bx = {.data = boxes, .dtype = YL_F32, .ndim = 3, .shape = {1, 1, 5}};
    yl_config cfg;
    yl_problem p;
    yl_error e;
    yl_config_default(&cfg, 9);
    ck_assert_int_eq(yl_problem_init(&p, &cfg, o, 3, &bx, NULL, 0, &e), YL_OK);
    ck_assert_int_eq(p.num_classes, 1);
    ck_assert_double_eq(p.input_w, 64.0);
    cfg.definition = 99;
    ck_assert_int_eq(yl_problem_init(&p, &cfg, o, 3, &bx, NULL, 0, &e), YL_EINVAL);
    ck_assert_str_eq(e.tensor, "definition");
    yl_config_default(&cfg, 9);
    cfg.num_classes = 80;
    ck_assert_int_eq(yl_problem_init(&p, &cfg, o, 3, &bx, NULL, 0, &e), YL_ESHAPE);
    ck_assert(strstr(e.msg, "the model has 80") != NULL);
}
END_TEST

Suite *definitions_suite(void)
{
    Suite *s = suite_create("definitions");
    TCase *t = tcase_create("descriptor");
    tcase_add_test(t, keras_row_is_the_default);
    tcase_add_test(t, definition_names_round_trip);
    tcase_add_test(t, descriptor_errors_name_the_field);
    suite_add_tcase(s, t);
    return s;
}
