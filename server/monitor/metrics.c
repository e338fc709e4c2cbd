/*
 * metrics.c: GET /metrics, Prometheus text format 0.0.4 (docs/monitoring.md lists the
 * metrics). Per model: infer requests by status code, histograms of request, queue and
 * compute time, images and bytes. Per run: the latest loss terms as gauges, for at most
 * --metrics-max-runs runs (the least recently updated one is dropped), so that label
 * cardinality stays bounded. Loop thread only.
 */
#include "server.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 14
static const double bounds[NB] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NCODES 16

typedef struct {
    uint64_t bucket[NB]; /* not cumulative */
    uint64_t count;
    double sum;
} histo;

typedef struct {
    unsigned code[NCODES];
    uint64_t n[NCODES];
    int ncodes;
    histo request, queue, compute;
    uint64_t images, bytes_in, bytes_out;
} model_metrics;

typedef struct {
    char run[YLS_RUN_MAX];
    int64_t step;
    double terms[4], total, wall;
} run_gauge;

struct yls_metrics {
    model_metrics *models;
    size_t n_models;
    run_gauge *runs;
    size_t n_runs, max_runs;
};

yls_metrics *yls_metrics_new(const yls_server *s)
{
    yls_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->n_models = s->models.n;
    m->max_runs = s->opt.metrics_max_runs;
    m->models = calloc(m->n_models ? m->n_models : 1, sizeof *m->models);
    m->runs = calloc(m->max_runs ? m->max_runs : 1, sizeof *m->runs);
    if (!m->models || !m->runs) {
        yls_metrics_free(m);
        return NULL;
    }
    return m;
}

void yls_metrics_free(yls_metrics *m)
{
    if (!m)
        return;
    free(m->models);
    free(m->runs);
    free(m);
}

static void observe(histo *h, double v)
{
    int i = 0;
    while (i < NB && v > bounds[i])
        i++;
    if (i < NB)
        h->bucket[i]++;
    h->count++;
    h->sum += v;
}

void yls_metrics_infer(yls_server *s, const yls_request *r, double total_s, double queue_s,
                       double compute_s)
{
    yls_metrics *m = s->metrics;
    if (!m || !r->route.model)
        return;
    size_t i = (size_t)(r->route.model - s->models.v);
    if (i >= m->n_models)
        return;
    model_metrics *mm = &m->models[i];
    int k = 0;
    while (k < mm->ncodes && mm->code[k] != r->status)
        k++;
    if (k == mm->ncodes && k < NCODES) {
        mm->code[k] = r->status;
        mm->ncodes++;
    }
    if (k < NCODES)
        mm->n[k]++;
    observe(&mm->request, total_s);
    if (r->status == 200) {
        observe(&mm->queue, queue_s);
        observe(&mm->compute, compute_s);
        mm->images += (uint64_t)(r->images > 0 ? r->images : 0);
    }
    mm->bytes_in += r->bytes_in;
    mm->bytes_out += r->bytes_out;
}

static run_gauge *find_run(yls_metrics *m, const char *run)
{
    for (size_t i = 0; i < m->n_runs; i++)
        if (!strcmp(m->runs[i].run, run))
            return &m->runs[i];
    return NULL;
}

void yls_metrics_point(yls_server *s, const char *run, int64_t step, const double terms[4],
                       double total, double wall)
{
    yls_metrics *m = s->metrics;
    if (!m || !m->max_runs)
        return;
    run_gauge *g = find_run(m, run);
    if (!g) {
        if (m->n_runs < m->max_runs)
            g = &m->runs[m->n_runs++];
        else {
            g = &m->runs[0]; /* the least recently updated */
            for (size_t i = 1; i < m->n_runs; i++)
                if (m->runs[i].wall < g->wall)
                    g = &m->runs[i];
        }
        snprintf(g->run, sizeof g->run, "%s", run);
    }
    g->step = step;
    memcpy(g->terms, terms, sizeof g->terms);
    g->total = total;
    g->wall = wall;
}

int64_t yls_metrics_next_step(yls_server *s, const char *run)
{
    run_gauge *g = s->metrics ? find_run(s->metrics, run) : NULL;
    return g ? g->step + 1 : 0;
}

void yls_metrics_forget(yls_server *s, const char *run)
{
    yls_metrics *m = s->metrics;
    run_gauge *g = m ? find_run(m, run) : NULL;
    if (g)
        *g = m->runs[--m->n_runs];
}

/* ------------------------------------------------------------------------------------ */
/* The text                                                                             */

/* A label value: \ " and newline escaped; bytes that are not UTF-8 become '?'. */
static void label(FILE *f, const char *v)
{
    char buf[4 * YLS_RUN_MAX];
    snprintf(buf, sizeof buf, "%s", v);
    json_t *ok = json_string(buf);
    if (!ok)
        for (char *p = buf; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    json_decref(ok);
    for (const char *p = buf; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

static void value(FILE *f, double v)
{
    if (isnan(v))
        fputs(" NaN\n", f);
    else if (isinf(v))
        fputs(v > 0 ? " +Inf\n" : " -Inf\n", f);
    else
        fprintf(f, " %.17g\n", v);
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void histogram(FILE *f, const yls_server *s, size_t which, const char *name,
                      const char *help)
{
    head(f, name, "histogram", help);
    for (size_t i = 0; i < s->metrics->n_models; i++) {
        const model_metrics *mm = &s->metrics->models[i];
        const histo *h = which == 0 ? &mm->request : which == 1 ? &mm->queue : &mm->compute;
        const char *model = s->models.v[i].name;
        uint64_t cum = 0;
        for (int b = 0; b < NB; b++) {
            cum += h->bucket[b];
            fprintf(f, "%s_bucket{model=\"", name);
            label(f, model);
            fprintf(f, "\",le=\"%g\"} %" PRIu64 "\n", bounds[b], cum);
        }
        fprintf(f, "%s_bucket{model=\"", name);
        label(f, model);
        fprintf(f, "\",le=\"+Inf\"} %" PRIu64 "\n%s_sum{model=\"", h->count, name);
        label(f, model);
        fprintf(f, "\"}");
        value(f, h->sum);
        fprintf(f, "%s_count{model=\"", name);
        label(f, model);
        fprintf(f, "\"} %" PRIu64 "\n", h->count);
    }
}

static void per_model(FILE *f, const yls_server *s, const char *name, const char *help,
                      size_t offset)
{
    head(f, name, "counter", help);
    for (size_t i = 0; i < s->metrics->n_models; i++) {
        const char *mm = (const char *)&s->metrics->models[i];
        uint64_t v;
        memcpy(&v, mm + offset, sizeof v);
        fprintf(f, "%s{model=\"", name);
        label(f, s->models.v[i].name);
        fprintf(f, "\"} %" PRIu64 "\n", v);
    }
}

static char *metrics_text(const yls_server *s)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    const yls_metrics *m = s->metrics;
    head(f, "yololoss_build_info", "gauge", "Version of yololossd and its libraries, always 1.");
    const char *mhd = MHD_get_version();
    fprintf(f, "yololoss_build_info{version=\"%s\",libmicrohttpd=\"%s\",libuv=\"%s\"} 1\n",
            YLS_VERSION, mhd ? mhd : "?", uv_version_string());
    head(f, "yololoss_start_time_seconds", "gauge", "Start time of the daemon, seconds since the epoch.");
    fprintf(f, "yololoss_start_time_seconds %" PRIu64 "\n", s->t_started);
    head(f, "yololoss_worker_threads", "gauge", "Threads computing images (--threads).");
    fprintf(f, "yololoss_worker_threads %u\n", s->opt.threads);
    head(f, "yololoss_inflight_requests", "gauge", "Infer requests queued or running.");
    fprintf(f, "yololoss_inflight_requests %u\n", s->inflight);
    head(f, "yololoss_uploading_requests", "gauge",
         "Infer requests admitted whose body is still arriving (not in flight yet).");
    fprintf(f, "yololoss_uploading_requests %u\n", s->uploading);
    head(f, "yololoss_memory_budget_bytes", "gauge", "Memory admitted requests may hold (--max-memory; 0: none).");
    fprintf(f, "yololoss_memory_budget_bytes %" PRIu64 "\n", yls_budget_max());
    head(f, "yololoss_memory_used_bytes", "gauge", "Memory counted against the budget now.");
    fprintf(f, "yololoss_memory_used_bytes %" PRIu64 "\n", yls_budget_used());
    head(f, "yololoss_client_gone_total", "counter",
         "Infer requests whose client left during compute (work stopped, no answer).");
    fprintf(f, "yololoss_client_gone_total %" PRIu64 "\n", s->gone_requests);
    head(f, "yololoss_client_gone_images_total", "counter",
         "Images not computed because their client left.");
    fprintf(f, "yololoss_client_gone_images_total %" PRIu64 "\n", s->gone_images);
    head(f, "yololoss_header_timeouts_total", "counter",
         "Connections shut because a request's headers were not complete --timeout seconds "
         "after the connection opened or answered its last request.");
    fprintf(f, "yololoss_header_timeouts_total %" PRIu64 "\n", s->header_timeouts);
    head(f, "yololoss_upload_promises_dropped_total", "counter",
         "Uploads that lost their memory promise for sending too slowly while another "
         "upload needed the room.");
    fprintf(f, "yololoss_upload_promises_dropped_total %" PRIu64 "\n", s->promises_dropped);
    head(f, "yololoss_event_streams", "gauge", "Open Server-Sent Events streams.");
    fprintf(f, "yololoss_event_streams %u\n", yls_sse_count(s));

    head(f, "yololoss_requests_total", "counter", "Infer requests answered, by model and HTTP status code.");
    for (size_t i = 0; i < m->n_models; i++) {
        const model_metrics *mm = &m->models[i];
        for (int k = 0; k < mm->ncodes; k++) {
            fprintf(f, "yololoss_requests_total{model=\"");
            label(f, s->models.v[i].name);
            fprintf(f, "\",code=\"%u\"} %" PRIu64 "\n", mm->code[k], mm->n[k]);
        }
    }
    histogram(f, s, 0, "yololoss_request_duration_seconds",
              "Infer request time, from its first byte to its answer.");
    histogram(f, s, 1, "yololoss_queue_duration_seconds",
              "Time successful infer requests waited for a worker thread.");
    histogram(f, s, 2, "yololoss_compute_duration_seconds",
              "Time successful infer requests computed (parse, images, response).");
    per_model(f, s, "yololoss_images_total", "Images of successful infer requests.",
              offsetof(model_metrics, images));
    per_model(f, s, "yololoss_received_bytes_total", "Bytes of infer request bodies received.",
              offsetof(model_metrics, bytes_in));
    per_model(f, s, "yololoss_sent_bytes_total", "Bytes of infer response bodies sent.",
              offsetof(model_metrics, bytes_out));

    static const char *terms[4] = {"xy", "wh", "confidence", "class"};
    head(f, "yololoss_run_loss", "gauge",
         "Latest loss of a training run: the total and its four terms.");
    for (size_t i = 0; i < m->n_runs; i++) {
        const run_gauge *g = &m->runs[i];
        for (int t = -1; t < 4; t++) {
            fputs("yololoss_run_loss{run=\"", f);
            label(f, g->run);
            fprintf(f, "\",term=\"%s\"}", t < 0 ? "total" : terms[t]);
            value(f, t < 0 ? g->total : g->terms[t]);
        }
    }
    head(f, "yololoss_run_step", "gauge", "Latest step of a training run.");
    for (size_t i = 0; i < m->n_runs; i++) {
        fputs("yololoss_run_step{run=\"", f);
        label(f, m->runs[i].run);
        fprintf(f, "\"} %" PRId64 "\n", m->runs[i].step);
    }
    head(f, "yololoss_run_updated_timestamp_seconds", "gauge",
         "Wall time of the latest point of a training run, seconds since the epoch.");
    for (size_t i = 0; i < m->n_runs; i++) {
        fputs("yololoss_run_updated_timestamp_seconds{run=\"", f);
        label(f, m->runs[i].run);
        fputs("\"}", f);
        value(f, m->runs[i].wall);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

enum MHD_Result yls_metrics_serve(yls_request *r)
{
    char *text = r->srv->metrics ? metrics_text(r->srv) : NULL;
    if (!text)
        return yls_reply_error(r, 500, "out of memory");
    size_t len = strlen(text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    yls_safe_headers(resp);
    return yls_reply(r, 200, resp, len);
}
