/*
 * server.h: the internals of yololossd, shared by the files of server/ (not installed).
 *
 * LAYERS (a layer calls only the layers below it; docs/server.md has the source layout):
 *   main.c, routes.c, options.c, healthcheck.c   wiring: the route table, flags, start, stop
 *   v2/       the Open Inference Protocol: models, metadata, infer, statistics
 *   monitor/  history, /v1/runs, event streams, /metrics, the dashboard
 *   http/     transport: libmicrohttpd in the libuv loop, routing, encodings, auth, errors
 *
 * READING ORDER. main.c (startup, signals, shutdown) -> options.c (flags) -> v2/models.c (the
 * model table) -> http/http.c (libmicrohttpd driven by the libuv loop; one yls_request per
 * HTTP request; body collection and limits) -> routes.c (every endpoint, one line each) ->
 * http/router.c (matching the table) -> http/reply.c (the reply helper) -> v2/endpoints.c (health, metadata, config, statistics) -> v2/infer.c (an infer request
 * as work items on the libuv pool) -> v2/infer_request.c (v2 JSON + binary body to
 * yl_tensors, compact tensors, inputs in shared memory) -> v2/infer_response.c (results to a
 * v2 response, binary blobs as iovecs, outputs in shared memory) -> v2/shm.c (the
 * shared-memory region registry) and v2/shm_endpoints.c (its endpoints) ->
 * http/encoding.c (gzip/deflate) -> http/errors.c (the one error reply) and http/fail.c
 * (what it carries) -> v2/stats.c, http/access_log.c, http/auth.c, http/bufcache.c (large
 * buffers reused across requests) -> http/budget.c (--max-memory: what admitted requests
 * hold together) -> http/upload.c (an upload's memory as its bytes arrive) -> http/peers.c (connections per address) -> http/mhd_errors.c
 * (libmicrohttpd's own error answers as JSON) -> http/pool.c (the libuv pool: waiting work
 * counted, messages from pool threads to the loop).
 * Monitoring (docs/monitoring.md): monitor/history.h (points and the storage backend
 * interface) -> monitor/history.c (the history threads) -> monitor/history_sqlite.c,
 * monitor/history_pg.c -> monitor/record.c (an infer request with `run` records a point,
 * answered after the commit) -> monitor/api_runs.c (/v1/runs...) -> monitor/api_images.c
 * and monitor/image_rank.c (the per-image table and its ranking) -> monitor/api_config.c
 * (a run's configuration and scalars) -> monitor/sse.c
 * (/v1/events, /v1/runs/{run}/events) -> monitor/metrics.c (/metrics) -> monitor/dashboard.c (GET /,
 * the assets embedded at build time from server/monitor/dashboard/ and npm's uPlot);
 * monitor/point.c (a point as JSON) is shared by api_runs.c, record.c and the streams.
 *
 * THREADS. Everything here runs on the libuv loop thread except the work callbacks of
 * infer.c, which run on the libuv pool and touch only their own yls_infer (read-only
 * problem, disjoint slices of the outputs), the two history threads of history.c (a
 * writer and a reader, each with its own connection), which alone touch the storage, and
 * with PostgreSQL the listener thread of monitor/history_pg_listen.c (the points other
 * replicas record, handed to the loop thread).
 * Counters, statistics, metrics and SSE streams are loop-thread only.
 *
 * OWNERSHIP. A yls_request lives from the first call of the access handler to libmicrohttpd's
 * completion callback and owns its body and its yls_infer; a response's payload (gradients,
 * JSON header) is owned by the MHD_Response and freed by its free callback.
 */
#ifndef YLS_SERVER_H
#define YLS_SERVER_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>
#include <uv.h>

#include "yololoss.h"
#include "yldecode.h"
#include "yleval.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "yololossd assumes a little-endian host (the binary tensor format is little-endian)"
#endif

#define YLS_NAME "yololossd"
#define YLS_VERSION YL_VERSION

/* ------------------------------------------------------------------------------------ */
/* Failures: an HTTP status and a complete message, passed up to the one error reply.    */

#define YLS_MSG_MAX 512
typedef struct {
    unsigned status; /* 0: no failure */
    char msg[YLS_MSG_MAX];
} yls_fail;

/* Record the first failure only (later ones are consequences); returns -1 for `return`. */
int yls_fail_set(yls_fail *f, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------------------ */
/* Options (options.c).                                                                 */

typedef struct {
    const char *host;         /* 127.0.0.1 */
    unsigned port;            /* 8000; 0: an ephemeral port */
    unsigned threads;         /* libuv pool size; default: all cores */
    unsigned max_inflight;    /* infer requests queued or running before 503 */
    uint64_t max_body;        /* bytes of a request body, raw and inflated */
    uint64_t max_json;        /* bytes of the JSON part of a request, and of a JSON response */
    uint64_t max_memory;      /* bytes admitted requests may hold in sum; 0: no budget */
    unsigned timeout;         /* idle connection timeout, seconds; 0: none */
    unsigned drain_grace;     /* seconds after SIGTERM of ready=400 while still serving */
    unsigned max_per_address; /* open connections from one client address; 0: no limit */
    unsigned ipv6_prefix;     /* bits of an IPv6 address that make one client (64) */
    const char *token_file;   /* bearer token, NULL: no auth */
    const char *models_file;  /* extra models, NULL: only the built-in ones */
    const char *history;      /* "none", PATH or sqlite:PATH */
    unsigned metrics_max_runs; /* runs with loss gauges in /metrics */
    int64_t image_history_steps; /* per-image rows kept: a run's last N steps (0: none) */
    const char *image_url;     /* link template of an image, "{id}" replaced; NULL: none */
    int shared_memory;        /* YLS_SHM_AUTO (on when listening on loopback), _ON, _OFF */
    unsigned max_streams;      /* event streams open at once */
    unsigned heartbeat;        /* seconds between event-stream heartbeats; 0: none */
} yls_options;

enum { YLS_SHM_AUTO = 0, YLS_SHM_ON, YLS_SHM_OFF }; /* --shared-memory */

/* 0: run; 1: exit 0 (--help, --version printed); -1: exit 2 (message printed). */
int yls_options_parse(yls_options *o, int argc, char **argv);

/* ------------------------------------------------------------------------------------ */
/* Statistics (stats.c): Triton's statistics extension, per model.                      */

typedef struct {
    uint64_t count;
    uint64_t ns;
} yls_duration;

typedef struct {
    uint64_t last_inference_ms; /* wall clock, ms since the epoch, of the last success */
    uint64_t inference_count;   /* images of successful requests */
    uint64_t execution_count;   /* successful requests */
    yls_duration success, fail, queue, compute_input, compute_infer, compute_output;
} yls_model_stats;

/* ------------------------------------------------------------------------------------ */
/* Models (models.c).                                                                   */

#define YLS_MODEL_NAME_MAX 64
typedef struct {
    char name[YLS_MODEL_NAME_MAX];
    yl_config cfg;    /* anchors and ignore_thresh; requests may override both */
    int num_layers;   /* num_anchors / 3 */
    int eval;         /* -1: a loss model; else an evaluation model of this yle_convention
                         (v2/eval.c: coco-bbox, voc07, voc) */
    yls_model_stats stats;
} yls_model;

typedef struct {
    yls_model *v;
    size_t n;
} yls_models;

/* yolov3 and yolov3-tiny, then the models of path (NULL: none). 0 or -1 with err set. */
int yls_models_init(yls_models *m, const char *path, char *err, size_t errlen);
void yls_models_free(yls_models *m);
yls_model *yls_models_find(const yls_models *m, const char *name, size_t len);
/* "10,13,16,30,..." in buf. */
void yls_anchors_format(const yl_config *cfg, char *buf, size_t len);
/* Parse "w,h,w,h,..." (12 or 18 numbers, positive and finite) into cfg. */
int yls_anchors_parse(yl_config *cfg, const char *s, yls_fail *f);

/* ------------------------------------------------------------------------------------ */
/* The server and its requests.                                                         */

typedef struct yls_server yls_server;
typedef struct yls_request yls_request;
typedef struct yls_route_entry yls_route_entry;
typedef enum MHD_Result yls_handler(yls_request *r);
typedef struct yls_infer yls_infer;
typedef struct yls_history yls_history;
typedef struct yls_metrics yls_metrics;
typedef struct yls_sse yls_sse;

#define YLS_RUN_MAX 64 /* bytes of a run name, with its NUL */
#define YLS_REGION_MAX 128 /* bytes of a shared-memory region name, with its NUL */

struct yls_server {
    uv_loop_t loop;
    yls_options opt;
    yls_models models;
    char *token; /* NULL: no auth */
    size_t token_len;

    struct MHD_Daemon *mhd;
    uv_poll_t mhd_poll;   /* on libmicrohttpd's epoll fd */
    uv_timer_t mhd_timer; /* libmicrohttpd's next timeout */
    uv_timer_cb mhd_timer_cb; /* its callback: MHD_run (http.c), for yls_http_wake */
    uv_signal_t sigterm, sigint;
    bool handles_open;

    bool ready;        /* false while starting and draining */
    bool signalled;    /* SIGTERM/SIGINT seen: ready says no (from the first moment) */
    bool draining;     /* new requests refused: after --drain-grace */
    uv_timer_t grace;  /* --drain-grace */
    bool stopping;     /* shutdown started */
    unsigned inflight; /* infer requests whose body is complete, not yet completed */
    unsigned uploading; /* infer requests admitted on their headers, body still arriving */
    yls_request *uploads; /* those, listed (upload.c) */
    uint64_t promises_dropped; /* stalled uploads that lost their memory promise */
    uint64_t gone_requests, gone_images; /* clients that left during compute; images skipped */
    uint64_t header_timeouts; /* connections shut for not completing headers in --timeout */
    unsigned pending;  /* other requests suspended waiting on a history thread */
    atomic_uint pool_waiting; /* work items queued on the pool, not started (http/pool.c) */
    uv_async_t pool_async;    /* messages from pool threads to the loop (http/pool.c) */
    uv_mutex_t pool_mu;
    struct yls_loop_msg *pool_msgs;
    bool pool_open;

    yls_history *history; /* NULL: --history none */
    yls_metrics *metrics;
    yls_sse *sse;         /* open event streams */
    struct yls_shm *shm;  /* registered shared-memory regions; NULL: the extension is off */
    unsigned nsse;        /* how many */
    uv_timer_t sse_timer; /* their heartbeat */
    bool sse_timer_on;
    uint64_t t_started;   /* wall clock, seconds since the epoch */

    /* given by main: the router (table and model lookup), and the hook http calls after
     * each libmicrohttpd run (main stops the server there once draining is done) */
    const struct yls_router *router;
    void (*after_run)(yls_server *s);
};

/* Routing (http/router.c matches; the table itself is server/routes.c).
 *
 * ONE TABLE decides both dispatch and the token rule: yls_routes[] in server/routes.c, one
 * line per {method, pattern, handler, token, upload}. To add an endpoint, write its handler
 * (enum MHD_Result f(yls_request *r), called once the whole request is there; it answers
 * with yls_reply*, or suspends r and answers later) and add one line to that table; the
 * transport (http/) never names an endpoint. Patterns are literal text with captures:
 *   {model}    one path segment, a model of the table (unknown: 404 naming it)
 *   {version}  one path segment, "1" (else 404)
 *   {run}      the rest of the path up to the pattern's literal suffix, 1 to YLS_RUN_MAX-1
 *              bytes, '/' allowed (a run name)
 *   {asset}    the rest of the path (a dashboard file name)
 *   {image}    the last path segment, after a {run}: an image id, 0 to 2^63 - 1 (else 404)
 *   {region}   one path segment, a shared-memory region name (1 to YLS_REGION_MAX-1 bytes)
 * The first entry whose pattern matches the path wins; the entries with the same pattern
 * give its methods (405 with Allow otherwise; "GET" answers HEAD too). A request that
 * matches no entry needs the token (401 before 404/405, so that unauthenticated clients
 * learn nothing); --help lists the public patterns from the same table. */
struct yls_route_entry {
    const char *method;  /* "GET" (and HEAD), "POST", "DELETE", ... */
    const char *pattern; /* "/v2/models/{model}/infer" */
    yls_handler *serve;
    bool token;          /* needs the bearer token when --token-file is set */
    /* NULL: a body is read and dropped. Else the body is kept (--max-body/--max-json,
     * Content-Encoding), the request counts against --max-inflight, and on_complete is
     * called when the request ends, however it ends (statistics). */
    void (*on_complete)(yls_request *r);
    /* a small JSON body (at most YLS_API_BODY_MAX bytes, uncompressed) is kept, without
     * counting against --max-inflight: the /v1 writes (PUT config, POST scalars) */
    bool json_body;
};

#define YLS_API_BODY_MAX (64 * 1024)

/* The entry that matched, and what its pattern captured. */
typedef struct {
    const yls_route_entry *entry; /* NULL: no match */
    yls_model *model;             /* {model} */
    char run[YLS_RUN_MAX];        /* {run} */
    const char *asset;            /* {asset}: points into the URL */
    int64_t image;                /* {image} */
    char region[YLS_REGION_MAX];  /* {region}: a shared-memory region name */
    char allow[48];               /* for a 405: the methods the path takes */
} yls_route;

/* server/routes.c: the table, ended by an entry with a NULL method. */
extern const yls_route_entry yls_routes[];

/* What the transport routes with: a table, and the lookup of a {model} capture (NULL:
 * unknown). Given by main (server/routes.c: yls_daemon_router, the table above and the
 * v2 model table), so http/ never names a protocol function (tests/server/layers.sh). */
typedef struct yls_router {
    const yls_route_entry *table;
    yls_model *(*find_model)(const yls_server *s, const char *name, size_t len);
} yls_router;

extern const yls_router yls_daemon_router;

/* Match method and url against the router's table. 0, or -1 with f set (404 unknown path,
 * model or version, 405 with out->allow set); out->entry is the matched entry or NULL. */
int yls_route_match(const yls_router *router, const yls_server *s, const char *method,
                    const char *url, yls_route *out, yls_fail *f);
/* Whether every {run} pattern's path with name in place reaches its own entry with that
 * run (a name ending "/steps" does not): 0, or -1 with a 400 naming the path that does not. */
int yls_route_run_name_check(const yls_router *router, const yls_server *s, const char *name,
                             yls_fail *f);

/* Content codings (encoding.c). */
typedef enum { YLS_ENC_IDENTITY = 0, YLS_ENC_GZIP, YLS_ENC_DEFLATE } yls_encoding;

/* A Content-Encoding header value: 0 with *enc set, or -1 (unsupported: 501). */
int yls_encoding_parse(const char *value, yls_encoding *enc);
/* The best coding an Accept-Encoding header allows (gzip > deflate > identity). */
yls_encoding yls_encoding_accept(const char *value);
const char *yls_encoding_name(yls_encoding enc);
/* Inflate in[0..in_len) into a new malloc'd buffer that starts pad bytes before the data;
 * more than limit bytes of output: 413. 0 or -1 with f set. */
int yls_inflate(yls_encoding enc, const uint8_t *in, size_t in_len, size_t limit, size_t pad,
                uint8_t **base, uint8_t **out, size_t *out_len, yls_fail *f);
/* Compress the iovecs into one malloc'd buffer. 0 or -1 with f set. */
int yls_deflate(yls_encoding enc, const struct MHD_IoVec *iov, int niov, uint8_t **out,
                size_t *out_len, yls_fail *f);

/* The request body as received, owned by the request. data = base + pad, where pad makes
 * the binary part (after the JSON header) 16-byte aligned when the header length is known. */
typedef struct {
    uint8_t *base;
    uint8_t *data;
    size_t len, cap, pad;
} yls_body;

struct yls_request {
    yls_server *srv;
    struct MHD_Connection *conn;
    uint64_t t_start; /* uv_hrtime() at the first call */
    char method[8];
    bool http11; /* HTTP/1.1 (Expect: 100-continue means something) */
    char *path;
    yls_route route;
    const char *allow;      /* for a 405: route.allow */

    /* body */
    bool want_body;        /* an infer request whose body we keep */
    bool uploading;        /* admitted, body still arriving: counted in srv->uploading */
    bool counted;          /* counted in srv->inflight (from the end of its body) */
    yls_body body;
    uint64_t reserve;      /* memory budget reserved for what the body decodes into */
    uint64_t bytes_in;     /* raw body bytes received */
    uint64_t body_limit;   /* raw bytes allowed */
    uint64_t body_expect;  /* Content-Length of an upload, 0 if absent: the buffer's top */
    uint64_t promise;      /* budget promised to the upload, not yet taken (upload.c) */
    yls_request *up_prev, *up_next; /* srv->uploads */
    int64_t header_len;    /* Inference-Header-Content-Length, -1 if absent */
    yls_encoding encoding; /* Content-Encoding of the body */
    yls_encoding accept;   /* coding chosen for the response */
    yls_fail early;        /* failure found while the body arrived, replied at the end */

    /* reply */
    bool suspended;
    struct MHD_Response *response; /* made, not yet queued (after a resume) */
    unsigned status;
    uint64_t bytes_out;
    uint64_t t_reply; /* uv_hrtime() when the answer was made */
    bool completed_ok; /* libmicrohttpd sent all of it */
    int64_t images;
    char run[YLS_RUN_MAX];
    int64_t step; /* -1: none */
    bool has_step;

    /* the handler's state (an infer job): freed with the request by work_free */
    void *work;
    void (*work_free)(void *work);
    /* set by a handler that suspends r: its client left (http.c polls the socket) */
    void (*on_gone)(yls_request *r);
    bool gone;
    uv_poll_t *watch;
};

/* http.c: libmicrohttpd in the loop, one request's life */
int yls_http_start(yls_server *s);
void yls_http_stop(yls_server *s);
/* Let libmicrohttpd do what is pending (after a resume) and re-arm its timer. */
void yls_http_kick(yls_server *s);
/* conn_watch.c: the socket of a connection libmicrohttpd does not read (a suspended request,
 * an event stream), watched in the loop: cb(p, status, events) runs when it is readable or
 * hung up (events: UV_READABLE and/or UV_DISCONNECT); p->data is data, NULL after
 * yls_conn_unwatch. NULL when the socket cannot be watched. */
uv_poll_t *yls_conn_watch(yls_server *s, struct MHD_Connection *conn, int events,
                          uv_poll_cb cb, void *data);
void yls_conn_unwatch(uv_poll_t **p);
/* In such a callback: did the client leave (end of file, an error), rather than send bytes? */
bool yls_conn_peer_gone(uv_poll_t *p, int status, int events);
/* idle.c: a connection between requests (before its first request's headers are complete,
 * between keep-alive requests) is watched for the client's hang-up, which libmicrohttpd can
 * miss. Open when the connection opens (socket_context: libmicrohttpd's per-connection
 * pointer), pause when a request's headers are complete, resume when it is done. */
void yls_idle_open(yls_server *s, struct MHD_Connection *c, void **socket_context);
void yls_idle_close(void **socket_context);
void yls_idle_pause(struct MHD_Connection *c);
void yls_idle_resume(struct MHD_Connection *c);
/* suspend.c: a request whose answer comes later. Suspend r while its work runs on the pool
 * (its socket is watched when r->on_gone is set: a client that leaves calls it), and
 * resume it (yls_reply does). */
void yls_request_suspend(yls_request *r);
void yls_request_resume(yls_request *r);
/* After on_gone, once nothing works on r any more: close its connection, no answer. */
void yls_request_abandon(yls_request *r);
/* Watch r's socket (events: UV_READABLE and/or UV_DISCONNECT) until unwatched, resumed or
 * abandoned: an upload's end of file, a suspended request's client leaving. */
void yls_request_watch(yls_request *r, int events);
void yls_request_unwatch(yls_request *r);
/* Have libmicrohttpd run soon (after resuming a connection outside its callbacks). */
void yls_http_wake(yls_server *s);
/* Make libmicrohttpd read connection c now (suspend, resume, wake): for an end of file it
 * missed (an upload's, a hang-up between requests). */
void yls_conn_reread(yls_server *s, struct MHD_Connection *c);
const char *yls_header(const yls_request *r, const char *name);
/* upload.c: an upload's memory. Admit r (r->body_expect set) with a promise of its body and
 * twice its size, listed in srv->uploads and counted in srv->uploading (0, or -1 with f
 * set: 503); end it (the promise left given back; safe to call twice); append a chunk to
 * r's body, taking its memory as it comes (0, or -1 with r->early set). */
int yls_upload_admit(yls_request *r, yls_fail *f);
void yls_upload_end(yls_request *r);
int yls_body_append(yls_request *r, const char *data, size_t size);
/* Bytes per second an upload must average: past --timeout it is cut, past 2 s its memory
 * promise may be dropped (upload.c). */
#define YLS_MIN_UPLOAD_RATE (64.0 * 1024)

/* pool.c: work on the libuv pool (UV_THREADPOOL_SIZE = --threads), counted while it waits
 * for a thread. Embed a yls_work and queue it from the loop thread; work runs on a pool
 * thread, after on the loop thread (status UV_ECANCELED: work never ran). */
typedef struct yls_work {
    uv_work_t req;
    yls_server *srv;
    void (*work)(struct yls_work *w);
    void (*after)(struct yls_work *w, int status);
} yls_work;
int yls_pool_queue(yls_server *s, yls_work *w, void (*work)(yls_work *w),
                   void (*after)(yls_work *w, int status));
int yls_pool_cancel(yls_work *w); /* uv_cancel: 0 when it had not started */
/* Items queued and not started yet (any thread; a hint, it changes as you read it). */
unsigned yls_pool_waiting(const yls_server *s);
/* A message from a pool thread to the loop thread, for work that wants the loop's help
 * before it ends (its after callback would come too late): yls_pool_tell (any thread) has
 * cb(m) called on the loop thread soon, unless the loop thread takes it back first with
 * yls_pool_untell (true when it was still pending). A message is pending at most once. */
typedef struct yls_loop_msg {
    struct yls_loop_msg *next;
    bool pending; /* under pool_mu */
    void (*cb)(struct yls_loop_msg *m);
} yls_loop_msg;
void yls_pool_tell(yls_server *s, yls_loop_msg *m);
bool yls_pool_untell(yls_server *s, yls_loop_msg *m);
/* The message handle: opened after uv_loop_init, closed before the loop's last run (it does
 * not keep the loop alive: work in flight does). */
int yls_pool_open(yls_server *s);
void yls_pool_close(yls_server *s);

/* mhd_errors.c: queue the daemon's own answer (libmicrohttpd's own error answers, queued
 * without it, get JSON bodies there). */
enum MHD_Result yls_mhd_queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *resp);

/* reply.c: the one reply helper. Queue resp (ownership taken) as the answer to r: now when
 * r is inside the access handler, or after resuming r when it is suspended. bytes: body
 * size for the access log. */
enum MHD_Result yls_reply(yls_request *r, unsigned status, struct MHD_Response *resp,
                          uint64_t bytes);
/* A JSON body (takes ownership of text, malloc'd) with Content-Type application/json. */
enum MHD_Result yls_reply_json(yls_request *r, unsigned status, char *text);
/* Content-Security-Policy and friends, on every monitoring response. */
void yls_safe_headers(struct MHD_Response *resp);
/* No answer can be made (out of memory): close r's connection, suspended or not (a
 * suspended request must never be left suspended: it would hold its slot and shutdown). */
enum MHD_Result yls_reply_none(yls_request *r);
/* Out of memory making an answer: a fixed JSON body with Retry-After (status, or 503 below
 * 500), or yls_reply_none when even that cannot be made. */
enum MHD_Result yls_reply_oom(yls_request *r, unsigned status);
/* YLOLOSSD_FAULT=reply-oom (tests only): replies act as if memory were out. */
bool yls_fault_reply_oom(void);

/* errors.c: the one error reply, {"error": msg} with the status's extra headers. */
enum MHD_Result yls_reply_error(yls_request *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum MHD_Result yls_reply_fail(yls_request *r, const yls_fail *f);

/* endpoints.c: the v2 endpoints that answer at once (handlers of the route table). */
yls_handler yls_ep_live, yls_ep_ready, yls_ep_server_meta, yls_ep_model_meta,
    yls_ep_model_ready, yls_ep_model_config, yls_ep_model_stats, yls_ep_all_stats;

/* v2/shm_endpoints.c: Triton's system shared-memory extension (the registry is v2/shm.h). */
yls_handler yls_ep_shm_status, yls_ep_shm_register, yls_ep_shm_unregister;

/* infer.c: parse and compute on the pool, then reply (the infer route's handler). */
enum MHD_Result yls_infer_start(yls_request *r);
/* eval.c: the infer route of an evaluation model (yls_infer_start hands it over). */
enum MHD_Result yls_eval_start(yls_request *r);
/* Add a finished infer request to its model's statistics (its route's on_complete). */
void yls_infer_account(yls_request *r);

/* stats.c */
void yls_stats_add(yls_duration *d, uint64_t ns);
char *yls_stats_json(const yls_models *models, const yls_model *only);

/* bufcache.c: buffers of a MiB or more are kept for reuse (glibc would unmap them and
 * the next request would fault their pages in again). Any thread. Not zeroed. */
void *yls_big_alloc(size_t n);
void *yls_big_realloc(void *p, size_t n);
void yls_big_free(void *p);
void yls_big_trim(void); /* free what is kept (at exit, or to fit the budget) */

/* budget.c: the memory budget of admitted requests (--max-memory). Any thread. */
void yls_budget_init(uint64_t max); /* 0: none; also counts jansson's allocations */
uint64_t yls_budget_default(void);  /* 3/4 of MemAvailable or the cgroup limit */
bool yls_budget_take(uint64_t n);   /* count n bytes, or false (over the budget) */
/* A promise of n bytes to an upload (upload.c): refused when what is counted and promised
 * would pass the budget; never checked by allocations. */
bool yls_budget_promise(uint64_t n);
void yls_budget_unpromise(uint64_t n);
void yls_budget_force(uint64_t n);  /* count n bytes already allocated, never refused */
/* A new block: from this thread's credit first, then yls_budget_take. */
bool yls_budget_take_block(uint64_t n);
/* A request's reservation (counted already) as this thread's credit, and what is left. */
void yls_budget_credit_begin(uint64_t n);
uint64_t yls_budget_credit_end(void);
void yls_budget_give(uint64_t n);
uint64_t yls_budget_used(void);
uint64_t yls_budget_max(void);
uint64_t yls_budget_peak(void);
/* Whether this thread was refused since the last call (and clear it). */
bool yls_budget_hit(void);
/* Set f (overwriting) to the 503 of a refusal; what: "a 12345-byte body". -1. */
int yls_budget_fail(yls_fail *f, const char *what);
/* Count (and refuse) jansson's allocations on this thread until the end (a body's parse);
 * only inside a credit bracket (what the scope counted returns with the credit). */
void yls_budget_scope_begin(void);
void yls_budget_scope_end(void);

/* peers.c: open connections per client address (--max-connections-per-address). */
struct sockaddr;
bool yls_peer_admit(const struct sockaddr *sa, unsigned limit); /* 0: no limit */
/* IPv6 clients are counted by prefix of this many bits (--ipv6-prefix; 128: per address). */
void yls_peer_ipv6_prefix(unsigned bits);
void yls_peer_opened(const struct sockaddr *sa);
void yls_peer_closed(const struct sockaddr *sa);

/* auth.c */
int yls_auth_load(yls_server *s, const char *path, char *err, size_t errlen);
bool yls_auth_ok(const yls_server *s, const char *authorization);

/* access_log.c: one line per request on stdout. */
void yls_access_log(const yls_request *r, const char *client);

/* ------------------------------------------------------------------------------------ */
/* Monitoring (history.h has the history threads and the storage).                       */

/* record.c: for an infer request with `run`, record its point and send resp (taken over)
 * once it is committed (or a 503 when it cannot be). false: no run, reply as usual. */
struct yls_point_src {
    const yl_result *res;
    int64_t batch;
    const yl_image_result *images; /* [batch] */
    const int64_t *image_ids;      /* [batch], or NULL: no per-image rows */
    /* an evaluated batch (parameter "eval"): per image its records (yls_eval_image), or
     * NULL: none; the hop takes them over (they are set to NULL) */
    void **eval_blob;
    size_t *eval_len;
    int num_classes;
};

/* eval_records.c: image b of a box problem decoded as keras's yolo_eval does (dc) and
 * evaluated against its boxes (COCO bbox, category = class id, annotation id = row + 1,
 * area = w * h, padding rows skipped) under image_id: its records as one blob (counted
 * memory, yls_big_free) of *blob_len bytes. 0; -1 with err (a 400: the decode's or the
 * evaluator's message, naming the image); -2 out of memory (the budget). Pure, any thread. */
int yls_eval_image(const yl_problem *p, int64_t b, const yl_decode_config *dc, int64_t image_id,
                   void **blob, size_t *blob_len, yl_error *err);
/* A stored blob back as yle_image_result pointers into it (blob 8-byte aligned); 0, or -1
 * when it is not a well-formed blob. */
int yls_eval_blob_view(const void *blob, size_t len, int64_t image_id, yle_image_result *out);
/* The COCO parameters of a stream's evaluation: pycocotools' defaults, categories 0..C-1
 * (cat_ids: C of them, filled), images img_ids[0..n_img). */
int yls_eval_params(yle_params *ep, int num_classes, const int64_t *img_ids, int64_t n_img,
                    int64_t *cat_ids);
bool yls_record_reply(yls_request *r, const struct yls_point_src *src, struct MHD_Response *resp,
                      uint64_t bytes);
/* Send the points other replicas record (PostgreSQL history) to this daemon's streams. */
void yls_record_follow_replicas(yls_server *s);

/* api_runs.c: the /v1/runs endpoints (but events). */
yls_handler yls_api_runs, yls_api_steps, yls_api_csv, yls_api_delete;
/* api_images.c: the images ranking and one image's rows. */
yls_handler yls_api_images, yls_api_image;
/* api_eval.c: a run's streamed evaluation at a step, and the steps that have one. */
yls_handler yls_api_eval, yls_api_eval_steps;
/* api_config.c: a run's configuration and scalars. */
yls_handler yls_api_config_get, yls_api_config_put, yls_api_scalars_get, yls_api_scalars_post;
/* Suspend/resume a non-infer request waiting on a history thread. */
void yls_pending_begin(yls_request *r);
void yls_pending_end(yls_request *r);

/* sse.c: Server-Sent Events of new points, of some runs or all. */
enum MHD_Result yls_sse_serve(yls_request *r);
void yls_sse_publish(yls_server *s, const char *run, int64_t step, const char *json);
void yls_sse_close_all(yls_server *s); /* end every stream (draining) */
void yls_sse_shutdown(yls_server *s);  /* close the heartbeat timer (stopping) */
unsigned yls_sse_count(const yls_server *s);

/* metrics.c: Prometheus text format. */
yls_metrics *yls_metrics_new(const yls_server *s);
void yls_metrics_free(yls_metrics *m);
/* A finished infer request (completion, loop thread). */
void yls_metrics_infer(yls_server *s, const yls_request *r, double total_s, double queue_s,
                       double compute_s);
void yls_metrics_point(yls_server *s, const char *run, int64_t step, const double terms[4],
                       double total, double wall);
enum MHD_Result yls_metrics_serve(yls_request *r);
/* The next step of a run known to the metrics (0 when unknown): --history none. */
int64_t yls_metrics_next_step(yls_server *s, const char *run);
void yls_metrics_forget(yls_server *s, const char *run);

/* dashboard.c: GET / and its assets. */
enum MHD_Result yls_dashboard_serve(yls_request *r);

/* ------------------------------------------------------------------------------------ */
/* Healthcheck client mode (healthcheck.c): `yololossd --healthcheck [URL]` GETs URL
 * (default http://127.0.0.1:8000/v2/health/ready) and returns the exit status: 0 on 200. */
int yls_healthcheck(const char *url);

#endif /* YLS_SERVER_H */
