/* routes.c - handlers of the HTTP API. See routes.h and docs/API.md. */
#include "routes.h"

#include "jsonio.h"
#include "trainer.h"
#include "version.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== Helpers ==== */

void pd_route_cleanup(pd_req *r) {
    if (r->job) {
        for (int i = 0; i < r->job->n; i++) pd_item_free(&r->job->items[i]);
        free(r->job->items);
        free(r->job);
        r->job = NULL;
    }
    pd_adapter_release(r->adapter);
    r->adapter = NULL;
    cJSON_Delete(r->json);
    r->json = NULL;
    pd_adapter_info_clear(&r->async_info);
}

static const char *task_json_name(pd_task t) {
    return t == PD_TASK_CLS || t == PD_TASK_QA ? pd_task_name(t) : NULL;
}

static cJSON *string_array(char *const *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++) {
        cJSON *s = cJSON_CreateString(v && v[i] ? v[i] : "");
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* {"name","version","method","task","labels","params","bytes","resident","created_at","updated_at"} */
static cJSON *info_json(const pd_adapter_info *i) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const char *task = task_json_name(i->task);
    cJSON *labels = string_array(i->labels, i->num_labels);
    int ok = cJSON_AddStringToObject(o, "name", i->name) && cJSON_AddNumberToObject(o, "version", i->version) &&
             cJSON_AddStringToObject(o, "method", pd_method_name(i->method)) &&
             (task ? cJSON_AddStringToObject(o, "task", task) != NULL : cJSON_AddNullToObject(o, "task") != NULL) &&
             labels && cJSON_AddItemToObject(o, "labels", labels);
    if (!ok) cJSON_Delete(labels);
    ok = ok && cJSON_AddNumberToObject(o, "params", (double)i->params) && cJSON_AddNumberToObject(o, "bytes", (double)i->bytes) &&
         cJSON_AddBoolToObject(o, "resident", i->resident) && cJSON_AddNumberToObject(o, "created_at", i->created_at) &&
         cJSON_AddNumberToObject(o, "updated_at", i->updated_at);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The adapter named by the path; replies 400 and returns NULL if it is not a valid name. */
static const char *path_name(pd_req *r) {
    if (!pd_registry_valid_name(r->name)) {
        pd_req_error(r, 400, "invalid_input", "invalid adapter name \"%.80s\": use " PD_ADAPTER_NAME_RULE,
                     r->name);
        return NULL;
    }
    return r->name;
}

/* ==== /health, /info, /metrics ==== */

void pd_route_health(pd_req *r) {
    if (atomic_load(&r->srv->draining)) {
        pd_req_error(r, 503, "shutting_down", "the server is shutting down");
        return;
    }
    if (!atomic_load(&r->srv->ready)) {
        pd_req_error(r, 503, "not_ready", "the base model is still loading");
        return;
    }
    const char *ok = "{\"status\":\"ok\"}";
    char *b = strdup(ok);
    if (!b) { pd_req_error(r, 500, "out_of_memory", "out of memory"); return; }
    pd_req_reply(r, 200, "application/json", b, strlen(ok));
}

void pd_route_info(pd_req *r) {
    pd_server *s = r->srv;
    const pd_config *c = pd_model_config(s->model);
    const pd_head *cls = pd_model_head(s->model, PD_TASK_CLS), *qa = pd_model_head(s->model, PD_TASK_QA);
    const char *base = strrchr(s->model_dir, '/');
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "peftd_version", PD_VERSION);
    cJSON *m = ok ? cJSON_AddObjectToObject(o, "model") : NULL;
    ok = m && cJSON_AddStringToObject(m, "name", base && base[1] ? base + 1 : s->model_dir) &&
         cJSON_AddStringToObject(m, "architecture", pd_arch_name(c->arch)) &&
         cJSON_AddNumberToObject(m, "hidden", c->hidden) && cJSON_AddNumberToObject(m, "layers", c->layers) &&
         cJSON_AddNumberToObject(m, "heads", c->heads) && cJSON_AddNumberToObject(m, "ffn", c->ffn) &&
         cJSON_AddNumberToObject(m, "vocab", c->vocab) && cJSON_AddNumberToObject(m, "max_positions", c->max_pos) &&
         cJSON_AddNumberToObject(m, "max_tokens", c->max_tokens) && cJSON_AddStringToObject(m, "dtype", c->dtype) &&
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
    if (!ok) {
        cJSON_Delete(o);
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_json(r, 200, o);
    cJSON_Delete(o);
}

void pd_route_metrics(pd_req *r) {
    pd_server *s = r->srv;
    pd_metrics_gauges g;
    memset(&g, 0, sizeof g);
    g.ready = atomic_load(&s->ready);
    g.uptime = pd_now() - s->t_start;
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
        g.train_finished = ts.succeeded + ts.failed + ts.cancelled;
        g.train_steps = ts.steps;
    }
    char *txt = pd_metrics_render(s->metrics, &g);
    if (!txt) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", txt, strlen(txt));
}

/* ==== /predict ==== */

static void job_done(pd_job *job, void *arg) {
    (void)job;
    pd_req_unpark(arg); /* last touch: the request may be freed right after */
}

static void predict_done(pd_req *r) {
    if (r->async_st == PD_ERR_BUSY) {
        pd_req_error(r, 503, "busy", "the queue is full (--max-queue %d inputs); retry later", r->srv->opt.max_queue);
        return;
    }
    if (r->async_st) {
        pd_req_error(r, 503, "shutting_down", "the server is shutting down");
        return;
    }
    pd_job *job = r->job;
    if (job->status) {
        pd_req_fail(r, job->status, job->err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && (r->log_adapter[0] ? cJSON_AddStringToObject(o, "adapter", r->log_adapter) != NULL
                                  : cJSON_AddNullToObject(o, "adapter") != NULL);
    ok = ok && (r->adapter ? cJSON_AddNumberToObject(o, "version", r->version) != NULL : cJSON_AddNullToObject(o, "version") != NULL);
    ok = ok && cJSON_AddStringToObject(o, "task", pd_task_name(r->task));
    cJSON *outs = ok ? cJSON_AddArrayToObject(o, "outputs") : NULL;
    ok = outs != NULL;
    for (int i = 0; ok && i < job->n; i++) {
        cJSON *res = pd_json_result(&job->items[i], r->return_logits, r->top_k);
        if (!res || !cJSON_AddItemToArray(outs, res)) {
            cJSON_Delete(res);
            ok = 0;
        }
    }
    if (!ok) {
        cJSON_Delete(o);
        pd_req_error(r, 500, "out_of_memory", "out of memory building the response");
        return;
    }
    pd_req_json(r, 200, o);
    cJSON_Delete(o);
}

/* Reads an optional integer field in [lo, hi]; replies 400 and returns -1 if it is not one. */
static int opt_int(pd_req *r, const cJSON *o, const char *key, int lo, int hi, int *out) {
    char err[256];
    pd_status st = pd_json_int(o, key, "", lo, hi, PD_ERR_INVALID, out, err, sizeof err);
    if (st) pd_req_fail(r, st, err);
    return st ? -1 : 0;
}

void pd_route_predict(pd_req *r) {
    pd_server *s = r->srv;
    const pd_model *model = s->model;
    const pd_config *cfg = pd_model_config(model);
    char err[512];
    pd_input *ins = NULL;
    pd_task *shapes = NULL;

    pd_status st = pd_json_parse(r->body ? r->body : "", r->body_len, &r->json, err, sizeof err);
    if (st) { pd_req_fail(r, st, err); return; }
    const cJSON *body = r->json;
    if (!cJSON_IsObject(body)) {
        pd_req_error(r, 400, "invalid_input", "the body must be a JSON object with \"inputs\"");
        return;
    }

    /* Which adapter: the body's "adapter" or the X-Adapter header; both must agree. */
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(body, "adapter");
    const char *name = NULL;
    if (ja && !cJSON_IsNull(ja)) {
        if (!cJSON_IsString(ja) || !ja->valuestring) {
            pd_req_error(r, 400, "invalid_input", "adapter must be a string or null");
            return;
        }
        name = ja->valuestring;
    }
    const char *hdr = pd_req_get_header(r, "X-Adapter");
    if (hdr && *hdr) {
        if (name && strcmp(name, hdr)) {
            pd_req_error(r, 400, "invalid_input", "the body names adapter \"%.64s\" but X-Adapter says \"%.64s\"", name, hdr);
            return;
        }
        name = hdr;
    }
    if (name && !pd_registry_valid_name(name)) {
        pd_req_error(r, 400, "invalid_input", "invalid adapter name \"%.80s\": use " PD_ADAPTER_NAME_RULE, name);
        return;
    }

    /* Options. */
    const cJSON *jl = cJSON_GetObjectItemCaseSensitive(body, "return_logits");
    if (jl && !cJSON_IsNull(jl)) {
        if (!cJSON_IsBool(jl)) {
            pd_req_error(r, 400, "invalid_input", "return_logits must be a boolean");
            return;
        }
        r->return_logits = cJSON_IsTrue(jl);
    }
    pd_opts opts = {0, 0, 0, 0};
    if (opt_int(r, body, "top_k", 0, 100, &opts.top_k) || opt_int(r, body, "max_answer_length", 0, cfg->max_tokens, &opts.max_answer_length) ||
        opt_int(r, body, "max_length", 0, cfg->max_tokens, &opts.max_length) ||
        opt_int(r, body, "doc_stride", 0, cfg->max_tokens, &opts.doc_stride))
        return;
    r->top_k = opts.top_k;
    int forced = -1;
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(body, "task");
    if (jt && !cJSON_IsNull(jt)) {
        if (!cJSON_IsString(jt) || !jt->valuestring || (forced = pd_task_parse(jt->valuestring)) <= PD_TASK_NONE) {
            pd_req_error(r, 400, "invalid_input", "task must be \"classification\" or \"question_answering\"");
            return;
        }
    }

    /* Inputs: one value or a list. */
    const cJSON *jin = cJSON_GetObjectItemCaseSensitive(body, "inputs");
    if (!jin || cJSON_IsNull(jin)) {
        pd_req_error(r, 400, "invalid_input", "inputs is missing");
        return;
    }
    int list = cJSON_IsArray(jin);
    int n = list ? cJSON_GetArraySize(jin) : 1;
    if (n == 0) {
        pd_req_error(r, 400, "invalid_input", "inputs is an empty list");
        return;
    }
    if (n > s->opt.max_queue) {
        pd_req_error(r, 413, "too_large", "%d inputs in one request; the limit is %d (--max-queue)", n, s->opt.max_queue);
        return;
    }
    ins = calloc((size_t)n, sizeof *ins);
    shapes = calloc((size_t)n, sizeof *shapes);
    if (!ins || !shapes) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        goto out;
    }
    {
        int i = 0;
        const cJSON *v;
        if (list) {
            cJSON_ArrayForEach(v, jin) {
                char what[32];
                snprintf(what, sizeof what, "inputs[%d]", i);
                if ((st = pd_json_input(v, what, &ins[i], &shapes[i], err, sizeof err))) { pd_req_fail(r, st, err); goto out; }
                i++;
            }
        } else if ((st = pd_json_input(jin, "inputs", &ins[0], &shapes[0], err, sizeof err))) {
            pd_req_fail(r, st, err);
            goto out;
        }
    }

    /* Pin the adapter's current version for the whole request. */
    if (name) {
        snprintf(r->log_adapter, sizeof r->log_adapter, "%s", name);
        st = pd_registry_get(s->reg, name, &r->adapter, &r->version, err, sizeof err);
        if (st) {
            if (st == PD_ERR_NOT_FOUND) pd_req_error(r, 404, "not_found", "adapter \"%s\" not found", name);
            else pd_req_fail(r, st, err);
            goto out;
        }
        r->log_version = r->version;
    }

    /* The task: forced, else the adapter's, else the inputs' (which must agree). */
    pd_task task;
    pd_task own = r->adapter ? pd_adapter_task(r->adapter) : PD_TASK_NONE;
    if (forced >= 0) task = (pd_task)forced;
    else if (own != PD_TASK_NONE) task = own;
    else {
        task = shapes[0];
        for (int i = 1; i < n; i++)
            if (shapes[i] != task) {
                pd_req_error(r, 400, "invalid_input",
                             "inputs mix classification and question-answering inputs (inputs[0] and inputs[%d]); send them separately", i);
                goto out;
            }
    }
    for (int i = 0; i < n; i++) {
        if (shapes[i] == task) continue;
        char what[32];
        snprintf(what, sizeof what, list ? "inputs[%d]" : "inputs", i);
        if (r->adapter)
            pd_req_error(r, 422, "mismatch", "%s is a %s input but adapter \"%s\" serves %s", what, pd_task_name(shapes[i]), name,
                         pd_task_name(task));
        else
            pd_req_error(r, 422, "mismatch", "%s is a %s input but the task is %s", what, pd_task_name(shapes[i]), pd_task_name(task));
        goto out;
    }
    const pd_head *head = r->adapter ? pd_adapter_head(r->adapter, model, task) : pd_model_head(model, task);
    if (!head) {
        if (r->adapter)
            pd_req_error(r, 422, "unsupported", "adapter \"%s\" has no %s head and neither has the base model", name, pd_task_name(task));
        else
            pd_req_error(r, 422, "unsupported", "the base model has no %s head; name an adapter that has one", pd_task_name(task));
        goto out;
    }
    const pd_delta *delta = r->adapter ? pd_adapter_delta(r->adapter) : NULL;
    int nvirt = r->adapter ? pd_adapter_n_virtual(r->adapter) : 0;

    /* Encode on this thread (tokenizing is cheap next to the forward pass), then queue. */
    pd_job *job = calloc(1, sizeof *job);
    pd_item *items = job ? calloc((size_t)n, sizeof *items) : NULL;
    if (!items) {
        free(job);
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        goto out;
    }
    job->items = items;
    job->n = n;
    r->job = job;
    r->task = task;
    for (int i = 0; i < n; i++) {
        st = pd_item_encode(model, task, &ins[i], &opts, nvirt, &items[i], err, sizeof err);
        if (st) {
            if (list) pd_req_error(r, pd_http_status(st), pd_status_name(st), "inputs[%d]: %s", i, err);
            else pd_req_error(r, pd_http_status(st), pd_status_name(st), "inputs: %s", err);
            goto out;
        }
        items[i].delta = delta;
        items[i].head = head;
        int tok = pd_sched_item_tokens(&items[i]);
        if (tok > s->opt.max_batch_tokens) {
            pd_req_error(r, 413, "too_large", "inputs[%d] needs %d tokens in %d windows; the limit is %d (--max-batch-tokens)", i, tok,
                         items[i].n_win, s->opt.max_batch_tokens);
            goto out;
        }
        r->tokens += tok;
    }
    free(ins);
    free(shapes);
    ins = NULL;
    shapes = NULL;
    cJSON_Delete(r->json); /* items hold copies of what they need */
    r->json = NULL;
    job->opts = opts;
    job->done = job_done;
    job->arg = r;
    pd_req_park(r, predict_done);
    st = pd_sched_submit(s->sched, job);
    if (st) {
        r->async_st = st;
        pd_req_unpark(r);
    }
out:
    free(ins);
    free(shapes);
}

/* ==== /adapters ==== */

void pd_route_adapters_list(pd_req *r) {
    pd_adapter_info *l = NULL;
    int n = 0;
    pd_status st = pd_registry_list(r->srv->reg, &l, &n);
    if (st) {
        pd_req_fail(r, st, "cannot list adapters");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *a = o ? cJSON_AddArrayToObject(o, "adapters") : NULL;
    int ok = a != NULL;
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = info_json(&l[i]);
        if (!e || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
    }
    pd_registry_list_free(l, n);
    if (!ok) {
        cJSON_Delete(o);
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_json(r, 200, o);
    cJSON_Delete(o);
}

void pd_route_adapter_get(pd_req *r) {
    const char *name = path_name(r);
    if (!name) return;
    char err[512];
    pd_status st = pd_registry_info(r->srv->reg, name, &r->async_info, err, sizeof err);
    if (st) {
        if (st == PD_ERR_NOT_FOUND) pd_req_error(r, 404, "not_found", "adapter \"%s\" not found", name);
        else pd_req_fail(r, st, err);
        return;
    }
    cJSON *o = info_json(&r->async_info);
    if (!o) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_json(r, 200, o);
    cJSON_Delete(o);
}

/* Runs on the worker thread: load, validate, persist and swap in the uploaded version. */
static void publish_task(void *arg) {
    pd_req *r = arg;
    const pd_part *p = r->parts;
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    f.config = p[PD_PART_CONFIG].data;
    f.config_len = p[PD_PART_CONFIG].len;
    f.weights = p[PD_PART_WEIGHTS].data;
    f.weights_len = p[PD_PART_WEIGHTS].len;
    if (p[PD_PART_LABELS].seen) { f.labels = p[PD_PART_LABELS].data; f.labels_len = p[PD_PART_LABELS].len; }
    if (p[PD_PART_HEAD_CONFIG].seen) { f.head_config = p[PD_PART_HEAD_CONFIG].data; f.head_config_len = p[PD_PART_HEAD_CONFIG].len; }
    if (p[PD_PART_HEAD_WEIGHTS].seen) {
        f.head_weights = p[PD_PART_HEAD_WEIGHTS].data;
        f.head_weights_len = p[PD_PART_HEAD_WEIGHTS].len;
    }
    r->async_st = pd_registry_publish(r->srv->reg, r->name, &f, &r->async_created, &r->async_info, r->async_err,
                                      sizeof r->async_err);
    pd_req_unpark(r);
}

static void upload_done(pd_req *r) {
    if (r->async_st) {
        if (r->async_st == PD_ERR_CANCELLED) pd_req_error(r, 503, "shutting_down", "the server is shutting down");
        else pd_req_fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    r->log_version = r->async_info.version;
    cJSON *o = info_json(&r->async_info);
    if (!o || !cJSON_AddBoolToObject(o, "created", r->async_created)) {
        cJSON_Delete(o);
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    pd_req_json(r, r->async_created ? 201 : 200, o);
    cJSON_Delete(o);
}

/* Hands fn to the worker with r parked; if the worker refuses, r resumes with that status. */
static void park_on_worker(pd_req *r, void (*fn)(void *), pd_req_fn resume) {
    pd_req_park(r, resume);
    pd_status st = pd_worker_submit(r->srv->worker, fn, r);
    if (st) {
        r->async_st = st;
        snprintf(r->async_err, sizeof r->async_err, "%s", st == PD_ERR_CANCELLED ? "the server is shutting down" : "out of memory");
        pd_req_unpark(r);
    }
}

void pd_route_adapter_upload(pd_req *r) {
    const pd_part *pn = &r->parts[PD_PART_NAME];
    if (r->route == PD_ROUTE_ADAPTER) {
        if (!path_name(r)) return;
        if (pn->seen && (pn->len != strlen(r->name) || memcmp(pn->data, r->name, pn->len))) {
            pd_req_error(r, 400, "invalid_input", "the form field \"name\" (%.64s) differs from the name in the path (%s)",
                         pn->data ? pn->data : "", r->name);
            return;
        }
    } else {
        if (!pn->seen || !pn->len) {
            pd_req_error(r, 400, "invalid_input", "missing form field \"name\"");
            return;
        }
        if (pn->len >= sizeof r->name || strlen(pn->data) != pn->len) {
            pd_req_error(r, 400, "invalid_input", "invalid adapter name: use " PD_ADAPTER_NAME_RULE);
            return;
        }
        memcpy(r->name, pn->data, pn->len + 1);
        if (!path_name(r)) return;
    }
    snprintf(r->log_adapter, sizeof r->log_adapter, "%s", r->name);
    if (!r->parts[PD_PART_CONFIG].len) {
        pd_req_error(r, 400, "invalid_input", "missing form field \"config\" (adapter_config.json)");
        return;
    }
    if (!r->parts[PD_PART_WEIGHTS].len) {
        pd_req_error(r, 400, "invalid_input", "missing form field \"weights\" (adapter_model.safetensors or adapter.safetensors)");
        return;
    }
    if (r->parts[PD_PART_LABELS].seen) {
        /* Checked here so a bad labels field is named as such, whatever the adapter's head. */
        cJSON *l = NULL;
        char err[256];
        const pd_part *pl = &r->parts[PD_PART_LABELS];
        int ok = pd_json_parse(pl->data ? pl->data : "", pl->len, &l, err, sizeof err) == PD_OK && cJSON_IsArray(l) &&
                 cJSON_GetArraySize(l) > 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, l) if (!cJSON_IsString(e)) ok = 0;
        cJSON_Delete(l);
        if (!ok) {
            pd_req_error(r, 400, "invalid_input", "labels must be a non-empty JSON array of strings, e.g. [\"negative\",\"positive\"]");
            return;
        }
    }
    park_on_worker(r, publish_task, upload_done);
}

static void delete_task(void *arg) {
    pd_req *r = arg;
    r->async_st = pd_registry_delete(r->srv->reg, r->name, r->async_err, sizeof r->async_err);
    pd_req_unpark(r);
}

static void delete_done(pd_req *r) {
    if (r->async_st == PD_ERR_NOT_FOUND) pd_req_error(r, 404, "not_found", "adapter \"%s\" not found", r->name);
    else if (r->async_st == PD_ERR_CANCELLED) pd_req_error(r, 503, "shutting_down", "the server is shutting down");
    else if (r->async_st) pd_req_fail(r, r->async_st, r->async_err);
    else pd_req_reply(r, 204, NULL, NULL, 0);
}

void pd_route_adapter_delete(pd_req *r) {
    if (!path_name(r)) return;
    snprintf(r->log_adapter, sizeof r->log_adapter, "%s", r->name);
    park_on_worker(r, delete_task, delete_done);
}

void pd_route_adapter_file(pd_req *r) {
    const char *name = path_name(r);
    if (!name) return;
    char path[4096], err[512];
    pd_status st = pd_registry_file_path(r->srv->reg, name, r->file, path, sizeof path, err, sizeof err);
    if (st) {
        if (st == PD_ERR_NOT_FOUND) pd_req_error(r, 404, "not_found", "%s", err);
        else pd_req_fail(r, st, err);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        /* replaced or deleted between the lookup and the open */
        pd_req_error(r, 404, "not_found", "adapter \"%s\" has no file \"%s\" any more", name, r->file);
        return;
    }
    size_t n = strlen(r->file);
    const char *ct = n > 5 && !strcmp(r->file + n - 5, ".json") ? "application/json" : "application/octet-stream";
    pd_req_file(r, fd, (size_t)sb.st_size, ct, r->file);
}
