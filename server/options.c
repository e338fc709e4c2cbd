/*
 * options.c: the command line.
 */
#include "server.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <zlib.h>

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static void usage(FILE *out, unsigned threads, uint64_t max_memory)
{
    char mem[32];
    snprintf(mem, sizeof mem, "%" PRIu64 "M", max_memory >> 20);
    fprintf(out,
            "usage: " YLS_NAME " [options]\n"
            "Serves the keras-yolo3 YOLOv3 loss (libyololoss) over HTTP with the Open Inference\n"
            "Protocol v2 (KServe / Triton REST, with Triton's binary tensor extension).\n"
            "\n"
            "  --host ADDR          address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
            "  --port N             TCP port (default 8000; 0: any free port, printed on stderr)\n"
            "  --threads N          worker threads computing images (default: all cores, %u)\n"
            "  --max-inflight N     infer requests queued or running before 503 (default 64)\n"
            "  --max-body BYTES     largest request body, raw or inflated (default 1G)\n"
            "  --max-json BYTES     largest JSON part of a request, and of a JSON response\n"
            "                       (default 64M)\n"
            "  --max-memory BYTES   memory admitted requests may hold in sum (bodies, decoded\n"
            "                       tensors, gradients, responses); past it: 503 + Retry-After\n"
            "                       (default 3/4 of MemAvailable or of the cgroup limit, %s;\n"
            "                       0: no budget)\n"
            "  --drain-grace SECONDS  after SIGTERM/SIGINT, ready answers 400 at once but requests\n"
            "                       are still served this long, then new ones get 503 (default 0)\n"
            "  --max-connections-per-address N\n"
            "                       open connections from one client address; more are closed\n"
            "                       at once (default 0: no limit; a proxy's clients share one)\n"
            "  --ipv6-prefix BITS   IPv6 clients are counted per prefix of this length for\n"
            "                       --max-connections-per-address and the per-address stream\n"
            "                       limit (default 64: a host's /64; 128: per address)\n"
            "  --timeout SECONDS    close connections idle this long, uploads older than this\n"
            "                       that average under 64 KiB/s, and connections whose next\n"
            "                       request's headers are not complete this long after they\n"
            "                       opened or answered (default 60; 0: never)\n"
            "  --token-file PATH    require \"Authorization: Bearer <token>\" (the file's first\n"
            "                       line) on everything but the public endpoints below\n"
            "  --models PATH        more models: a JSON array of {\"name\", \"anchors\",\n"
            "                       \"ignore_thresh\"} (see docs/server.md)\n"
            "  --history PATH|none  SQLite file of the points of runs (default\n"
            "                       yololossd-history.sqlite in the working directory), or\n"
            "                       postgresql://USER:PASS@HOST:PORT/DB (also postgres://):\n"
            "                       a PostgreSQL database shared by replicas\n"
            "  --metrics-max-runs N runs with loss gauges in /metrics (default 100)\n"
            "  --image-history-steps N\n"
            "                       keep a run's per-image terms (image_ids) of its last N\n"
            "                       steps (default 10000; 0: store none)\n"
            "  --image-url TEMPLATE link of an image in the dashboard, {id} replaced by its id,\n"
            "                       e.g. 'http://host/images/{id}.jpg' (http://, https:// or /)\n"
            "  --shared-memory auto|on|off  Triton's system shared-memory extension: clients on\n"
            "                       this host register POSIX shared-memory objects the daemon\n"
            "                       maps and reads inputs from / writes gradients to (default\n"
            "                       auto: on when --host is a loopback address)\n"
            "  --max-streams N      event streams (/v1/events) open at once (default 256)\n"
            "  --heartbeat SECONDS  a comment on every event stream this often, which also\n"
            "                       finds clients that left (default 15; 0: none)\n"
            "  --healthcheck [URL]  (first and only flag) GET URL (default http://127.0.0.1:8000\n"
            "                       /v2/health/ready), exit 0 on 200, else 1, within 3 s\n"
            "  --help               this text\n"
            "  --version            versions of the daemon and its libraries\n"
            "BYTES may end in K, M or G (powers of 1024). SIGTERM or SIGINT: stop taking infer\n"
            "requests, finish those in flight, exit 0 (a second signal exits at once).\n"
            "One access-log line per request goes to stdout, everything else to stderr.\n",
            threads, mem);
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
    enum { O_HOST = 256, O_PORT, O_THREADS, O_INFLIGHT, O_BODY, O_JSON, O_MEMORY, O_PER_ADDR, O_V6_PREFIX, O_GRACE, O_TIMEOUT,
           O_TOKEN, O_MODELS, O_HISTORY, O_MAXRUNS, O_IMAGE_STEPS, O_IMAGE_URL, O_SHM, O_STREAMS,
           O_HEARTBEAT, O_HELP, O_VERSION };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"threads", required_argument, NULL, O_THREADS},
        {"max-inflight", required_argument, NULL, O_INFLIGHT},
        {"max-body", required_argument, NULL, O_BODY},
        {"max-json", required_argument, NULL, O_JSON},
        {"max-memory", required_argument, NULL, O_MEMORY},
        {"max-connections-per-address", required_argument, NULL, O_PER_ADDR},
        {"ipv6-prefix", required_argument, NULL, O_V6_PREFIX},
        {"drain-grace", required_argument, NULL, O_GRACE},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"token-file", required_argument, NULL, O_TOKEN},
        {"models", required_argument, NULL, O_MODELS},
        {"history", required_argument, NULL, O_HISTORY},
        {"metrics-max-runs", required_argument, NULL, O_MAXRUNS},
        {"image-history-steps", required_argument, NULL, O_IMAGE_STEPS},
        {"image-url", required_argument, NULL, O_IMAGE_URL},
        {"shared-memory", required_argument, NULL, O_SHM},
        {"max-streams", required_argument, NULL, O_STREAMS},
        {"heartbeat", required_argument, NULL, O_HEARTBEAT},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 1;
    int li = -1;
    while ((c = getopt_long(argc, argv, "hV", longopts, &li)) != -1) {
        uint64_t v = 0;
        char flag[32];
        snprintf(flag, sizeof flag, "--%s", li >= 0 ? longopts[li].name : "?");
        li = -1;
        bool ok = true;
        switch (c) {
        case O_HOST: o->host = optarg; break;
        case O_PORT: ok = parse_uint(optarg, 65535, &v, false); o->port = (unsigned)v; break;
        case O_THREADS:
            ok = parse_uint(optarg, 1024, &v, false) && v >= 1;
            o->threads = (unsigned)v;
            break;
        case O_INFLIGHT:
            ok = parse_uint(optarg, 1000000, &v, false) && v >= 1;
            o->max_inflight = (unsigned)v;
            break;
        case O_BODY: ok = parse_uint(optarg, SIZE_MAX / 2, &o->max_body, true); break;
        case O_JSON: ok = parse_uint(optarg, SIZE_MAX / 2, &o->max_json, true); break;
        case O_MEMORY: ok = parse_uint(optarg, SIZE_MAX / 2, &o->max_memory, true); break;
        case O_GRACE:
            ok = parse_uint(optarg, 3600, &v, false);
            o->drain_grace = (unsigned)v;
            break;
        case O_PER_ADDR:
            ok = parse_uint(optarg, 1000000, &v, false);
            o->max_per_address = (unsigned)v;
            break;
        case O_V6_PREFIX:
            ok = parse_uint(optarg, 128, &v, false) && v >= 1;
            o->ipv6_prefix = (unsigned)v;
            break;
        case O_TIMEOUT:
            ok = parse_uint(optarg, 86400 * 365, &v, false);
            o->timeout = (unsigned)v;
            break;
        case O_TOKEN: o->token_file = optarg; break;
        case O_MODELS: o->models_file = optarg; break;
        case O_HISTORY: o->history = optarg; ok = *optarg != '\0'; break;
        case O_MAXRUNS:
            ok = parse_uint(optarg, 100000, &v, false);
            o->metrics_max_runs = (unsigned)v;
            break;
        case O_IMAGE_STEPS:
            ok = parse_uint(optarg, (uint64_t)1 << 40, &v, false);
            o->image_history_steps = (int64_t)v;
            break;
        case O_IMAGE_URL:
            /* an operator's template, but still only a web link (never javascript:) */
            ok = strstr(optarg, "{id}") &&
                 (!strncmp(optarg, "http://", 7) || !strncmp(optarg, "https://", 8) ||
                  optarg[0] == '/');
            o->image_url = optarg;
            break;
        case O_SHM:
            ok = !strcmp(optarg, "auto") || !strcmp(optarg, "on") || !strcmp(optarg, "off");
            o->shared_memory = !strcmp(optarg, "on")    ? YLS_SHM_ON
                               : !strcmp(optarg, "off") ? YLS_SHM_OFF
                                                        : YLS_SHM_AUTO;
            break;
        case O_STREAMS:
            ok = parse_uint(optarg, 100000, &v, false);
            o->max_streams = (unsigned)v;
            break;
        case O_HEARTBEAT:
            ok = parse_uint(optarg, 86400, &v, false);
            o->heartbeat = (unsigned)v;
            break;
        case 'h':
        case O_HELP: usage(stdout, cores, o->max_memory); return 1;
        case 'V':
        case O_VERSION: version(); return 1;
        default:
            fprintf(stderr, YLS_NAME ": bad option %s (see --help)\n", argv[optind - 1]);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, YLS_NAME ": bad value '%s' for %s (see --help)\n", optarg, flag);
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
