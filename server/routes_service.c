/* routes_service.c - the routes about the service itself: GET /health (liveness: the process
 * answers), GET /ready (readiness: the model is loaded and the adapter store readable), GET
 * /info (the model, limits, threads, auth), GET /metrics (Prometheus text), GET /openapi.json
 * (the API's description, embedded from docs/openapi.yaml). See routes.h and docs/API.md. */
#include "routes.h"

#include "openapi.h"
#include "server.h"
#include "version.h"

#include <string.h>

/* Liveness: an event loop answered, so the process is alive; loading, draining or a lost
 * store do not change that (a liveness probe must not restart a replica that is loading). */
void pd_route_health(pd_req *r) {
    static const char ok[] = "{\"status\":\"ok\"}";
    pd_req_reply_static(r, 200, "application/json", ok, sizeof ok - 1);
}

/* Readiness: 200 once the model is loaded, the adapter store opened and read, and the sync
 * thread has reached the store within the last PD_STORE_STALE_S seconds; 503 otherwise (and
 * while shutting down), saying which. */
void pd_route_ready(pd_req *r) {
    pd_server *s = r->srv;
    char why[512];
    if (!pd_server_ready(s, why, sizeof why)) {
        pd_req_error(r, 503, atomic_load(&s->draining) ? "shutting_down" : "not_ready", "%s", why);
        return;
    }
    static const char ok[] = "{\"status\":\"ready\"}";
    pd_req_reply_static(r, 200, "application/json", ok, sizeof ok - 1);
}

/* The model's name: the last component of its directory. */
static const char *model_name(const pd_server *s) {
    const char *base = strrchr(s->model_dir, '/');
    return base && base[1] ? base + 1 : s->model_dir;
}

void pd_route_info(pd_req *r) {
    pd_server *s = r->srv;
    const pd_config *c = pd_model_config(s->model);
    const pd_head *cls = pd_model_head(s->model, PD_TASK_CLS), *qa = pd_model_head(s->model, PD_TASK_QA);
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "peftd_version", PD_VERSION);
    cJSON *m = ok ? cJSON_AddObjectToObject(o, "model") : NULL;
    ok = m && cJSON_AddStringToObject(m, "name", model_name(s)) &&
         cJSON_AddStringToObject(m, "architecture", pd_arch_name(c->arch)) &&
         cJSON_AddNumberToObject(m, "hidden", c->hidden) && cJSON_AddNumberToObject(m, "layers", c->layers) &&
         cJSON_AddNumberToObject(m, "heads", c->heads) && cJSON_AddNumberToObject(m, "ffn", c->ffn) &&
         cJSON_AddNumberToObject(m, "vocab", c->vocab) && cJSON_AddNumberToObject(m, "max_positions", c->max_pos) &&
         cJSON_AddNumberToObject(m, "max_tokens", c->max_tokens) && cJSON_AddStringToObject(m, "dtype", c->dtype) &&
         cJSON_AddStringToObject(m, "base_dtype", pd_wtype_name(pd_model_dtype(s->model))) &&
         cJSON_AddStringToObject(m, "kernel", pd_wmat_kernel(pd_model_dtype(s->model))) &&
         cJSON_AddNumberToObject(m, "bytes", (double)pd_model_bytes(s->model)) &&
         cJSON_AddNumberToObject(m, "load_seconds", pd_model_load_seconds(s->model));
    cJSON *labels = ok ? cJSON_AddArrayToObject(m, "labels") : NULL;
    cJSON *heads = labels ? cJSON_AddArrayToObject(m, "heads_available") : NULL;
    ok = heads != NULL;
    int nl = cls ? cls->num_labels : c->num_labels;
    char *const *lv = cls ? cls->labels : c->labels;
    for (int i = 0; ok && i < nl; i++) ok = cJSON_AddItemToArray(labels, cJSON_CreateString(lv && lv[i] ? lv[i] : ""));
    ok = ok && (!cls || cJSON_AddItemToArray(heads, cJSON_CreateString(pd_task_name(PD_TASK_CLS)))) &&
         (!qa || cJSON_AddItemToArray(heads, cJSON_CreateString(pd_task_name(PD_TASK_QA))));
    cJSON *lim = ok ? cJSON_AddObjectToObject(o, "limits") : NULL;
    cJSON *thr = lim ? cJSON_AddObjectToObject(o, "threads") : NULL;
    cJSON *auth = thr ? cJSON_AddObjectToObject(o, "auth") : NULL;
    ok = auth && cJSON_AddNumberToObject(lim, "max_body_bytes", (double)s->max_body) &&
         cJSON_AddNumberToObject(lim, "max_batch_tokens", s->opt.max_batch_tokens) &&
         cJSON_AddNumberToObject(lim, "max_queue", s->opt.max_queue) &&
         cJSON_AddNumberToObject(lim, "batch_wait_ms", s->opt.batch_wait_ms) &&
         cJSON_AddNumberToObject(lim, "max_resident_bytes", (double)s->opt.max_resident_mb * 1048576.0) &&
         cJSON_AddNumberToObject(lim, "max_connections", s->opt.max_connections) &&
         cJSON_AddNumberToObject(thr, "compute", pd_sched_threads(s->sched)) &&
         cJSON_AddNumberToObject(thr, "http", s->opt.http_threads) &&
         cJSON_AddNumberToObject(thr, "train", s->opt.train_threads) &&
         cJSON_AddBoolToObject(auth, "enabled", s->api_key != NULL) &&
         cJSON_AddBoolToObject(auth, "all_routes", s->api_key != NULL && s->opt.auth_all);
    pd_req_json(r, 200, o, ok);
}

void pd_route_metrics(pd_req *r) {
    pd_server *s = r->srv;
    pd_metrics_gauges g;
    memset(&g, 0, sizeof g);
    g.ready = atomic_load(&s->ready);
    g.uptime = pd_now() - s->t_start;
    g.model = model_name(s);
    if (g.ready) {
        pd_registry_stats rs;
        memset(&rs, 0, sizeof rs);
        pd_registry_stats_get(s->reg, &rs);
        g.queue_depth = pd_sched_depth(s->sched);
        g.adapters_registered = rs.registered;
        g.adapters_resident = rs.resident;
        g.adapters_resident_bytes = rs.resident_bytes;
        g.swaps = rs.swaps;
        g.loads = rs.loads;
        g.evictions = rs.evictions;
        pd_trainer_stats ts;
        pd_trainer_stats_get(s->trainer, &ts);
        g.train_queued = ts.queued;
        g.train_running = ts.running;
        g.train_succeeded = ts.succeeded;
        g.train_failed = ts.failed;
        g.train_cancelled = ts.cancelled;
        g.train_steps = ts.steps;
        g.base_dtype = pd_wtype_name(pd_model_dtype(s->model));
        g.base_bytes = pd_model_bytes(s->model);
    }
    char *txt = pd_metrics_render(s->metrics, &g);
    if (!txt) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", txt, strlen(txt));
}

/* The embedded OpenAPI JSON with its ETag; If-None-Match that names it gets 304 without a body. */
void pd_route_openapi(pd_req *r) {
    const pd_console_file *f = &pd_openapi_file;
    int fresh = pd_console_etag_matches(f, pd_req_get_header(r, "If-None-Match"));
    pd_req_header(r, "ETag", f->etag);
    pd_req_header(r, "Cache-Control", "no-cache");
    pd_req_reply_static(r, fresh ? 304 : 200, fresh ? NULL : f->content_type, f->data, fresh ? 0 : f->len);
}
