/*
 * main.c: yololossd, the YOLOv3 loss over the Open Inference Protocol v2.
 *
 * Startup: flags, models, token, the pool size (UV_THREADPOOL_SIZE, read by libuv when the
 * first work item is queued), the loop, the signals, libmicrohttpd; then the loop runs
 * until shutdown. SIGTERM/SIGINT: ready answers 400 at once; after --drain-grace seconds
 * (0 by default) of serving as usual the daemon drains: new infer requests 503, those in
 * flight finish and are sent, then libmicrohttpd stops, the handles close, the loop ends
 * and the process exits 0. A second signal exits at once with status 1.
 */
#include "monitor/history.h"
#include "v2/shm.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The shutdown hook http calls after each libmicrohttpd run: once draining has nothing
 * left in flight, stop the transport, the history (what is queued is written first) and
 * the signal handles, so that the loop ends. */
static void maybe_stop(yls_server *s)
{
    if (!s->draining || s->inflight > 0 || s->uploading > 0 || s->pending > 0 || s->sse || s->stopping)
        return;
    s->stopping = true;
    uv_close((uv_handle_t *)&s->grace, NULL);
    yls_sse_shutdown(s);
    yls_http_stop(s);
    yls_history_close(s->history);
    s->history = NULL;
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
}

/* Drain: refuse new requests, finish those in flight, then stop (maybe_stop). */
static void drain(yls_server *s)
{
    s->draining = true;
    yls_sse_close_all(s);
    fprintf(stderr, YLS_NAME ": draining, %u infer request%s in flight\n", s->inflight,
            s->inflight == 1 ? "" : "s");
    maybe_stop(s);
}

static void on_grace(uv_timer_t *t) { drain(t->data); }

/* SIGTERM/SIGINT: ready says no at once, so that a load balancer stops routing here; for
 * --drain-grace seconds requests are still served (those it routes meanwhile are not
 * refused), then the daemon drains. A second signal exits at once. */
static void on_signal(uv_signal_t *h, int signum)
{
    yls_server *s = h->data;
    if (s->signalled) {
        fprintf(stderr, YLS_NAME ": %s again: exiting now\n", strsignal(signum));
        _exit(1);
    }
    s->signalled = true;
    s->ready = false;
    if (s->opt.drain_grace) {
        fprintf(stderr, YLS_NAME ": %s: ready says no; serving for %u s more (--drain-grace)\n",
                strsignal(signum), s->opt.drain_grace);
        uv_timer_start(&s->grace, on_grace, (uint64_t)s->opt.drain_grace * 1000, 0);
        return;
    }
    fprintf(stderr, YLS_NAME ": %s\n", strsignal(signum));
    drain(s);
}


int main(int argc, char **argv)
{
    static yls_server srv; /* static: zeroed, and its handles outlive every callback */
    yls_server *s = &srv;
    /* --healthcheck [URL]: a client mode for container health checks, no server started */
    if (argc >= 2 && !strcmp(argv[1], "--healthcheck"))
        return argc > 3 ? 2 : yls_healthcheck(argc == 3 ? argv[2] : NULL);
    int rc = yls_options_parse(&s->opt, argc, argv);
    if (rc)
        return rc > 0 ? 0 : 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    yls_budget_init(s->opt.max_memory);
    signal(SIGPIPE, SIG_IGN);

    char err[512];
    int status = 1;
    bool loop_ok = false;
    if (yls_models_init(&s->models, s->opt.models_file, err, sizeof err)) {
        fprintf(stderr, YLS_NAME ": %s\n", err);
        return 1;
    }
    if (s->opt.token_file && yls_auth_load(s, s->opt.token_file, err, sizeof err)) {
        fprintf(stderr, YLS_NAME ": %s\n", err);
        goto out;
    }
    char threads[16];
    snprintf(threads, sizeof threads, "%u", s->opt.threads);
    setenv("UV_THREADPOOL_SIZE", threads, 1);

    if (uv_loop_init(&s->loop) != 0) {
        fprintf(stderr, YLS_NAME ": cannot start the event loop\n");
        goto out;
    }
    loop_ok = true;
    if (yls_pool_open(s)) {
        fprintf(stderr, YLS_NAME ": cannot start the event loop\n");
        goto out;
    }
    s->t_started = (uint64_t)time(NULL);
    s->metrics = yls_metrics_new(s);
    if (!s->metrics) {
        fprintf(stderr, YLS_NAME ": out of memory\n");
        goto out;
    }
    if (yls_history_open(&s->history, &s->loop, s->opt.history, err, sizeof err)) {
        fprintf(stderr, YLS_NAME ": %s\n", err);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out;
    }
    if (s->history)
        yls_history_set_image_steps(s->history, s->opt.image_history_steps);
    yls_record_follow_replicas(s);
    if (yls_shm_enabled(&s->opt) && !(s->shm = yls_shm_new())) {
        fprintf(stderr, YLS_NAME ": out of memory\n");
        goto out;
    }
    uv_timer_init(&s->loop, &s->grace);
    s->grace.data = s;
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    s->sigterm.data = s->sigint.data = s;
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    s->router = &yls_daemon_router;
    s->after_run = maybe_stop;
    if (yls_http_start(s)) {
        yls_history_close(s->history);
        s->history = NULL;
        uv_close((uv_handle_t *)&s->sigterm, NULL);
        uv_close((uv_handle_t *)&s->sigint, NULL);
        uv_close((uv_handle_t *)&s->grace, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out;
    }
    fprintf(stderr, YLS_NAME ": %zu models, %u threads, max %u infer requests in flight, "
            "memory budget %" PRIu64 " MiB%s, history %s, shared memory %s\n",
            s->models.n, s->opt.threads, s->opt.max_inflight, s->opt.max_memory >> 20,
            s->token ? ", token required" : "",
            !s->history ? "off" : strncmp(s->opt.history, "postgres", 8) ? s->opt.history
                                                                          : "postgresql",
            s->shm ? "on" : "off");
    s->ready = true;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    fprintf(stderr, YLS_NAME ": stopped\n");
    status = 0;
out:
    if (loop_ok) {
        yls_pool_close(s); /* nothing is in flight any more */
        uv_run(&s->loop, UV_RUN_DEFAULT);
    }
    if (loop_ok && uv_loop_close(&s->loop) != 0)
        fprintf(stderr, YLS_NAME ": warning: handles left open at exit\n");
    yls_shm_free(s->shm); /* every region unmapped (no request is left) */
    yls_metrics_free(s->metrics);
    yls_models_free(&s->models);
    free(s->token);
    yls_big_trim();
    return status;
}
