/*
 * test_concurrency.c: many clients at once, of mixed sizes and encodings, all get exactly
 * the core's answers; the bytes of an answer do not depend on the daemon's thread count;
 * points recorded, read and streamed at once.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_CASES 6
#define N_THREADS 16
#define N_PER_THREAD 6

static const yt_spec specs[N_CASES] = {
    {.num_anchors = 6, .B = 1, .H0 = 1, .W0 = 1, .C = 1, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 2, .seed = 101},
    {.num_anchors = 9, .B = 4, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F64, .T = 5, .seed = 102},
    {.num_anchors = 9, .B = 2, .H0 = 3, .W0 = 2, .C = 4, .out_dtype = YL_F16, .out5d = true,
     .truth = YT_DENSE5, .truth_dtype = YL_F16, .T = 4, .seed = 103},
    {.num_anchors = 6, .B = 6, .H0 = 2, .W0 = 3, .C = 2, .out_dtype = -1, .truth = YT_DENSE4,
     .truth_dtype = YL_BF16, .T = 3, .seed = 104},
    {.num_anchors = 9, .B = 1, .H0 = 4, .W0 = 4, .C = 20, .out_dtype = YL_F32, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 8, .seed = 105},
    {.num_anchors = 9, .B = 9, .H0 = 1, .W0 = 2, .C = 2, .out_dtype = YL_F64, .truth = YT_BOXES,
     .truth_dtype = YL_F32, .T = 3, .seed = 106},
};

typedef struct {
    int id;
    const yt_case *cases;
    int failures;
    char why[512];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (int k = 0; k < N_PER_THREAD && !w->failures; k++) {
        int ci = (w->id * 5 + k) % N_CASES;
        const yt_case *c = &w->cases[ci];
        yt_send s = {.input_mode = (w->id + k) % 4, .output_binary = -1,
                     .binary_data_output = (k % 2) == 0};
        if (k % 3 == 1) {
            s.outputs[0] = "loss";
            s.outputs[1] = "image_terms";
            s.outputs[2] = "grad_0";
        }
        yt_resp r;
        long st = yt_infer(&yt_main, c, &s, &r);
        yt_outputs o;
        char err[256];
        if (st != 200) {
            char msg[256];
            snprintf(w->why, sizeof w->why, "thread %d request %d (case %d): status %ld %s %s",
                     w->id, k, ci, st, yt_error_message(&r, msg, sizeof msg), r.error);
            w->failures++;
        } else if (yt_parse_outputs(&r, &o, err, sizeof err) != 0) {
            snprintf(w->why, sizeof w->why, "thread %d request %d: %s", w->id, k, err);
            w->failures++;
        } else {
            const char *all[] = {"loss", "loss_terms", "layer_terms", "image_terms", "stats",
                                 "grad_0", "grad_1", "grad_2"};
            int n = s.outputs[0] ? 3 : 5 + c->L;
            for (int i = 0; i < n && !w->failures; i++) {
                const char *name = s.outputs[0] ? s.outputs[i] : all[i];
                if (yt_compare_output(c, &o, name, err, sizeof err) != 0) {
                    snprintf(w->why, sizeof w->why, "thread %d request %d (case %d): %s", w->id,
                             k, ci, err);
                    w->failures++;
                }
            }
            if (!w->failures && o.n != n) {
                snprintf(w->why, sizeof w->why, "thread %d request %d: %d outputs", w->id, k, o.n);
                w->failures++;
            }
            yt_outputs_free(&o);
        }
        yt_resp_free(&r);
    }
    return NULL;
}

START_TEST(many_clients_mixed_sizes)
{
    yt_case cases[N_CASES];
    for (int i = 0; i < N_CASES; i++)
        yt_case_make(&cases[i], &specs[i]);
    worker w[N_THREADS];
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (worker){.id = t, .cases = cases};
        ck_assert_int_eq(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++)
        ck_assert_msg(w[t].failures == 0, "%s", w[t].why);
    for (int i = 0; i < N_CASES; i++)
        yt_case_free(&cases[i]);
}
END_TEST

START_TEST(same_bytes_for_any_thread_count)
{
    yt_daemon one;
    const char *args[] = {"--threads", "1", NULL};
    ck_assert_int_eq(yt_daemon_start(&one, args, false), 0);
    yt_spec spec = {.num_anchors = 9, .B = 13, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 5, .seed = 111};
    yt_case c;
    yt_case_make(&c, &spec);
    for (int mode = 0; mode < 2; mode++) {
        yt_send s = {.input_mode = mode, .output_binary = -1, .binary_data_output = mode == 0,
                     .id = "same"};
        yt_resp a, b;
        ck_assert_int_eq(yt_infer(&yt_main, &c, &s, &a), 200);
        ck_assert_int_eq(yt_infer(&one, &c, &s, &b), 200);
        ck_assert_uint_eq(a.len, b.len);
        ck_assert(memcmp(a.body, b.body, a.len) == 0);
        yt_check_answer(&c, &a);
        yt_resp_free(&b);
    }
    yt_case_free(&c);
    ck_assert_int_eq(yt_daemon_stop(&one), 0);
    unlink(one.errlog);
}
END_TEST

/* Several images of a batch fail (non-finite values in different layers): the answer names
 * the lowest failing image, as the core's own yl_compute does, whatever the thread count
 * and however the images were shared out between the threads. */
START_TEST(lowest_failing_image_for_any_thread_count)
{
    yt_spec spec = {.num_anchors = 9, .B = 13, .H0 = 2, .W0 = 2, .C = 3, .out_dtype = YL_F32,
                    .truth = YT_BOXES, .truth_dtype = YL_F32, .T = 4, .seed = 112};
    yt_case c;
    yt_case_make(&c, &spec);
    /* {layer, image, element of the image}: the lowest is image 5, in output_2 */
    const int64_t bad[][3] = {{1, 7, 3}, {0, 9, 40}, {2, 5, 17}, {0, 12, 0}, {2, 11, 90}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const yl_tensor *t = &c.out[bad[k][0]];
        int64_t per_image = 1;
        for (int d = 1; d < t->ndim; d++)
            per_image *= t->shape[d];
        ((float *)t->data)[bad[k][1] * per_image + bad[k][2]] = k % 2 ? INFINITY : NAN;
    }
    yl_problem p;
    yl_error err;
    yl_result res;
    ck_assert_int_eq(yl_problem_init(&p, &c.cfg, c.out, c.L, &c.boxes, NULL, 0, &err), YL_OK);
    ck_assert_int_ne(yl_compute(&p, 1, NULL, &res, NULL, &err), YL_OK);
    ck_assert_msg(strstr(err.msg, "output_2") != NULL, "%s", err.msg);
    yt_daemon d[2];
    const char *args[2][3] = {{"--threads", "1", NULL}, {"--threads", "2", NULL}};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(yt_daemon_start(&d[i], args[i], false), 0);
    const yt_daemon *all[3] = {&d[0], &d[1], &yt_main};
    for (int i = 0; i < 3; i++)
        for (int round = 0; round < 4; round++) {
            yt_send s = {.input_mode = 0, .output_binary = -1,
                         .outputs = {round % 2 ? "grad_0" : "loss"}};
            yt_resp r;
            long st = yt_infer(all[i], &c, &s, &r);
            char msg[600];
            yt_error_message(&r, msg, sizeof msg);
            ck_assert_msg(st == 400 && !strcmp(msg, err.msg), "daemon %d: %ld '%s', want 400 '%s'",
                          i, st, msg, err.msg);
            yt_resp_free(&r);
        }
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(yt_daemon_stop(&d[i]), 0);
        unlink(d[i].errlog);
    }
    yt_case_free(&c);
}
END_TEST

/* Points recorded by many clients at once, while others read the history and a stream
 * follows the run: the history's writer and reader threads, group commits and the event
 * streams all run together (and so under ThreadSanitizer in make test-sanitize). */
#define REC_THREADS 6
#define REC_PER_THREAD 6

typedef struct {
    int id;
    char run[64];
    int failures;
    char why[256];
} recorder;

static void *record_work(void *arg)
{
    recorder *w = arg;
    for (int k = 0; k < REC_PER_THREAD && !w->failures; k++) {
        long st = yt_record_point(&yt_main, w->run, -1, 7000 + (uint64_t)(w->id * 100 + k));
        if (st != 200) {
            snprintf(w->why, sizeof w->why, "recorder %d point %d: %ld", w->id, k, st);
            w->failures++;
        }
        if (w->id % 2 == 0) { /* and a read between the points */
            yt_resp r;
            char path[128];
            snprintf(path, sizeof path, "/v1/runs/%s/steps%s", w->run, k % 2 ? ".csv" : "");
            if (yt_get(&yt_main, k == 0 ? "/v1/runs" : path, &r) != 200) {
                snprintf(w->why, sizeof w->why, "recorder %d read %d: %ld", w->id, k, r.status);
                w->failures++;
            }
            yt_resp_free(&r);
        }
    }
    return NULL;
}

START_TEST(points_recorded_read_and_streamed_at_once)
{
    char run[64], path[128];
    snprintf(run, sizeof run, "conc-%d", (int)getpid());
    snprintf(path, sizeof path, "/v1/events?run=%s", run);
    static char buf[1 << 20];
    size_t have;
    int st;
    int fd = yt_stream_open(&yt_main, path, NULL, buf, sizeof buf, &have, &st);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(st, 200);
    ck_assert(yt_read_until(fd, buf, sizeof buf, &have, "retry: 2000\n\n"));
    recorder w[REC_THREADS];
    pthread_t th[REC_THREADS];
    for (int t = 0; t < REC_THREADS; t++) {
        w[t] = (recorder){.id = t};
        snprintf(w[t].run, sizeof w[t].run, "%s", run);
        ck_assert_int_eq(pthread_create(&th[t], NULL, record_work, &w[t]), 0);
    }
    for (int t = 0; t < REC_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < REC_THREADS; t++)
        ck_assert_msg(w[t].failures == 0, "%s", w[t].why);
    /* steps 0..N-1, each once, in the history and on the stream */
    enum { N = REC_THREADS * REC_PER_THREAD };
    json_t *pts = yt_run_points(&yt_main, run);
    ck_assert_int_eq(json_array_size(pts), N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(pts, (size_t)i), "step")), i);
    json_decref(pts);
    char want[128];
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof want, "data: {\"run\":\"%s\",\"step\":%d,", run, i);
        ck_assert_msg(yt_read_until(fd, buf, sizeof buf, &have, want), "no step %d on the stream", i);
    }
    close(fd);
}
END_TEST

Suite *yt_suite_concurrency(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("clients");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, many_clients_mixed_sizes);
    tcase_add_test(tc, same_bytes_for_any_thread_count);
    tcase_add_test(tc, lowest_failing_image_for_any_thread_count);
    tcase_add_test(tc, points_recorded_read_and_streamed_at_once);
    suite_add_tcase(s, tc);
    return s;
}
