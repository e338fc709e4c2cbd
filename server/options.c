/*
 * options.c: the command line.
 */
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <zlib.h>

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

/* THE FLAG TABLE: one row per flag, in --help's order. Parsing, validation, --help and the
 * flag list of docs/server.md (checked by tests/server/flags_doc.sh) follow from it; adding a
 * flag is a row (and its field in yls_options, with its default in yls_options_parse).
 *   name   without the leading --
 *   arg    the value's name in --help ("" for none); for FLAG_CHOICE the choices, '|'-separated,
 *          stored as their index
 *   type   how the value parses (below)
 *   field  where it goes: FIELD(member) of yls_options
 *   lo, hi the range of a number (BYTES may end in K, M or G)
 *   valid  what else a string must be (NULL: anything)
 *   help   --help's text, lines separated by \n; "{default}" is the
 *          default (a number, or BYTES in M) */
typedef enum {
    FLAG_UINT,      /* unsigned or int64_t */
    FLAG_BYTES,     /* uint64_t, K/M/G suffixes */
    FLAG_STRING,    /* const char * */
    FLAG_CHOICE,    /* int: the index of the value among arg's choices */
    FLAG_HELP,
    FLAG_VERSION,
    FLAG_ELSEWHERE, /* parsed before the rest (main.c): listed here for --help only */
} flag_type;

typedef struct {
    const char *name, *arg;
    flag_type type;
    size_t off, size;
    uint64_t lo, hi;
    bool (*valid)(const char *s);
    const char *help;
} flag;

#define FIELD(m) offsetof(yls_options, m), sizeof(((yls_options *)0)->m)
#define NO_FIELD 0, 0

static bool nonempty(const char *s) { return *s != '\0'; }

/* an operator's template, but still only a web link (never javascript:) */
static bool image_link(const char *s)
{
    return strstr(s, "{id}") &&
           (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8) || s[0] == '/');
}

static const flag flags[] = {
    {"host", "ADDR", FLAG_STRING, FIELD(host), 0, 0, NULL,
     "address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)"},
    {"port", "N", FLAG_UINT, FIELD(port), 0, 65535, NULL,
     "TCP port (default 8000; 0: any free port, printed on stderr)"},
    {"threads", "N", FLAG_UINT, FIELD(threads), 1, 1024, NULL,
     "worker threads computing images (default: all cores, {default})"},
    {"max-inflight", "N", FLAG_UINT, FIELD(max_inflight), 1, 1000000, NULL,
     "infer requests queued or running before 503 (default 64)"},
    {"max-body", "BYTES", FLAG_BYTES, FIELD(max_body), 0, SIZE_MAX / 2, NULL,
     "largest request body, raw or inflated (default 1G)"},
    {"max-json", "BYTES", FLAG_BYTES, FIELD(max_json), 0, SIZE_MAX / 2, NULL,
     "largest JSON part of a request, and of a JSON response\n(default 64M)"},
    {"max-memory", "BYTES", FLAG_BYTES, FIELD(max_memory), 0, SIZE_MAX / 2, NULL,
     "memory admitted requests may hold in sum (bodies, decoded\n"
     "tensors, gradients, responses); past it: 503 + Retry-After\n"
     "(default 3/4 of MemAvailable or of the cgroup limit, {default};\n0: no budget)"},
    {"drain-grace", "SECONDS", FLAG_UINT, FIELD(drain_grace), 0, 3600, NULL,
     "after SIGTERM/SIGINT, ready answers 400 at once but requests\n"
     "are still served this long, then new ones get 503 (default 0)"},
    {"max-connections-per-address", "N", FLAG_UINT, FIELD(max_per_address), 0, 1000000, NULL,
     "open connections from one client address; more are closed\n"
     "at once (default 0: no limit; a proxy's clients share one)"},
    {"ipv6-prefix", "BITS", FLAG_UINT, FIELD(ipv6_prefix), 1, 128, NULL,
     "IPv6 clients are counted per prefix of this length for\n"
     "--max-connections-per-address and the per-address stream\n"
     "limit (default 64: a host's /64; 128: per address)"},
    {"timeout", "SECONDS", FLAG_UINT, FIELD(timeout), 0, 86400 * 365, NULL,
     "close connections idle this long, uploads older than this\n"
     "that average under 64 KiB/s, and connections whose next\n"
     "request's headers are not complete this long after they\n"
     "opened or answered (default 60; 0: never)"},
    {"token-file", "PATH", FLAG_STRING, FIELD(token_file), 0, 0, NULL,
     "require \"Authorization: Bearer <token>\" (the file's first\n"
     "line) on everything but the public endpoints below"},
    {"models", "PATH", FLAG_STRING, FIELD(models_file), 0, 0, NULL,
     "more models: a JSON array of {\"name\", \"anchors\",\n"
     "\"ignore_thresh\"} (see docs/server.md)"},
    {"history", "PATH|URL|none", FLAG_STRING, FIELD(history), 0, 0, nonempty,
     "SQLite file of the points of runs (default\n"
     "yololossd-history.sqlite in the working directory), or\n"
     "postgresql://USER:PASS@HOST:PORT/DB (also postgres://):\n"
     "a PostgreSQL database shared by replicas"},
    {"metrics-max-runs", "N", FLAG_UINT, FIELD(metrics_max_runs), 0, 100000, NULL,
     "runs with loss gauges in /metrics (default 100)"},
    {"image-history-steps", "N", FLAG_UINT, FIELD(image_history_steps), 0, (uint64_t)1 << 40,
     NULL,
     "keep a run's per-image terms (image_ids) of its last N\n"
     "steps (default 10000; 0: store none)"},
    {"image-url", "TEMPLATE", FLAG_STRING, FIELD(image_url), 0, 0, image_link,
     "link of an image in the dashboard, {id} replaced by its id,\n"
     "e.g. 'http://host/images/{id}.jpg' (http://, https:// or /)"},
    {"shared-memory", "auto|on|off", FLAG_CHOICE, FIELD(shared_memory), 0, 0, NULL,
     "Triton's system shared-memory extension: clients on\n"
     "this host register POSIX shared-memory objects the daemon\n"
     "maps and reads inputs from / writes gradients to (default\n"
     "auto: on when --host is a loopback address)"},
    {"max-streams", "N", FLAG_UINT, FIELD(max_streams), 0, 100000, NULL,
     "event streams (/v1/events) open at once (default 256)"},
    {"heartbeat", "SECONDS", FLAG_UINT, FIELD(heartbeat), 0, 86400, NULL,
     "a comment on every event stream this often, which also\n"
     "finds clients that left (default 15; 0: none)"},
    {"healthcheck", "[URL]", FLAG_ELSEWHERE, NO_FIELD, 0, 0, NULL,
     "(first and only flag) GET URL (default http://127.0.0.1:8000\n"
     "/v2/health/ready), exit 0 on 200, else 1, within 3 s"},
    {"help", "", FLAG_HELP, NO_FIELD, 0, 0, NULL, "this text"},
    {"version", "", FLAG_VERSION, NO_FIELD, 0, 0, NULL, "versions of the daemon and its libraries"},
};
#define N_FLAGS (sizeof flags / sizeof flags[0])

/* A flag's value in o as --help shows it: a number, or BYTES in M. */
static void format_default(const yls_options *o, const flag *f, char *buf, size_t len)
{
    uint64_t v = 0;
    if (f->size == sizeof(unsigned)) {
        unsigned u;
        memcpy(&u, (const char *)o + f->off, sizeof u);
        v = u;
    } else if (f->size == sizeof(uint64_t)) {
        memcpy(&v, (const char *)o + f->off, sizeof v);
    }
    if (f->type == FLAG_BYTES)
        snprintf(buf, len, "%" PRIu64 "M", v >> 20);
    else
        snprintf(buf, len, "%" PRIu64, v);
}

/* "  --name ARG" padded to column 23, or on a line of its own when it leaves no two spaces; then the help,
 * each of its lines at column 23. */
static void usage(FILE *out, const yls_options *defaults)
{
    fprintf(out, "usage: " YLS_NAME " [options]\n"
                 "Serves the keras-yolo3 YOLOv3 loss (libyololoss) over HTTP with the Open Inference\n"
                 "Protocol v2 (KServe / Triton REST, with Triton's binary tensor extension).\n"
                 "\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        const flag *f = &flags[i];
        char head[64];
        int n = snprintf(head, sizeof head, "--%s%s%s", f->name, *f->arg ? " " : "", f->arg);
        if (n <= 19) /* two spaces at least between flag and text */
            fprintf(out, "  %-21s", head);
        else
            fprintf(out, "  %s\n%23s", head, "");
        for (const char *h = f->help; *h; h++) {
            if (!strncmp(h, "{default}", 9)) {
                char d[32];
                format_default(defaults, f, d, sizeof d);
                fputs(d, out);
                h += 8;
            } else {
                fputc(*h, out);
                if (*h == '\n')
                    fprintf(out, "%23s", "");
            }
        }
        fputc('\n', out);
    }
    fprintf(out, "BYTES may end in K, M or G (powers of 1024). SIGTERM or SIGINT: stop taking infer\n"
                 "requests, finish those in flight, exit 0 (a second signal exits at once).\n"
                 "One access-log line per request goes to stdout, everything else to stderr.\n");
    /* from the route table, so that --help and the token rule cannot disagree */
    fprintf(out, "Public endpoints (no token even with --token-file):\n");
    for (const yls_route_entry *e = yls_routes; e->method; e++)
        if (!e->token)
            fprintf(out, "  %-6s %s\n", e->method, e->pattern);
}

static void version(void)
{
    const char *mhd = MHD_get_version();
    printf(YLS_NAME " %s\nlibyololoss %s\nlibmicrohttpd %s\nlibuv %s\njansson %s\nzlib %s\n"
           "sqlite %s\n",
           YLS_VERSION, YL_VERSION, mhd ? mhd : "?", uv_version_string(), JANSSON_VERSION,
           zlibVersion(), sqlite3_libversion());
}

static bool parse_uint(const char *s, uint64_t max, uint64_t *out, bool sizes)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    uint64_t mult = 1;
    if (sizes && *end) {
        switch (*end) {
        case 'k': case 'K': mult = 1024; break;
        case 'm': case 'M': mult = MiB; break;
        case 'g': case 'G': mult = GiB; break;
        default: return false;
        }
        end++;
    }
    if (*end || (v && mult > UINT64_MAX / v) || v * mult > max)
        return false;
    *out = v * mult;
    return true;
}

/* FLAG_CHOICE: the index of s among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *s)
{
    size_t n = strlen(s);
    int i = 0;
    for (const char *c = choices;; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncmp(c, s, n))
            return i;
        if (!bar)
            return -1;
        c = bar + 1;
    }
}

/* Parse value s of flag f into o: false when it is not a valid value. */
static bool flag_set(yls_options *o, const flag *f, const char *s)
{
    char *at = (char *)o + f->off;
    uint64_t v;
    switch (f->type) {
    case FLAG_UINT:
    case FLAG_BYTES:
        if (!parse_uint(s, f->hi, &v, f->type == FLAG_BYTES) || v < f->lo)
            return false;
        if (f->size == sizeof(unsigned)) {
            unsigned u = (unsigned)v;
            memcpy(at, &u, sizeof u);
        } else { /* uint64_t or int64_t, the value below 2^63 */
            memcpy(at, &v, sizeof v);
        }
        return true;
    case FLAG_STRING:
        memcpy(at, &s, sizeof s);
        return !f->valid || f->valid(s);
    case FLAG_CHOICE: {
        int i = choice_index(f->arg, s);
        memcpy(at, &i, sizeof i);
        return i >= 0;
    }
    default: return false;
    }
}

int yls_options_parse(yls_options *o, int argc, char **argv)
{
    unsigned cores = uv_available_parallelism();
    if (cores < 1)
        cores = 1;
    if (cores > 1024)
        cores = 1024;
    *o = (yls_options){
        .host = "127.0.0.1",
        .port = 8000,
        .threads = cores,
        .max_inflight = 64,
        .max_body = GiB,
        .max_json = 64 * MiB,
        .max_memory = yls_budget_default(),
        .timeout = 60,
        .ipv6_prefix = 64,
        .history = "yololossd-history.sqlite",
        .metrics_max_runs = 100,
        .image_history_steps = 10000,
        .max_streams = 256,
        .heartbeat = 15,
    };
    /* getopt's table from ours: a flag's val is 256 + its row */
    struct option longopts[N_FLAGS + 1];
    int n = 0;
    for (size_t i = 0; i < N_FLAGS; i++)
        if (flags[i].type != FLAG_ELSEWHERE)
            longopts[n++] = (struct option){flags[i].name,
                                            *flags[i].arg ? required_argument : no_argument,
                                            NULL, 256 + (int)i};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        const flag *f = c >= 256 && c < 256 + (int)N_FLAGS ? &flags[c - 256] : NULL;
        if (c == 'h' || (f && f->type == FLAG_HELP)) {
            usage(stdout, o);
            return 1;
        }
        if (c == 'V' || (f && f->type == FLAG_VERSION)) {
            version();
            return 1;
        }
        if (!f) {
            fprintf(stderr, YLS_NAME ": bad option %s (see --help)\n", argv[optind - 1]);
            return -1;
        }
        if (!flag_set(o, f, optarg)) {
            fprintf(stderr, YLS_NAME ": bad value '%s' for --%s (see --help)\n", optarg, f->name);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, YLS_NAME ": unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (o->max_json > o->max_body)
        o->max_json = o->max_body;
    return 0;
}
