/*
 * http.c: libmicrohttpd inside the libuv loop, and the life of one request.
 *
 * libmicrohttpd runs without threads of its own, in "external epoll" mode: the loop polls
 * its epoll fd (uv_poll) and keeps a timer at MHD_get_timeout; either calls MHD_run, which
 * accepts, reads, calls the access handler below and writes, never blocking. A request that
 * computes is suspended (MHD_suspend_connection) while its work runs on the libuv pool, and
 * resumed with its response ready; MHD_resume_connection wakes the epoll fd.
 *
 * The access handler is called once with the headers, once per chunk of body, and once
 * at the end (libmicrohttpd's protocol). With the headers we route, check the token, the
 * overload and drain state, the content coding and the size limits (413 decided from
 * Content-Length before any body is read); body chunks are appended to a buffer sized from
 * Content-Length (or grown up to the limit); at the end the infer request starts. Failures
 * seen while the body arrives are kept and answered at the end, because libmicrohttpd only
 * takes a response with the headers or after the whole body.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define INFERENCE_HEADER "Inference-Header-Content-Length"
#define INITIAL_BODY_CAP (64 * 1024)

const char *yls_header(const yls_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* A decimal byte count, nothing else (spaces around allowed). */
static bool parse_u64(const char *s, uint64_t *out)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    *out = v;
    return *s == '\0';
}

/* --------------------------------------------------------------------------------------- */
/* The access handler                                                                        */

static yls_request *request_new(yls_server *s, struct MHD_Connection *c, const char *method,
                                const char *url, const char *version)
{
    yls_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->srv = s;
    r->conn = c;
    r->t_start = uv_hrtime();
    snprintf(r->method, sizeof r->method, "%s", method);
    r->http11 = !strcmp(version, MHD_HTTP_VERSION_1_1);
    r->path = strdup(url);
    r->header_len = -1;
    r->step = -1;
    if (!r->path) {
        free(r);
        return NULL;
    }
    return r;
}

static void request_free(yls_request *r)
{
    yls_request_unwatch(r);
    if (r->response)
        MHD_destroy_response(r->response);
    yls_big_free(r->body.base);
    yls_budget_give(r->reserve);
    if (r->work_free)
        r->work_free(r->work);
    free(r->path);
    free(r);
}

/*
 * Refusing a request before its body is read. A client that sent "Expect: 100-continue"
 * (HTTP/1.1) waits for our answer before it sends the body: it gets the refusal on the
 * headers call, so libmicrohttpd sends it instead of "100 Continue" and no body byte
 * travels for nothing (the connection then closes, as the unsent body cannot be skipped).
 * Any other client is writing its body: answering and closing then makes the kernel reset
 * the connection under the unread data, and the client may lose the answer. So the body is
 * read and dropped (never kept) and the answer is sent after it, unless the body is larger
 * than DRAIN_MAX. A request without a body is answered on the final call too, which keeps
 * the connection.
 */
#define DRAIN_MAX (64ull * 1024 * 1024)

static bool expects_continue(const yls_request *r)
{
    const char *ex = yls_header(r, MHD_HTTP_HEADER_EXPECT);
    return r->http11 && ex && !strcasecmp(ex, "100-continue");
}

static bool body_follows(const yls_request *r, uint64_t *len)
{
    const char *cl = yls_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = yls_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    *len = 0;
    if (cl && parse_u64(cl, len))
        return *len > 0;
    return te != NULL;
}

static enum MHD_Result refuse(yls_request *r, const yls_fail *f)
{
    uint64_t len;
    bool body = body_follows(r, &len);
    if (body && (expects_continue(r) || len > DRAIN_MAX))
        return yls_reply_fail(r, f); /* now, on the headers call */
    r->early = *f;
    r->want_body = false;
    return MHD_YES;
}

/* Headers of a request whose body is kept (an infer request): overload, draining, coding and
 * size limits. 0 or -1 with f set. */
static int upload_headers(yls_request *r, yls_fail *f)
{
    yls_server *s = r->srv;
    const yls_options *o = &s->opt;
    if (s->draining)
        return yls_fail_set(f, 503, "the server is shutting down");
    if (s->inflight >= o->max_inflight)
        return yls_fail_set(f, 503,
                            "overloaded: %u infer requests are queued or running "
                            "(--max-inflight %u); retry later",
                            s->inflight, o->max_inflight);
    const char *ce = yls_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (yls_encoding_parse(ce, &r->encoding))
        return yls_fail_set(f, 501,
                            "unsupported Content-Encoding '%.100s' (gzip, deflate or identity)", ce);
    r->accept = yls_encoding_accept(yls_header(r, MHD_HTTP_HEADER_ACCEPT_ENCODING));
    const char *ih = yls_header(r, INFERENCE_HEADER);
    if (ih) {
        uint64_t v;
        if (!parse_u64(ih, &v) || v > INT64_MAX)
            return yls_fail_set(f, 400, INFERENCE_HEADER " '%.100s' is not a number of bytes", ih);
        r->header_len = (int64_t)v;
        if (v > o->max_json)
            return yls_fail_set(f, 413,
                                "the JSON header is %" PRIu64 " bytes, over the limit of %" PRIu64
                                " (--max-json)",
                                v, o->max_json);
    }
    uint64_t limit = r->header_len >= 0 ? o->max_body : o->max_json;
    const char *limit_flag = r->header_len >= 0 ? "--max-body" : "--max-json";
    const char *cl = yls_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t clen = 0;
    bool has_cl = cl && parse_u64(cl, &clen);
    if (has_cl && clen > limit)
        return yls_fail_set(f, 413,
                            "the request body is %" PRIu64 " bytes, over the limit of %" PRIu64
                            " (%s)",
                            clen, limit, limit_flag);
    if (has_cl && r->encoding == YLS_ENC_IDENTITY && r->header_len >= 0 &&
        (uint64_t)r->header_len > clen)
        return yls_fail_set(f, 400,
                            INFERENCE_HEADER " %" PRId64 " is larger than the body (%" PRIu64
                            " bytes)",
                            r->header_len, clen);
    /* pad so that the binary part (after the JSON header) is 16-byte aligned */
    r->body.pad = r->encoding == YLS_ENC_IDENTITY && r->header_len >= 0
                      ? (size_t)((16 - (uint64_t)r->header_len % 16) % 16)
                      : 0;
    /* admitted if the body and what it decodes into would fit; held as it arrives (upload.c) */
    r->body_expect = has_cl ? clen : 0;
    if (yls_upload_admit(r, f))
        return -1;
    uint64_t first = has_cl ? clen : limit;
    r->body.cap = first < INITIAL_BODY_CAP ? (size_t)first : INITIAL_BODY_CAP;
    yls_budget_hit();
    r->body.base = yls_big_alloc(r->body.pad + r->body.cap + 1);
    if (!r->body.base) {
        char what[64];
        snprintf(what, sizeof what, "a %zu-byte body", r->body.cap);
        yls_upload_end(r);
        if (yls_budget_hit())
            return yls_budget_fail(f, what);
        return yls_fail_set(f, 503, "out of memory for %s; retry later", what);
    }
    r->body.data = r->body.base + r->body.pad;
    r->body_limit = limit;
    r->want_body = true; /* in flight only once the body is complete (on_access) */
    yls_request_watch(r, UV_DISCONNECT);
    return 0;
}

/* Headers of a request with a small JSON body (the /v1 writes): kept whole, up to
 * YLS_API_BODY_MAX bytes, uncompressed; not counted against --max-inflight (the history
 * thread's FIFO is their queue). 0 or -1 with f set. */
static int json_body_headers(yls_request *r, yls_fail *f)
{
    const char *ce = yls_header(r, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && strcasecmp(ce, "identity"))
        return yls_fail_set(f, 415, "Content-Encoding '%.100s' is not taken here (send plain JSON)",
                            ce);
    const char *cl = yls_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t clen = 0;
    bool has_cl = cl && parse_u64(cl, &clen);
    if (has_cl && clen > YLS_API_BODY_MAX)
        return yls_fail_set(f, 413, "the request body is %" PRIu64 " bytes, over the limit of %d",
                            clen, YLS_API_BODY_MAX);
    r->body.cap = has_cl ? (size_t)clen : 4096;
    r->body.base = yls_big_alloc(r->body.cap + 1);
    if (!r->body.base)
        return yls_fail_set(f, 503, "out of memory for a %zu-byte body; retry later", r->body.cap);
    r->body.data = r->body.base;
    r->body_limit = YLS_API_BODY_MAX;
    r->want_body = true;
    return 0;
}

/* Two Content-Length headers that disagree: a proxy in front may have framed the body by
 * the other one, so what follows the body here would be a request it never saw (request
 * smuggling). libmicrohttpd reads the first. Repeats of one value are harmless (RFC 9112
 * 6.3 allows merging them). */
typedef struct {
    const char *first;
    bool differ;
} cl_seen;

static enum MHD_Result on_header_value(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    cl_seen *c = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        return MHD_YES;
    if (!c->first)
        c->first = value ? value : "";
    else if (strcmp(c->first, value ? value : ""))
        c->differ = true;
    return MHD_YES;
}

static bool content_lengths_differ(const yls_request *r)
{
    cl_seen c = {NULL, false};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, on_header_value, &c);
    return c.differ;
}

/* The first call: the headers are there. */
static enum MHD_Result on_headers(yls_request *r, const char *method, const char *url)
{
    yls_server *s = r->srv;
    yls_fail f = {0};
    if (content_lengths_differ(r)) {
        yls_fail_set(&f, 400, "two different Content-Length headers (send one)");
        r->route.entry = NULL;
        return yls_reply_fail(r, &f); /* the body's length is unknown: answer and close */
    }
    /* one table decides the endpoint and the token rule; no match needs the token too */
    int matched = yls_route_match(s->router, s, method, url, &r->route, &f);
    r->allow = r->route.allow;
    const yls_route_entry *e = r->route.entry;
    if (s->token && (!e || e->token) &&
        !yls_auth_ok(s, yls_header(r, MHD_HTTP_HEADER_AUTHORIZATION))) {
        memset(&f, 0, sizeof f);
        r->route.entry = NULL; /* not counted in any endpoint's statistics */
        yls_fail_set(&f, 401, "missing or wrong bearer token (send Authorization: Bearer <token>)");
    } else if (matched == 0) {
        if (!e->on_complete && !e->json_body)
            return MHD_YES; /* served on the final call, keeping the connection */
        if ((e->json_body ? json_body_headers(r, &f) : upload_headers(r, &f)) == 0)
            return MHD_YES;
    }
    return refuse(r, &f);
}

/* false: close the connection (a refused body larger than we drain). */
static bool on_body(yls_request *r, const char *data, size_t size)
{
    r->bytes_in += size;
    /* A body trickling in (a byte a second never leaves the connection idle) is cut once the
     * request is older than --timeout and has averaged under YLS_MIN_UPLOAD_RATE; a slow but
     * real upload (1 GiB over a modest link takes minutes) keeps going. */
    unsigned timeout = r->srv->opt.timeout;
    uint64_t age_ns = uv_hrtime() - r->t_start;
    if (timeout && age_ns > (uint64_t)timeout * 1000000000u &&
        (double)r->bytes_in < (double)YLS_MIN_UPLOAD_RATE * ((double)age_ns * 1e-9))
        return false;
    if (!r->want_body || r->early.status)
        return r->bytes_in <= DRAIN_MAX || !r->early.status; /* dropped */
    yls_body *b = &r->body;
    if (r->bytes_in > r->body_limit) {
        yls_fail_set(&r->early, 413, "the request body is over the limit of %" PRIu64 " bytes%s",
                     r->body_limit,
                     r->route.entry && r->route.entry->json_body ? ""
                     : r->header_len >= 0                       ? " (--max-body)"
                                                                : " (--max-json)");
        goto drop;
    }
    if (yls_body_append(r, data, size))
        goto drop;
    return true;
drop:
    yls_big_free(b->base);
    memset(b, 0, sizeof *b);
    return true;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size, void **con_cls)
{
    yls_server *s = cls;
    yls_request *r = *con_cls;
    if (!r) {
        /* the headers: from here on the request's own watches look after the socket */
        yls_idle_pause(c);
        r = request_new(s, c, method, url, version);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        return on_headers(r, method, url);
    }
    if (r->gone && !r->response)
        return MHD_NO; /* resumed after its client left: close */
    if (r->response) {
        /* resumed with the answer */
        struct MHD_Response *resp = r->response;
        r->response = NULL;
        enum MHD_Result ret = yls_mhd_queue(c, r->status, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (*upload_size) {
        bool go_on = on_body(r, upload_data, *upload_size);
        *upload_size = 0;
        return go_on ? MHD_YES : MHD_NO;
    }
    /* the whole request is there */
    if (r->uploading) {
        /* a slow or stalled upload held no slot; now it takes one, if there is one */
        yls_request_unwatch(r);
        yls_upload_end(r);
        if (!r->early.status && s->inflight >= s->opt.max_inflight)
            yls_fail_set(&r->early, 503,
                         "overloaded: %u infer requests are queued or running (--max-inflight "
                         "%u); retry later",
                         s->inflight, s->opt.max_inflight);
        r->counted = true;
        s->inflight++;
    }
    if (r->early.status)
        return yls_reply_fail(r, &r->early);
    return r->route.entry->serve(r);
}

/* A request's end (answered, refused or abandoned): the access log, its route's hook, its
 * counts and memory given back. */
static void request_done(yls_server *s, struct MHD_Connection *c, yls_request *r,
                         enum MHD_RequestTerminationCode toe)
{
    char client[INET6_ADDRSTRLEN] = "-";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, client,
                      sizeof client);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                      client, sizeof client);
    }
    r->completed_ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    yls_access_log(r, client);
    if (r->route.entry && r->route.entry->on_complete)
        r->route.entry->on_complete(r);
    if (r->counted)
        s->inflight--;
    yls_upload_end(r);
    request_free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    yls_server *s = cls;
    yls_request *r = *con_cls;
    if (r) {
        *con_cls = NULL;
        request_done(s, c, r, toe); /* its watches stop here */
    }
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        yls_idle_resume(c); /* kept alive: between requests again (one poll per socket) */
}

/* --------------------------------------------------------------------------------------- */
/* The loop glue                                                                             */

static void on_timer(uv_timer_t *t);

void yls_http_kick(yls_server *s)
{
    if (!s->mhd)
        return;
    MHD_run(s->mhd);
    if (s->after_run)
        s->after_run(s); /* may stop the server */
    if (!s->mhd)
        return;
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        uv_timer_start(&s->mhd_timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&s->mhd_timer);
}

static void on_timer(uv_timer_t *t) { yls_http_kick(t->data); }

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)events;
    if (status < 0)
        fprintf(stderr, YLS_NAME ": poll: %s\n", uv_strerror(status));
    yls_http_kick(p->data);
}

/* TCP keepalive on every connection: a client whose machine or network vanished sends no
 * FIN, and an idle or suspended connection would be held until --timeout (or forever with
 * --timeout 0). After 30 s of silence the kernel probes it every 10 s and gives up after 3
 * unanswered probes, so the connection errors and is closed (a suspended one is seen by
 * the socket watch). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    const union MHD_ConnectionInfo *ai =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (code != MHD_CONNECTION_NOTIFY_STARTED) {
        yls_idle_close(socket_context);
        yls_peer_closed(ai ? ai->client_addr : NULL);
        return;
    }
    yls_peer_opened(ai ? ai->client_addr : NULL);
    yls_idle_open(cls, c, socket_context);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return;
    int on = 1, idle = 30, intvl = 10, cnt = 3;
    setsockopt(ci->connect_fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* --max-connections-per-address (peers.c). */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    const yls_server *s = cls;
    return yls_peer_admit(addr, s->opt.max_per_address) ? MHD_YES : MHD_NO;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, YLS_NAME ": libmicrohttpd: %s\n", msg);
}

int yls_http_start(yls_server *s)
{
    const yls_options *o = &s->opt;
    yls_peer_ipv6_prefix(o->ipv6_prefix);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(o->host, NULL, &hints, &ai);
    if (gai != 0 || !ai) {
        fprintf(stderr, YLS_NAME ": --host %s: %s\n", o->host, gai_strerror(gai));
        return -1;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    /* A connection's memory pool holds its headers and read buffer; libmicrohttpd zeroes
     * all of it for every request on a kept-alive connection, so it stays small (larger
     * pools did not make uploads measurably faster once bodies were reused, bufcache.c). */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)&ss;
        sa6->sin6_port = htons((uint16_t)o->port);
        /* "::" means every address, IPv4 ones included (as --help says): libmicrohttpd sets
         * IPV6_V6ONLY unless asked for both stacks; IPv4 clients then show as ::ffff:a.b.c.d
         * (peers.c keys them as IPv4). A specific IPv6 address stays IPv6 only. */
        flags |= IN6_IS_ADDR_UNSPECIFIED(&sa6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    } else {
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)o->port);
    }
    s->mhd = MHD_start_daemon(flags, (uint16_t)o->port, on_accept, s, on_access, s,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)o->timeout,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                              MHD_OPTION_END);
    if (!s->mhd) {
        fprintf(stderr, YLS_NAME ": cannot listen on %s port %u\n", o->host, o->port);
        return -1;
    }
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    const union MHD_DaemonInfo *ei = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!pi || !ei) {
        fprintf(stderr, YLS_NAME ": libmicrohttpd gives no port or epoll fd\n");
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        return -1;
    }
    uv_poll_init(&s->loop, &s->mhd_poll, ei->epoll_fd);
    s->mhd_poll.data = s;
    uv_timer_init(&s->loop, &s->mhd_timer);
    s->mhd_timer.data = s;
    s->mhd_timer_cb = on_timer; /* for yls_http_wake (suspend.c) */
    uv_poll_start(&s->mhd_poll, UV_READABLE, on_poll);
    s->handles_open = true;

    char addr[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
    bool v6 = ss.ss_family == AF_INET6;
    fprintf(stderr, YLS_NAME ": listening on http://%s%s%s:%u\n", v6 ? "[" : "", addr,
            v6 ? "]" : "", (unsigned)pi->port);
    yls_http_kick(s);
    return 0;
}

void yls_http_stop(yls_server *s)
{
    if (s->handles_open) {
        uv_close((uv_handle_t *)&s->mhd_poll, NULL);
        uv_close((uv_handle_t *)&s->mhd_timer, NULL);
        s->handles_open = false;
    }
    if (s->mhd) {
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
    }
}
