/*
 * harness.h: integration tests of yololossd. The tests start the real daemon (YL_DAEMON,
 * default build/yololossd) on a free port, talk to it with libcurl, and compare its answers
 * with the core called in-process on the same tensors, bit for bit.
 */
#ifndef YT_HARNESS_H
#define YT_HARNESS_H

#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "yololoss.h"

/* ------------------------------------------------------------------------------------ */
/* Daemons                                                                              */

typedef struct {
    pid_t pid;
    unsigned port;
    char errlog[128]; /* its stderr */
    char outlog[128]; /* its stdout (the access log), "" when /dev/null */
} yt_daemon;

/* Start the daemon with --host 127.0.0.1 --port 0 --history none and the NULL-terminated
 * extra args (which may set --history); keep
 * its stdout in a file when keep_stdout. Waits for its "listening on" line. 0 or -1. */
int yt_daemon_start(yt_daemon *d, const char *const *args, bool keep_stdout);
/* SIGTERM, then its exit status (128 + signal when killed). */
int yt_daemon_stop(yt_daemon *d);
/* Wait for it to exit on its own: exit status as above. */
int yt_daemon_wait(yt_daemon *d);
/* "running", or how it ended (then reaped): for a failure's message. */
const char *yt_daemon_state(const yt_daemon *d, char *buf, size_t len);
/* Print its stderr to ours (after a failure). */
void yt_daemon_dump(const yt_daemon *d);
/* A process's resident memory in kB (VmRSS) and its open fds, from /proc; -1 if unreadable. */
long yt_rss_kb(pid_t pid);
long yt_hwm_kb(pid_t pid); /* its peak resident memory (VmHWM) */
int yt_open_fds(pid_t pid);

void yt_nap_ms(long ms);
/* A fresh SQLite history path, /tmp/yololossd-test-<tag>-<pid>-<n>.sqlite (not created yet),
 * and its removal with the -wal and -shm files beside it. */
void yt_temp_history(char *path, size_t len, const char *tag);
void yt_remove_history(const char *path);
/* A --token-file holding token: path is a mkstemp template, filled in. */
void yt_token_file(char *path, const char *token);

/* Shared daemons, started by main before the suites (fork-inherited by every test):
 * yt_main: defaults with --threads 3; yt_small: --max-body 1M --max-json 256K
 * --max-inflight 1 --threads 1, stdout kept (access log), and a --models file. */
extern yt_daemon yt_main, yt_small;

/* ------------------------------------------------------------------------------------ */
/* HTTP                                                                                 */

/* An upload held back until released: the first read of the body (which libcurl makes
 * only after the server's "100 Continue", i.e. after the server accepted the headers)
 * marks it started and waits. A request that ends without reading its body (refused on its
 * headers, connection lost) marks it started too: the caller then finds its status. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, released;
    size_t pos;
} yt_gate;

void yt_gate_init(yt_gate *g);
void yt_gate_wait_started(yt_gate *g);
void yt_gate_release(yt_gate *g);

typedef struct {
    const char *method;          /* NULL: GET, or POST when there is a body */
    const char *path;
    const void *body;
    size_t len;
    const char *headers[8];      /* "Name: value", NULL-terminated */
    yt_gate *gate;               /* NULL: send the body at once */
} yt_req;

typedef struct {
    long status;  /* 0: transport failure */
    char *body;   /* NUL-terminated */
    size_t len;
    char *headers;
    char error[256];
} yt_resp;

/* One request on a new connection. Returns resp->status. */
long yt_http(const yt_daemon *d, const yt_req *req, yt_resp *resp);
long yt_get(const yt_daemon *d, const char *path, yt_resp *resp);
/* GET path, which must answer 200 with JSON: the parsed body (json_decref it). */
json_t *yt_get_json(const yt_daemon *d, const char *path);
/* The "points" array of GET /v1/runs/{run}/steps (run already URL-escaped); json_decref it. */
json_t *yt_run_points(const yt_daemon *d, const char *run);

/* A request held in flight by its client: the whole request is sent on a raw socket whose
 * receive buffer is tiny, and its (large) answer is not read, so the daemon cannot finish
 * it. yt_hold_send returns the socket; yt_hold_finish reads the answer into resp (status,
 * headers, Content-Length body) and closes it. */
int yt_hold_send(const yt_daemon *d, const char *path, const void *body, size_t len,
                 size_t header_len);
long yt_hold_finish(int fd, yt_resp *resp);
/* Wait (bounded: 60 s) until the answer starts to arrive (computed, being written). */
bool yt_hold_answering(int fd);
/* The value of a metric without labels in GET /metrics (-1 when absent). */
double yt_metric(const yt_daemon *d, const char *name);
/* Wait (bounded: 30 s) until the metric reaches want; its last value. */
double yt_metric_wait(const yt_daemon *d, const char *name, double want);

/* A response header's value (case-insensitive name) or NULL. */
const char *yt_header(const yt_resp *r, const char *name, char *buf, size_t len);
void yt_resp_free(yt_resp *r);
/* The "error" string of a JSON error body ("" when none). */
const char *yt_error_message(const yt_resp *r, char *buf, size_t len);

/* Raw HTTP on 127.0.0.1: a connected socket whose reads time out after 20 s; send all of p;
 * one response (its status, 0: closed or timed out first; the head in head, the
 * Content-Length body in body; nothing after this response is consumed). */
int yt_raw_connect(unsigned port);
bool yt_raw_send(int fd, const void *p, size_t n);
int yt_raw_response(int fd, char *head, size_t hcap, char *body, size_t bcap);

/* An event stream on a raw socket: GET path (with one extra header line, or NULL), its
 * status (0: no answer) in *status; what was read (headers included) in buf, *have bytes.
 * Returns the socket (reads time out after 100 ms), or -1 with errno set. */
int yt_stream_open(const yt_daemon *d, const char *path, const char *header, char *buf,
                   size_t len, size_t *have, int *status);
/* Read on until needle is in buf (true), the peer closes or about 10 s pass (false). */
bool yt_read_until(int fd, char *buf, size_t len, size_t *have, const char *needle);

/* ------------------------------------------------------------------------------------ */
/* Cases: random tensors and the core's answer for them                                  */

enum { YT_BOXES, YT_DENSE4, YT_DENSE5 };

typedef struct {
    int num_anchors;      /* 9 (yolov3) or 6 (yolov3-tiny) */
    int64_t B, H0, W0, C; /* batch, layer-0 grid, classes */
    int out_dtype;        /* of every output_l; -1: FP32, FP16, BF16, FP64 by layer */
    bool out5d;
    int truth;            /* YT_BOXES, YT_DENSE4, YT_DENSE5 */
    int truth_dtype;
    int64_t T;            /* box rows (some of them padding) */
    double ignore_thresh; /* 0: default */
    const char *anchors;  /* NULL: the default anchors, else "w,h,..." */
    uint64_t seed;
} yt_spec;

typedef struct {
    yt_spec spec;
    int L;
    yl_config cfg;
    yl_tensor out[YL_MAX_LAYERS];
    yl_tensor boxes;
    yl_tensor y_true[YL_MAX_LAYERS];
    void *bufs[2 * YL_MAX_LAYERS + 1];
    int nbufs;
    /* the core's answer */
    yl_result res;
    double *image_terms;
    float *grads[YL_MAX_LAYERS];
} yt_case;

void yt_case_make(yt_case *c, const yt_spec *s);
void yt_case_free(yt_case *c);
/* The expected FP32 values and shape of an output ("loss", "grad_1", ...); malloc'd. */
float *yt_expected(const yt_case *c, const char *name, size_t *n, int *ndim, int64_t *shape);

/* How to send a case. */
typedef struct {
    int input_mode;             /* 0 binary, 1 JSON flat, 2 JSON nested, 3 mixed per tensor */
    const char *outputs[12];    /* NULL-terminated; outputs[0] NULL: omit "outputs" */
    int output_binary;          /* -1: no parameter, 0/1: binary_data on each output */
    bool binary_data_output;    /* request-level parameter */
    const char *id;
    const char *model;          /* NULL: from the case */
    json_t *params;             /* extra request parameters (borrowed) */
    json_t *extra_input;        /* one more entry of "inputs", as is (borrowed), e.g. image_ids */
    const void *extra_blob;     /* its binary data, sent after the other blobs (binary_data_size */
    size_t extra_blob_len;      /* in extra_input's parameters is the test's business) */
} yt_send;

/* The request body for c; *header_len 0 when the body is JSON only. malloc'd. */
uint8_t *yt_request_body(const yt_case *c, const yt_send *s, size_t *len, size_t *header_len);
/* POST it to /v2/models/<model>/infer. */
long yt_infer(const yt_daemon *d, const yt_case *c, const yt_send *s, yt_resp *resp);
/* One small infer request recording a point of run (step < 0: none): its HTTP status (the
 * answer itself is not checked: test_monitor.c does that). */
long yt_record_point(const yt_daemon *d, const char *run, int step, uint64_t seed);
/* The same, with the in-process loss of its batch in *loss and the answer in *resp (each
 * when not NULL; the caller frees *resp). Thread-safe: no ck_assert. */
long yt_send_point(const yt_daemon *d, const char *run, int step, uint64_t seed, double *loss,
                   yt_resp *resp);

typedef struct {
    char name[32];
    char datatype[16];
    int ndim;
    int64_t shape[YL_MAX_DIMS];
    size_t n;
    float *v;
    bool binary;
} yt_output;

typedef struct {
    json_t *root;
    yt_output out[16];
    int n;
} yt_outputs;

/* Split a 200 response into its outputs (JSON data or binary blobs). 0 or -1 with err. */
int yt_parse_outputs(const yt_resp *r, yt_outputs *o, char *err, size_t errlen);
void yt_outputs_free(yt_outputs *o);
const yt_output *yt_find(const yt_outputs *o, const char *name);
/* 0 when output `name` is there with the expected shape and bits, else -1 and why. */
int yt_compare_output(const yt_case *c, const yt_outputs *o, const char *name, char *err,
                      size_t errlen);
/* ck_assert that output `name` is there with the expected shape and bits. */
void yt_check_output(const yt_case *c, const yt_outputs *o, const char *name);
/* Every output of the model: loss ... grad_{L-1}. */
void yt_check_all(const yt_case *c, const yt_outputs *o);
/* Parses the answer r, checks every output against the in-process core (yt_check_all) and
 * frees r. */
void yt_check_answer(const yt_case *c, yt_resp *r);

/* ------------------------------------------------------------------------------------ */
/* Suites                                                                                */

Suite *yt_suite_meta(void);
Suite *yt_suite_infer(void);
Suite *yt_suite_errors(void);
Suite *yt_suite_features(void);
Suite *yt_suite_concurrency(void);
Suite *yt_suite_monitor(void);
Suite *yt_suite_faults(void);
Suite *yt_suite_security(void);
Suite *yt_suite_healthcheck(void);
Suite *yt_suite_hardening(void);
Suite *yt_suite_lockouts(void);
Suite *yt_suite_images(void);
Suite *yt_suite_point(void);
/* test_images.c's checks, also run against PostgreSQL (test_history_pg.c): records 4 steps
 * of run with image_ids given every way and checks the ranking and an image's history; a
 * run's configuration and scalars (auth: an "Authorization: ..." header or NULL). */
void yt_check_images_roundtrip(const yt_daemon *d, const char *run);
void yt_check_images_older_row(const yt_daemon *d, const char *run);
void yt_check_config_and_scalars(const yt_daemon *d, const char *run, const char *auth);
/* With --image-history-steps 2: 4 steps keep the last 2; a replaced step's rows go. */
void yt_check_images_retention(const yt_daemon *d, const char *run);
Suite *yt_suite_wire(void);
Suite *yt_suite_evaluate(void); /* test_evaluate.c: the evaluation models */
Suite *yt_suite_streams(void);
Suite *yt_suite_history_reads(void);
Suite *yt_suite_shm_index(void);
Suite *yt_suite_history_pg(void); /* make test-history-pg; needs PostgreSQL's binaries */
/* test_eval_stream.c: 4 batches with parameter eval at one step of run, sent in a shuffled
 * order (one twice) round-robin to the nd daemons, whose GET .../eval must each equal the
 * one-shot evaluation computed in-process, bit for bit. */
void yt_check_eval_stream(const yt_daemon *const *d, int nd, const char *run);
Suite *yt_suite_eval_stream(void);

#endif /* YT_HARNESS_H */
