/*
 * routes.c: every endpoint of the daemon, one line each: the one place that decides both
 * what serves a request and whether it needs the bearer token (server.h: how patterns read,
 * how to add a route). Order matters: the first pattern with the path's shape claims it,
 * so fixed paths come before the patterns that capture them ("/v2/models/stats" before
 * "{model}", ".../steps" before the bare run).
 *
 * The token rule: the v2 protocol and the /v1 writes (DELETE, PUT, POST) need the token; health, the dashboard and the
 * monitoring reads are public (docs/monitoring.md: a dashboard behind a load balancer's
 * health checks and Prometheus scrapes need no secret, and they only read).
 */
#include "server.h"

const yls_route_entry yls_routes[] = {
    /* method    pattern                                          handler           token  upload  json_body */
    {"GET",    "/v2/health/live",                               yls_ep_live,         false, NULL, false},
    {"GET",    "/v2/health/ready",                              yls_ep_ready,        false, NULL, false},
    {"GET",    "/v2",                                           yls_ep_server_meta,  true,  NULL, false},
    {"GET",    "/v2/",                                          yls_ep_server_meta,  true,  NULL, false},
    {"GET",    "/v2/models/stats",                              yls_ep_all_stats,    true,  NULL, false},
    {"GET",    "/v2/models/{model}",                            yls_ep_model_meta,   true,  NULL, false},
    {"GET",    "/v2/models/{model}/versions/{version}",         yls_ep_model_meta,   true,  NULL, false},
    {"GET",    "/v2/models/{model}/ready",                      yls_ep_model_ready,  true,  NULL, false},
    {"GET",    "/v2/models/{model}/versions/{version}/ready",   yls_ep_model_ready,  true,  NULL, false},
    {"GET",    "/v2/models/{model}/config",                     yls_ep_model_config, true,  NULL, false},
    {"GET",    "/v2/models/{model}/versions/{version}/config",  yls_ep_model_config, true,  NULL, false},
    {"GET",    "/v2/models/{model}/stats",                      yls_ep_model_stats,  true,  NULL, false},
    {"GET",    "/v2/models/{model}/versions/{version}/stats",   yls_ep_model_stats,  true,  NULL, false},
    {"POST",   "/v2/models/{model}/infer",                      yls_infer_start,     true,  yls_infer_account, false},
    {"POST",   "/v2/models/{model}/versions/{version}/infer",   yls_infer_start,     true,  yls_infer_account, false},
    {"GET",    "/",                                             yls_dashboard_serve, false, NULL, false},
    {"GET",    "/index.html",                                   yls_dashboard_serve, false, NULL, false},
    {"GET",    "/assets/{asset}",                               yls_dashboard_serve, false, NULL, false},
    {"GET",    "/metrics",                                      yls_metrics_serve,   false, NULL, false},
    {"GET",    "/v1/runs",                                      yls_api_runs,        false, NULL, false},
    {"GET",    "/v1/runs/",                                     yls_api_runs,        false, NULL, false},
    {"GET",    "/v1/runs/{run}/steps",                          yls_api_steps,       false, NULL, false},
    {"GET",    "/v1/runs/{run}/steps.csv",                      yls_api_csv,         false, NULL, false},
    {"GET",    "/v1/runs/{run}/events",                         yls_sse_serve,       false, NULL, false},
    {"GET",    "/v1/events",                                    yls_sse_serve,       false, NULL, false},
    {"GET",    "/v1/runs/{run}/images",                         yls_api_images,      false, NULL, false},
    {"GET",    "/v1/runs/{run}/eval",                           yls_api_eval,        false, NULL, false},
    {"GET",    "/v1/runs/{run}/evals",                          yls_api_eval_steps,  false, NULL, false},
    {"GET",    "/v1/runs/{run}/images/{image}",                 yls_api_image,       false, NULL, false},
    {"GET",    "/v1/runs/{run}/config",                         yls_api_config_get,  false, NULL, false},
    {"PUT",    "/v1/runs/{run}/config",                         yls_api_config_put,  true,  NULL, true},
    {"GET",    "/v1/runs/{run}/scalars",                        yls_api_scalars_get, false, NULL, false},
    {"POST",   "/v1/runs/{run}/scalars",                        yls_api_scalars_post, true, NULL, true},
    {"DELETE", "/v1/runs/{run}",                                yls_api_delete,      true,  NULL, false},
    /* Triton's system shared-memory extension (v2/shm_endpoints.c) */
    {"GET",    "/v2/systemsharedmemory/status",                 yls_ep_shm_status,   true,  NULL, false},
    {"POST",   "/v2/systemsharedmemory/unregister",             yls_ep_shm_unregister, true, NULL, false},
    {"GET",    "/v2/systemsharedmemory/region/{region}/status", yls_ep_shm_status,   true,  NULL, false},
    {"POST",   "/v2/systemsharedmemory/region/{region}/register", yls_ep_shm_register, true, NULL, true},
    {"POST",   "/v2/systemsharedmemory/region/{region}/unregister", yls_ep_shm_unregister, true, NULL, false},
    {NULL, NULL, NULL, false, NULL, false},
};

/* A {model} capture is a model of the v2 table (v2/models.c). */
static yls_model *find_model(const yls_server *s, const char *name, size_t len)
{
    return yls_models_find(&s->models, name, len);
}

const yls_router yls_daemon_router = {yls_routes, find_model};
