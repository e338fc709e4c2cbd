/*
 * test_golden.c: the golden cases of tests/golden (made by the float64 numpy reference,
 * tests/reference/make_golden.py, which never looks at core/) against the core.
 *
 * For every case directory, three loop tests:
 *   expect_1thread, expect_3threads: loss, terms, layer_terms, image_terms and stats to a
 *     relative 1e-6 (absolute 1e-12 near 0; counts exact), gradients to 1e-6 absolute
 *     (plus the fp32 storage rounding of large gradients, 1.2e-7 relative), dense y_true of
 *     boxes cases bit-exact; error cases: the code name and a message substring.
 *   expect_fp64_grads: the same with fp64 gradients, held to 1e-9 absolute with no
 *     relative allowance.
 *   threads_identical: 1 thread and 3 threads give the same bytes (results, per-image
 *     terms, gradients, y_true, error messages), and loss-only equals loss-with-gradients.
 * The golden directory is $YL_GOLDEN_DIR, else tests/golden relative to the current
 * directory (the repository root under `make test-core`).
 */
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden_case.h"
#include "suites.h"
#include "yololoss.h"

#define REL_TOL 1e-6
#define ABS_TOL_NEAR_ZERO 1e-12
#define GRAD_ABS_TOL 1e-6
#define GRAD_F32_REL 1.2e-7
#define GRAD_F64_ABS_TOL 1e-9

static char golden_root[512];
static char **case_names;
static int n_cases;

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void scan_golden(void)
{
    const char *env = getenv("YL_GOLDEN_DIR");
    snprintf(golden_root, sizeof golden_root, "%s",
             env != NULL && env[0] != '\0' ? env : "tests/golden");
    DIR *d = opendir(golden_root);
    if (d == NULL)
        return;
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/config.txt", golden_root, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        fclose(f);
        if (n_cases == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(case_names, (size_t)cap * sizeof *nn);
            if (nn == NULL)
                break;
            case_names = nn;
        }
        case_names[n_cases] = strdup(e->d_name);
        if (case_names[n_cases] != NULL)
            n_cases++;
    }
    closedir(d);
    qsort(case_names, (size_t)n_cases, sizeof *case_names, cmp_names);
}

/* ---- failure reports: the first mismatch in words, and how many there were ---------- */

typedef struct {
    char where[160]; /* "golden full_x, 3 threads" */
    char first[1024];
    long count;
} report;

static void mismatch(report *r, const char *fmt, ...)
{
    if (r->count++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->first, sizeof r->first, fmt, ap);
        va_end(ap);
    }
}

static void assert_clean(const report *r)
{
    ck_assert_msg(r->count == 0, "%s: %s (%ld mismatches in all)", r->where, r->first,
                  r->count);
}

static int close_value(double got, double want)
{
    if (isnan(want) || isnan(got))
        return isnan(want) && isnan(got);
    double d = fabs(got - want);
    return d <= ABS_TOL_NEAR_ZERO || d <= REL_TOL * fabs(want);
}

static int close_grad(double got, double want)
{
    if (isnan(got))
        return 0;
    return fabs(got - want) <= GRAD_ABS_TOL + GRAD_F32_REL * fabs(want);
}

static int close_grad64(double got, double want)
{
    return fabs(got - want) <= GRAD_F64_ABS_TOL; /* false for NaN */
}

/* "image 1, y 2, x 0, anchor 1, class 3" for flat index e of a (B,H,W,3*(5+C)) tensor. */
static void describe(char *buf, size_t len, const npyf_array *shape_of, int64_t e)
{
    int64_t H = shape_of->shape[1], W = shape_of->shape[2];
    int64_t K = shape_of->ndim == 5 ? shape_of->shape[4] : shape_of->shape[3] / 3;
    int64_t per_image = H * W * 3 * K;
    int64_t b = e / per_image, r = e % per_image;
    int64_t cell = r / (3 * K), a = (r / K) % 3, k = r % K;
    static const char *names[5] = {"tx", "ty", "tw", "th", "objectness"};
    char ch[32];
    if (k < 5)
        snprintf(ch, sizeof ch, "%s", names[k]);
    else
        snprintf(ch, sizeof ch, "class %lld", (long long)(k - 5));
    snprintf(buf, len, "image %lld, y %lld, x %lld, anchor %lld, %s", (long long)b,
             (long long)(cell / W), (long long)(cell % W), (long long)a, ch);
}

static int load_expect(const char *dir, const char *name, npyf_array *a, report *r)
{
    char path[1024], err[600];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (npyf_read(path, a, err, sizeof err) != 0) {
        mismatch(r, "%s", err);
        return -1;
    }
    if (a->dtype != (strncmp(name, "expect_y_true", 13) == 0 ? NPYF_F32 : NPYF_F64)) {
        mismatch(r, "%s: unexpected dtype %s", path, npyf_descr(a->dtype));
        return -1;
    }
    return 0;
}

static void check_values(report *r, const char *what, const double *got, const npyf_array *want,
                         int64_t n, int counts_at_0_and_7)
{
    if (want->count != n) {
        mismatch(r, "%s: %lld expected values for %lld computed", what,
                 (long long)want->count, (long long)n);
        return;
    }
    const double *w = want->data;
    for (int64_t i = 0; i < n; i++) {
        int exact = counts_at_0_and_7 && (i % YL_NUM_STATS == YL_STAT_COUNT ||
                                          i % YL_NUM_STATS == YL_STAT_IGNORED);
        if (exact ? got[i] != w[i] : !close_value(got[i], w[i]))
            mismatch(r, "%s[%lld]: got %.17g, want %.17g", what, (long long)i, got[i], w[i]);
    }
}

static void check_expectations(const golden_case *c, const case_output *o, report *r)
{
    npyf_array a;
    int L = c->num_layers;
    if (load_expect(c->dir, "expect_loss", &a, r) == 0) {
        check_values(r, "loss", &o->r.loss, &a, 1, 0);
        npyf_free(&a);
    }
    if (load_expect(c->dir, "expect_terms", &a, r) == 0) {
        check_values(r, "terms", o->r.terms, &a, 4, 0);
        npyf_free(&a);
    }
    if (load_expect(c->dir, "expect_layer_terms", &a, r) == 0) {
        check_values(r, "layer_terms (layer*4+term)", &o->r.layer_terms[0][0], &a, 4 * L, 0);
        npyf_free(&a);
    }
    if (load_expect(c->dir, "expect_image_terms", &a, r) == 0) {
        check_values(r, "image_terms (image*4+term)", o->image_terms, &a, 4 * o->batch, 0);
        npyf_free(&a);
    }
    if (load_expect(c->dir, "expect_stats", &a, r) == 0) {
        check_values(r, "stats (layer*8+stat)", &o->r.stats[0][0], &a, YL_NUM_STATS * L, 1);
        npyf_free(&a);
    }
    char name[64], where[160];
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "expect_grad_%d", l);
        if (load_expect(c->dir, name, &a, r) != 0)
            continue;
        if (a.count != o->grad_count[l] || a.ndim != c->output[l].ndim) {
            mismatch(r, "grad_%d: expectation has %lld elements in %d dims, output_%d %lld "
                     "in %d", l, (long long)a.count, a.ndim, l, (long long)o->grad_count[l],
                     c->output[l].ndim);
        } else {
            const double *w = a.data;
            for (int64_t e = 0; e < a.count; e++) {
                double got = o->grad64[l] ? o->grad64[l][e] : (double)o->grad[l][e];
                if (!(o->grad64[l] ? close_grad64(got, w[e]) : close_grad(got, w[e]))) {
                    describe(where, sizeof where, &c->output[l], e);
                    mismatch(r, "grad_%d[%lld] (%s, %s): got %.17g, want %.17g", l,
                             (long long)e, where, o->grad64[l] ? "fp64" : "fp32", got, w[e]);
                }
            }
        }
        npyf_free(&a);
    }
    if (!c->has_boxes)
        return;
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "expect_y_true_%d", l);
        if (load_expect(c->dir, name, &a, r) != 0)
            continue;
        int same_shape = a.ndim == 5;
        for (int d = 0; same_shape && d < 5; d++)
            same_shape = a.shape[d] == o->y_true_shape[l][d];
        if (!same_shape) {
            mismatch(r, "y_true_%d: the expectation has another shape", l);
        } else {
            const uint32_t *w = a.data;
            for (int64_t e = 0; e < a.count; e++) {
                uint32_t g;
                memcpy(&g, &o->y_true[l][e], sizeof g);
                if (g != w[e]) {
                    float wf;
                    memcpy(&wf, &w[e], sizeof wf);
                    describe(where, sizeof where, &a, e);
                    mismatch(r, "y_true_%d[%lld] (%s): got %.9g (0x%08x), want %.9g "
                             "(0x%08x)", l, (long long)e, where, (double)o->y_true[l][e],
                             (unsigned)g, (double)wf, (unsigned)w[e]);
                }
            }
        }
        npyf_free(&a);
    }
}

static void load_case(int i, golden_case *c)
{
    char dir[1024], err[700];
    ck_assert_msg(i < n_cases, "no golden case %d", i);
    snprintf(dir, sizeof dir, "%s/%s", golden_root, case_names[i]);
    ck_assert_msg(case_load(dir, c, err, sizeof err) == 0, "golden %s: %s", case_names[i],
                  err);
}

static void run_against_expectations(int i, int nthreads, int grad)
{
    golden_case c;
    load_case(i, &c);
    case_output o;
    yl_error err;
    int rc = case_run(&c, nthreads, grad, &o, &err);
    report r = {.count = 0};
    snprintf(r.where, sizeof r.where, "golden %s, %d thread%s, %s gradients", case_names[i],
             nthreads, nthreads == 1 ? "" : "s", grad == CASE_GRAD_F64 ? "fp64" : "fp32");
    if (c.is_error) {
        ck_assert_msg(rc != YL_OK, "%s: succeeded (loss %.17g), want %s containing '%s'",
                      r.where, o.r.loss, c.expect_code, c.expect_substr);
        ck_assert_msg(strcmp(yl_err_name(rc), c.expect_code) == 0,
                      "%s: got %s (%s), want %s", r.where, yl_err_name(rc), err.msg,
                      c.expect_code);
        ck_assert_msg(err.code == rc, "%s: err.code %d, returned %d", r.where, err.code, rc);
        ck_assert_msg(strstr(err.msg, c.expect_substr) != NULL,
                      "%s: message '%s' does not contain '%s'", r.where, err.msg,
                      c.expect_substr);
    } else {
        ck_assert_msg(rc == YL_OK, "%s: %s: %s", r.where, yl_err_name(rc), err.msg);
        check_expectations(&c, &o, &r);
        assert_clean(&r);
    }
    case_output_free(&o);
    case_free(&c);
}

START_TEST(expect_1thread)
{
    run_against_expectations(_i, 1, CASE_GRAD_F32);
}
END_TEST

START_TEST(expect_fp64_grads)
{
    run_against_expectations(_i, 2, CASE_GRAD_F64);
}
END_TEST

START_TEST(expect_3threads)
{
    run_against_expectations(_i, 3, CASE_GRAD_F32);
}
END_TEST

static void same_bytes(report *r, const char *what, const void *a, const void *b, size_t n)
{
    if (memcmp(a, b, n) == 0)
        return;
    const unsigned char *x = a, *y = b;
    size_t k = 0;
    while (x[k] == y[k])
        k++;
    mismatch(r, "%s differs (first at byte %zu)", what, k);
}

static void compare_runs(report *r, const golden_case *c, const case_output *a,
                         const case_output *b, int with_grads)
{
    const yl_result *x = &a->r, *y = &b->r;
    size_t L = (size_t)c->num_layers;
    same_bytes(r, "loss", &x->loss, &y->loss, sizeof x->loss);
    same_bytes(r, "terms", x->terms, y->terms, sizeof x->terms);
    same_bytes(r, "layer_terms", x->layer_terms, y->layer_terms, L * sizeof x->layer_terms[0]);
    same_bytes(r, "stats", x->stats, y->stats, L * sizeof x->stats[0]);
    same_bytes(r, "image_terms", a->image_terms, b->image_terms,
               (size_t)a->batch * 4 * sizeof(double));
    char what[32];
    for (int l = 0; l < c->num_layers; l++) {
        if (with_grads) {
            snprintf(what, sizeof what, "grad_%d", l);
            same_bytes(r, what, a->grad[l], b->grad[l], (size_t)a->grad_count[l] * sizeof(float));
        }
        if (c->has_boxes) {
            snprintf(what, sizeof what, "y_true_%d", l);
            same_bytes(r, what, a->y_true[l], b->y_true[l],
                       (size_t)a->y_true_count[l] * sizeof(float));
        }
    }
}

START_TEST(threads_identical)
{
    golden_case c;
    load_case(_i, &c);
    case_output o1, o3, o_loss;
    yl_error e1, e3, e_loss;
    int rc1 = case_run(&c, 1, 1, &o1, &e1);
    int rc3 = case_run(&c, 3, 1, &o3, &e3);
    int rc_loss = case_run(&c, 3, 0, &o_loss, &e_loss);
    const char *name = case_names[_i];
    ck_assert_msg(rc1 == rc3 && rc1 == rc_loss,
                  "golden %s: 1 thread returns %s, 3 threads %s, loss only %s", name,
                  yl_err_name(rc1), yl_err_name(rc3), yl_err_name(rc_loss));
    if (rc1 != YL_OK) {
        ck_assert_msg(strcmp(e1.msg, e3.msg) == 0 && strcmp(e1.msg, e_loss.msg) == 0,
                      "golden %s: error messages differ: '%s' (1 thread), '%s' (3 threads), "
                      "'%s' (loss only)", name, e1.msg, e3.msg, e_loss.msg);
    } else {
        report r = {.count = 0};
        snprintf(r.where, sizeof r.where, "golden %s, 1 thread vs 3 threads", name);
        compare_runs(&r, &c, &o1, &o3, 1);
        assert_clean(&r);
        snprintf(r.where, sizeof r.where, "golden %s, with gradients vs loss only", name);
        compare_runs(&r, &c, &o1, &o_loss, 0);
        assert_clean(&r);
    }
    case_output_free(&o1);
    case_output_free(&o3);
    case_output_free(&o_loss);
    case_free(&c);
}
END_TEST

START_TEST(golden_dir_present)
{
    ck_assert_msg(n_cases > 0, "no golden cases in '%s' (run from the repository root, or "
                  "set YL_GOLDEN_DIR)", golden_root);
}
END_TEST

Suite *golden_suite(void)
{
    if (case_names == NULL)
        scan_golden();
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, golden_dir_present);
    tcase_add_loop_test(tc, expect_1thread, 0, n_cases);
    tcase_add_loop_test(tc, expect_3threads, 0, n_cases);
    tcase_add_loop_test(tc, expect_fp64_grads, 0, n_cases);
    tcase_add_loop_test(tc, threads_identical, 0, n_cases);
    suite_add_tcase(s, tc);
    return s;
}
