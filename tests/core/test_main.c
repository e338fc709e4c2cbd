/* test_main.c: runs every Check suite of the core; exit status 0 only when all pass.
 * CK_FORK, CK_RUN_SUITE, CK_RUN_CASE and CK_VERBOSITY work as usual. */
#include <stdlib.h>

#include "suites.h"

int main(void)
{
    SRunner *sr = srunner_create(core_suite());
    srunner_add_suite(sr, golden_suite());
    srunner_add_suite(sr, compact_suite());
    srunner_add_suite(sr, definitions_suite());
    srunner_add_suite(sr, eval_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
