/* suites.h: the Check suites of build/test_core (main() is in test_main.c). */
#ifndef YL_TESTS_SUITES_H
#define YL_TESTS_SUITES_H

#include <check.h>

/* Invariants, errors and gradients of the core API (test_core.c). */
Suite *core_suite(void);

/* Every case directory of tests/golden (or $YL_GOLDEN_DIR), made by the numpy reference
 * tests/reference/make_golden.py, run on 1 and 3 threads (test_golden.c). */
Suite *golden_suite(void);

/* Compact problems against dense ones, fp64 gradients against fp32 (test_compact.c). */
Suite *compact_suite(void);

/* The model descriptor, the definition table and each non-keras definition against its
 * float64 reference's formulas (test_definitions.c). */
Suite *definitions_suite(void);

/* The detection evaluator (core/yleval.h) on hand-made cases (test_eval.c). */
Suite *eval_suite(void);

#endif /* YL_TESTS_SUITES_H */
