/*
 * test_main.c: runs the server suites against two shared daemons (see harness.h), then
 * stops them and fails unless both exit 0 (a sanitizer report or a leak makes them exit
 * non-zero). CK_RUN_SUITE / CK_RUN_CASE select suites and cases as usual with Check.
 */
#include "harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char models_json[] =
    "[{\"name\": \"custom3\", \"anchors\": \"12,16,19,36,40,28,36,75,76,55,72,146,142,110,192,"
    "243,459,401\", \"ignore_thresh\": 0.7},\n"
    " {\"name\": \"custom-tiny\", \"anchors\": [10,14,23,27,37,58,81,82,135,169,344,319], "
    "\"ignore_thresh\": 0.3}]\n";

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    char models_path[] = "/tmp/yololossd-test-models-XXXXXX";
    int fd = mkstemp(models_path);
    if (fd < 0 || write(fd, models_json, sizeof models_json - 1) != (ssize_t)(sizeof models_json - 1)) {
        perror("models file");
        return 1;
    }
    close(fd);
    char history[64];
    snprintf(history, sizeof history, "/tmp/yololossd-test-main-%d.sqlite", (int)getpid());
    const char *main_args[] = {"--threads", "3", "--history", history, NULL};
    const char *small_args[] = {"--threads", "1", "--max-body", "1M", "--max-json", "256K",
                                "--max-inflight", "1", "--models", models_path,
                                "--history", "none", NULL};
    if (yt_daemon_start(&yt_main, main_args, false) || yt_daemon_start(&yt_small, small_args, true)) {
        fprintf(stderr, "cannot start the daemon (YL_DAEMON=%s)\n", getenv("YL_DAEMON"));
        return 1;
    }
    SRunner *sr = srunner_create(yt_suite_meta());
    srunner_add_suite(sr, yt_suite_infer());
    srunner_add_suite(sr, yt_suite_errors());
    srunner_add_suite(sr, yt_suite_features());
    srunner_add_suite(sr, yt_suite_concurrency());
    srunner_add_suite(sr, yt_suite_monitor());
    srunner_add_suite(sr, yt_suite_images());
    srunner_add_suite(sr, yt_suite_point());
    srunner_add_suite(sr, yt_suite_faults());
    srunner_add_suite(sr, yt_suite_security());
    srunner_add_suite(sr, yt_suite_healthcheck());
    srunner_add_suite(sr, yt_suite_hardening());
    srunner_add_suite(sr, yt_suite_lockouts());
    srunner_add_suite(sr, yt_suite_wire());
    srunner_add_suite(sr, yt_suite_evaluate());
    srunner_add_suite(sr, yt_suite_streams());
    srunner_add_suite(sr, yt_suite_history_reads());
    srunner_add_suite(sr, yt_suite_shm_index());
    srunner_add_suite(sr, yt_suite_history_pg());
    srunner_add_suite(sr, yt_suite_eval_stream());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    int rc_main = yt_daemon_stop(&yt_main), rc_small = yt_daemon_stop(&yt_small);
    if (rc_main != 0 || rc_small != 0) {
        fprintf(stderr, "daemons exited with %d and %d; their stderr:\n", rc_main, rc_small);
        yt_daemon_dump(&yt_main);
        yt_daemon_dump(&yt_small);
        failed++;
    } else {
        unlink(yt_main.errlog);
        unlink(yt_small.errlog);
        unlink(yt_small.outlog);
    }
    unlink(models_path);
    for (int i = 0; i < 3; i++) {
        char p[80];
        snprintf(p, sizeof p, "%s%s", history, i == 0 ? "" : i == 1 ? "-wal" : "-shm");
        unlink(p);
    }
    curl_global_cleanup();
    return failed ? 1 : 0;
}
