/* test_definitions.c: the model descriptor and the definition table. */
#include <math.h>
#include <stdlib.h>
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


/* ---------------------------------------------------------------- darknet */

START_TEST(darknet_defaults_are_its_cfgs)
{
    yl_config c;
    ck_assert_int_eq(yl_config_model(&c, YL_DEF_DARKNET, 9), YL_OK);
    ck_assert_int_eq(c.definition, YL_DEF_DARKNET);
    ck_assert_double_eq(c.ignore_thresh, 0.7);
    ck_assert_double_eq(c.darknet.truth_thresh, 1.0);
    ck_assert_int_eq(c.darknet.max_truths, 90);
    ck_assert_int_eq(c.darknet.fp32, 1);
    ck_assert_int_eq(c.mask[0][0], 6);
    ck_assert_int_eq(c.mask[2][2], 2);
    ck_assert_double_eq(c.anchors[17], 326);
    ck_assert_int_eq(yl_config_model(&c, YL_DEF_DARKNET, 6), YL_OK);
    /* yolov3-tiny.cfg: masks 3,4,5 and 0,1,2 (keras-yolo3's tiny uses 1,2,3) */
    ck_assert_int_eq(c.num_layers, 2);
    ck_assert_int_eq(c.mask[0][0], 3);
    ck_assert_int_eq(c.mask[1][0], 0);
    ck_assert_double_eq(c.anchors[11], 319);
}
END_TEST

/* A 2-layer darknet problem (tiny masks), B images, its outputs random with a prediction
 * planted on each truth's slot so the ignore rule fires. */
typedef struct {
    yl_config cfg;
    int B, C, T;
    int64_t H[2], W[2];
    float *out[2], *truths;
    yl_tensor t_out[2], t_truths;
} dk_case;

static uint64_t rng_state = 12345;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void dk_make(dk_case *k, int B, int C)
{
    memset(k, 0, sizeof *k);
    yl_config_model(&k->cfg, YL_DEF_DARKNET, 6);
    k->cfg.ignore_thresh = 0.5;
    k->cfg.darknet.truth_thresh = 0.8;
    k->B = B, k->C = C, k->T = 6;
    k->H[0] = 3, k->W[0] = 4, k->H[1] = 6, k->W[1] = 8;
    k->truths = calloc((size_t)(B * k->T * 5), sizeof(float));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 4; t++) {
            float *r = k->truths + (b * k->T + t) * 5;
            r[0] = (float)(0.05 + 0.9 * urand());
            r[1] = (float)(0.05 + 0.9 * urand());
            r[2] = (float)(0.05 + 0.6 * urand());
            r[3] = (float)(0.05 + 0.6 * urand());
            r[4] = (float)(int)(urand() * C);
        }
    for (int l = 0; l < 2; l++) {
        int64_t n = B * k->H[l] * k->W[l] * 3 * (5 + C);
        k->out[l] = malloc((size_t)n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            k->out[l][i] = (float)(urand() * 4 - 2);
        k->t_out[l] = (yl_tensor){.data = k->out[l], .dtype = YL_F32, .ndim = 4,
                                  .shape = {B, k->H[l], k->W[l], 3 * (5 + C)}};
    }
    k->t_truths = (yl_tensor){.data = k->truths, .dtype = YL_F32, .ndim = 3, .shape = {B, k->T, 5}};
}

static void dk_free(dk_case *k)
{
    free(k->out[0]);
    free(k->out[1]);
    free(k->truths);
}

/* Dense results on 1 and 3 threads, and a compact problem with rows for every anchor, give
 * the same bits (result and gradients); dropping the rows of one image's truth anchors is
 * YL_ENOROW naming the layer's rows. */
START_TEST(darknet_compact_equals_dense_and_threads_agree)
{
    dk_case k;
    dk_make(&k, 3, 4);
    yl_problem p;
    yl_error e;
    ck_assert_int_eq(yl_problem_init(&p, &k.cfg, k.t_out, 2, &k.t_truths, NULL, 0, &e), YL_OK);
    int64_t n0 = p.layer_elems[0] * k.B, n1 = p.layer_elems[1] * k.B;
    float *g1[2] = {malloc((size_t)n0 * 4), malloc((size_t)n1 * 4)};
    float *g3[2] = {malloc((size_t)n0 * 4), malloc((size_t)n1 * 4)};
    yl_grads ga = {.dtype = YL_F32, .layer = {g1[0], g1[1]}};
    yl_grads gb = {.dtype = YL_F32, .layer = {g3[0], g3[1]}};
    yl_result r1, r3, rc;
    ck_assert_int_eq(yl_compute(&p, 1, &ga, &r1, NULL, &e), YL_OK);
    ck_assert_int_eq(yl_compute(&p, 3, &gb, &r3, NULL, &e), YL_OK);
    ck_assert(memcmp(&r1, &r3, sizeof r1) == 0);
    ck_assert(memcmp(g1[0], g3[0], (size_t)n0 * 4) == 0);
    ck_assert(memcmp(g1[1], g3[1], (size_t)n1 * 4) == 0);
    ck_assert(r1.stats[0][YL_STAT_COUNT] + r1.stats[1][YL_STAT_COUNT] > 0);
    ck_assert(r1.cost[0] > 0 && r1.cost[1] > 0);

    /* compact: box (B,H,W,3,5), rows (every anchor) */
    yl_compact_layer cl[2];
    float *box[2], *gobj[2], *grow[2];
    int64_t *idx[2];
    for (int l = 0; l < 2; l++) {
        int64_t A = k.B * p.anchors[l], ch = 5 + k.C;
        box[l] = malloc((size_t)(A * 5) * 4);
        idx[l] = malloc((size_t)A * sizeof(int64_t));
        gobj[l] = malloc((size_t)A * 4);
        grow[l] = malloc((size_t)(A * ch) * 4);
        for (int64_t a = 0; a < A; a++) {
            memcpy(box[l] + a * 5, k.out[l] + a * ch, 5 * sizeof(float));
            idx[l][a] = a;
        }
        cl[l] = (yl_compact_layer){
            .box = {.data = box[l], .dtype = YL_F32, .ndim = 5,
                    .shape = {k.B, k.H[l], k.W[l], 3, 5}},
            .rows = {.data = k.out[l], .dtype = YL_F32, .ndim = 2, .shape = {A, ch}},
            .index = idx[l]};
    }
    yl_problem pc;
    ck_assert_int_eq(yl_problem_init_compact(&pc, &k.cfg, cl, 2, &k.t_truths, NULL, 0, &e), YL_OK);
    yl_grads gc = {.dtype = YL_F32, .layer = {gobj[0], gobj[1]}, .rows = {grow[0], grow[1]}};
    ck_assert_int_eq(yl_compute(&pc, 2, &gc, &rc, NULL, &e), YL_OK);
    ck_assert(memcmp(&r1, &rc, sizeof r1) == 0);
    ck_assert(memcmp(grow[0], g1[0], (size_t)n0 * 4) == 0);
    ck_assert(memcmp(grow[1], g1[1], (size_t)n1 * 4) == 0);
    for (int l = 0; l < 2; l++)
        for (int64_t a = 0; a < k.B * p.anchors[l]; a++)
            ck_assert(gobj[l][a] == g1[l][a * (5 + k.C) + 4]);

    /* the rows of one layer without its truth anchors' (their box gradient is nonzero) */
    const int L = r1.stats[0][YL_STAT_COUNT] > 0 ? 0 : 1;
    int64_t kept = 0, AL = k.B * p.anchors[L], ch = 5 + k.C;
    float *rows = malloc((size_t)(AL * ch) * 4);
    for (int64_t a = 0; a < AL; a++) {
        int is_truth = 0;
        for (int q = 0; q < 4; q++)
            is_truth |= g1[L][a * ch + q] != 0;
        if (is_truth)
            continue;
        memcpy(rows + kept * ch, k.out[L] + a * ch, (size_t)ch * 4);
        idx[L][kept++] = a;
    }
    ck_assert(kept < AL);
    cl[L].rows.data = rows;
    cl[L].rows.shape[0] = kept;
    ck_assert_int_eq(yl_problem_init_compact(&pc, &k.cfg, cl, 2, &k.t_truths, NULL, 0, &e), YL_OK);
    ck_assert_int_eq(yl_compute(&pc, 1, &gc, &rc, NULL, &e), YL_ENOROW);
    ck_assert_str_eq(e.tensor, L ? "output_1_rows" : "output_0_rows");
    ck_assert(strstr(e.msg, "darknet gives it") != NULL);
    free(rows);
    for (int l = 0; l < 2; l++) {
        free(box[l]), free(idx[l]), free(gobj[l]), free(grow[l]);
        free(g1[l]), free(g3[l]);
    }
    dk_free(&k);
}
END_TEST

/* Bad truths are refused naming truths[b][t]; the list ends at x == 0 (a bad row after it is
 * never read); the definition's parameters are checked by name. */
START_TEST(darknet_truth_errors_name_the_row)
{
    dk_case k;
    dk_make(&k, 2, 3);
    yl_problem p;
    yl_error e;
    yl_result r;
    float *row = k.truths + (1 * k.T + 2) * 5;
    struct {
        int field;
        float value;
        int code;
        const char *text;
    } bad[] = {
        {4, 3, YL_ECLASS, "truths[1][2]: class id 3"},
        {4, 1.5f, YL_ECLASS, "truths[1][2]: class id 1.5"},
        {2, 0, YL_EBOX, "truths[1][2]: w 0"},
        {3, -0.1f, YL_EBOX, "truths[1][2]: w"},
        {1, NAN, YL_ENONFINITE, "truths[1][2]: y is NaN"},
        {0, 1.0f, YL_EBOX, "truths[1][2]: centre (1, "}, /* x * W = W: outside every grid */
    };
    for (size_t q = 0; q < sizeof bad / sizeof bad[0]; q++) {
        float keep = row[bad[q].field];
        row[bad[q].field] = bad[q].value;
        ck_assert_int_eq(yl_problem_init(&p, &k.cfg, k.t_out, 2, &k.t_truths, NULL, 0, &e), YL_OK);
        int rc = yl_compute(&p, 1, NULL, &r, NULL, &e);
        ck_assert_msg(rc == bad[q].code, "case %zu: %d %s", q, rc, e.msg);
        ck_assert_msg(strstr(e.msg, bad[q].text) != NULL, "case %zu: %s", q, e.msg);
        ck_assert_str_eq(e.tensor, "truths");
        row[bad[q].field] = keep;
    }
    /* x == 0 at row 1 ends image 1's list: a NaN at row 2 is never read */
    k.truths[(1 * k.T + 1) * 5] = 0;
    row[1] = NAN;
    ck_assert_int_eq(yl_problem_init(&p, &k.cfg, k.t_out, 2, &k.t_truths, NULL, 0, &e), YL_OK);
    ck_assert_int_eq(yl_compute(&p, 1, NULL, &r, NULL, &e), YL_OK);
    yl_config c = k.cfg;
    c.darknet.truth_thresh = -1;
    ck_assert_int_eq(yl_problem_init(&p, &c, k.t_out, 2, &k.t_truths, NULL, 0, &e), YL_EINVAL);
    ck_assert_str_eq(e.tensor, "truth_thresh");
    c = k.cfg;
    c.mask[1][2] = 6;
    ck_assert_int_eq(yl_problem_init(&p, &c, k.t_out, 2, &k.t_truths, NULL, 0, &e), YL_EINVAL);
    ck_assert(strstr(e.msg, "layer 1's anchor 2 is anchor 6") != NULL);
    c = k.cfg;
    float yt[4] = {0};
    yl_tensor ty[2] = {{.data = yt, .dtype = YL_F32, .ndim = 1, .shape = {4}},
                       {.data = yt, .dtype = YL_F32, .ndim = 1, .shape = {4}}};
    ck_assert_int_eq(yl_problem_init(&p, &c, k.t_out, 2, NULL, ty, 2, &e), YL_EINVAL);
    ck_assert(strstr(e.msg, "darknet takes truths") != NULL);
    dk_free(&k);
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
    TCase *d = tcase_create("darknet");
    tcase_add_test(d, darknet_defaults_are_its_cfgs);
    tcase_add_test(d, darknet_compact_equals_dense_and_threads_agree);
    tcase_add_test(d, darknet_truth_errors_name_the_row);
    suite_add_tcase(s, d);
    return s;
}
