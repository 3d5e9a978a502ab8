/* routes_predict.c - POST /predict (docs/API.md): a request's inputs, with the adapter it names
 * pinned for the whole request, prepared into items (core/pipeline.h) and handed to the
 * scheduler, which batches them with everyone else's.
 *
 * On the event-loop thread: parsing and tokenizing (cheap next to the forward pass). A version
 * that is not in memory is read from disk on the server's loader worker with the connection
 * parked, as uploads are, so no event-loop thread ever waits on a disk. See routes.h. */
#include "routes.h"

#include "jsonio.h"
#include "server.h"

#include <string.h>

/* A /predict request, behind r->ctx. */
typedef struct predict_ctx {
    cJSON *json;           /* the body, while the inputs point into it */
    const cJSON *params;   /* its "parameters" object (LoRAX / Hugging Face style), or NULL */
    const char *name;      /* the adapter (into json or the X-Adapter header), NULL: the base model */
    int forced;            /* the "task" field; PD_TASK_NONE when absent */
    int return_logits;
    pd_opts opts;
    int n, list;           /* inputs; list: given as an array */
    pd_input *ins;         /* (n) */
    pd_task *shapes;       /* (n) what each input is */
    pd_adapter *adapter;   /* the pinned version, or NULL */
    int version;
    pd_task task;
    pd_prediction pred;    /* the scheduler's job: items (n) */
} predict_ctx;

static void predict_ctx_free(void *p) {
    predict_ctx *c = p;
    if (!c) return;
    for (int i = 0; c->pred.items && i < c->pred.n; i++) pd_item_free(&c->pred.items[i]);
    free(c->pred.items);
    pd_adapter_release(c->adapter);
    cJSON_Delete(c->json);
    free(c->ins);
    free(c->shapes);
    free(c);
}

/* Drops what preparing the items needed: they hold copies of what they use. */
static void drop_request(predict_ctx *c) {
    cJSON_Delete(c->json);
    free(c->ins);
    free(c->shapes);
    c->json = NULL;
    c->params = NULL;
    c->ins = NULL;
    c->shapes = NULL;
}

/* ==== The request ==== */

/* The body's fields (docs/API.md); any other is a 400 naming it. */
static const char *const BODY_KEYS[] = {"inputs", "adapter", "adapter_id", "parameters", "return_logits", "top_k",
                                        "max_answer_length", "max_length", "doc_stride", "task", "truncate", NULL};
/* What "parameters" may hold: the options and the adapter, as LoRAX and the Hugging Face
 * Inference API put them there; never the inputs. */
static const char *const PARAM_KEYS[] = {"adapter", "adapter_id", "return_logits", "top_k", "max_answer_length", "max_length",
                                         "doc_stride", "task", "truncate", NULL};

/* Refuses unknown fields (with a suggestion) and a field given both at the top level and in
 * "parameters"; sets c->params. */
static int check_fields(pd_req *r, predict_ctx *c) {
    char err[512];
    pd_status st = pd_json_known(c->json, "", "field", BODY_KEYS, err, sizeof err);
    if (st) {
        pd_req_fail(r, st, err);
        return -1;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c->json, "parameters");
    if (!p || cJSON_IsNull(p)) return 0;
    if (!cJSON_IsObject(p)) {
        pd_req_error(r, 400, "invalid_input", "parameters must be an object");
        return -1;
    }
    if ((st = pd_json_known(p, "parameters.", "field", PARAM_KEYS, err, sizeof err))) {
        pd_req_fail(r, st, err);
        return -1;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        if (it->string && cJSON_GetObjectItemCaseSensitive(c->json, it->string)) {
            pd_req_error(r, 400, "invalid_input", "%s is given both at the top level and in parameters; give it once", it->string);
            return -1;
        }
    }
    c->params = p;
    return 0;
}

/* The object holding an option (the body, or "parameters" when it is there) and its prefix
 * in messages. */
static const cJSON *holder(const predict_ctx *c, const char *key, const char **where) {
    if (c->params && cJSON_GetObjectItemCaseSensitive(c->params, key)) {
        *where = "parameters.";
        return c->params;
    }
    *where = "";
    return c->json;
}

/* Reads an optional integer option in [lo, hi]; replies 400 and returns -1 if it is not one. */
static int opt_int(pd_req *r, const predict_ctx *c, const char *key, int lo, int hi, int *out) {
    char err[256];
    const char *where;
    const cJSON *o = holder(c, key, &where);
    pd_status st = pd_json_int(o, key, where, lo, hi, PD_ERR_INVALID, out, err, sizeof err);
    if (st) pd_req_fail(r, st, err);
    return st ? -1 : 0;
}

/* Reads an optional boolean option; replies 400 and returns -1 if it is not one. */
static int opt_bool(pd_req *r, const predict_ctx *c, const char *key, int *out) {
    const char *where;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(holder(c, key, &where), key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) {
        pd_req_error(r, 400, "invalid_input", "%s%s must be a boolean", where, key);
        return -1;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}

/* Which adapter: the body's "adapter", LoRAX's "adapter_id" (top level or in "parameters") or
 * the X-Adapter header; those given must agree. */
static int parse_adapter(pd_req *r, predict_ctx *c) {
    static const char *const KEYS[] = {"adapter", "adapter_id"};
    const char *from = NULL;
    char where[32];
    for (int k = 0; k < 4; k++) {
        const cJSON *o = k < 2 ? c->json : c->params;
        const cJSON *ja = o ? cJSON_GetObjectItemCaseSensitive(o, KEYS[k % 2]) : NULL;
        if (!ja || cJSON_IsNull(ja)) continue;
        snprintf(where, sizeof where, "%s%s", k < 2 ? "" : "parameters.", KEYS[k % 2]);
        if (!cJSON_IsString(ja) || !ja->valuestring) {
            pd_req_error(r, 400, "invalid_input", "%s must be a string or null", where);
            return -1;
        }
        if (c->name && strcmp(c->name, ja->valuestring)) {
            pd_req_error(r, 400, "invalid_input", "%s names adapter \"%.64s\" but %s says \"%.64s\"", from, c->name, where,
                         ja->valuestring);
            return -1;
        }
        c->name = ja->valuestring;
        from = k < 2 ? KEYS[k % 2] : (k == 2 ? "parameters.adapter" : "parameters.adapter_id");
    }
    const char *hdr = pd_req_get_header(r, "X-Adapter");
    if (hdr && *hdr) {
        if (c->name && strcmp(c->name, hdr)) {
            pd_req_error(r, 400, "invalid_input", "the body's %s names adapter \"%.64s\" but X-Adapter says \"%.64s\"", from,
                         c->name, hdr);
            return -1;
        }
        c->name = hdr;
    }
    return c->name && pd_route_check_name(r, c->name) ? -1 : 0;
}

/* return_logits, top_k, max_answer_length, max_length, doc_stride, task, truncate. */
static int parse_options(pd_req *r, predict_ctx *c) {
    const pd_config *cfg = pd_model_config(r->srv->model);
    int truncate = 1;
    if (opt_bool(r, c, "return_logits", &c->return_logits) || opt_bool(r, c, "truncate", &truncate) ||
        opt_int(r, c, "top_k", 0, 100, &c->opts.top_k) ||
        opt_int(r, c, "max_answer_length", 0, cfg->max_tokens, &c->opts.max_answer_length) ||
        opt_int(r, c, "max_length", 0, cfg->max_tokens, &c->opts.max_length) ||
        opt_int(r, c, "doc_stride", 0, cfg->max_tokens, &c->opts.doc_stride))
        return -1;
    c->opts.no_truncate = !truncate;
    c->opts.max_tokens = r->srv->opt.max_batch_tokens; /* a QA context past it is refused before its windows are made */
    const char *where;
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(holder(c, "task", &where), "task");
    if (jt && !cJSON_IsNull(jt)) {
        if (!cJSON_IsString(jt) || !jt->valuestring || (c->forced = pd_task_parse(jt->valuestring)) <= PD_TASK_NONE) {
            pd_req_error(r, 400, "invalid_input", "%stask must be \"classification\" or \"question_answering\"", where);
            return -1;
        }
    }
    return 0;
}

/* "inputs": one value or a list, each read with pd_json_input. */
static int parse_inputs(pd_req *r, predict_ctx *c) {
    const cJSON *jin = cJSON_GetObjectItemCaseSensitive(c->json, "inputs");
    if (!jin || cJSON_IsNull(jin)) {
        pd_req_error(r, 400, "invalid_input", "inputs is missing");
        return -1;
    }
    c->list = cJSON_IsArray(jin);
    c->n = c->list ? cJSON_GetArraySize(jin) : 1;
    if (c->n == 0) {
        pd_req_error(r, 400, "invalid_input", "inputs is an empty list");
        return -1;
    }
    if (c->n > r->srv->opt.max_queue) {
        pd_req_error(r, 413, "too_large", "%d inputs in one request; the limit is %d (--max-queue)", c->n, r->srv->opt.max_queue);
        return -1;
    }
    c->ins = calloc((size_t)c->n, sizeof *c->ins);
    c->shapes = calloc((size_t)c->n, sizeof *c->shapes);
    if (!c->ins || !c->shapes) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return -1;
    }
    char err[512];
    int i = 0;
    const cJSON *v = jin;
    if (c->list) v = jin->child;
    for (; i < c->n && v; i++, v = c->list ? v->next : NULL) {
        char what[32];
        snprintf(what, sizeof what, c->list ? "inputs[%d]" : "inputs", i);
        pd_status st = pd_json_input(v, what, &c->ins[i], &c->shapes[i], err, sizeof err);
        if (st) {
            pd_req_fail(r, st, err);
            return -1;
        }
    }
    return 0;
}

/* ==== Items ==== */

static void prediction_done(pd_prediction *p, void *arg) {
    (void)p;
    pd_req_unpark(arg); /* last touch: the request may be freed right after */
}

/* The scheduler computed the items (or refused them): the response. */
static void predict_done(pd_req *r) {
    predict_ctx *c = r->ctx;
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err);
        return;
    }
    if (c->pred.status) {
        pd_req_fail(r, c->pred.status, c->pred.err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && (c->name ? cJSON_AddStringToObject(o, "adapter", c->name) != NULL : cJSON_AddNullToObject(o, "adapter") != NULL);
    ok = ok && (c->adapter ? cJSON_AddNumberToObject(o, "version", c->version) != NULL : cJSON_AddNullToObject(o, "version") != NULL);
    ok = ok && cJSON_AddStringToObject(o, "task", pd_task_name(c->task));
    cJSON *outs = ok ? cJSON_AddArrayToObject(o, "outputs") : NULL;
    ok = outs != NULL;
    for (int i = 0; ok && i < c->pred.n; i++) {
        cJSON *res = pd_json_result(&c->pred.items[i], c->return_logits, c->opts.top_k);
        if (!res || !cJSON_AddItemToArray(outs, res)) {
            cJSON_Delete(res);
            ok = 0;
        }
    }
    pd_req_json(r, 200, o, ok);
}

/* The task (forced, else the adapter's own, else the inputs', which must agree) and a head
 * for it; replies and returns -1 when there is none. */
static int pick_task(pd_req *r, predict_ctx *c) {
    const pd_model *m = r->srv->model;
    pd_task own = c->adapter ? pd_adapter_task(c->adapter) : PD_TASK_NONE;
    c->task = pd_predict_task(c->forced, own, c->shapes[0]);
    if (c->forced == PD_TASK_NONE && own == PD_TASK_NONE)
        for (int i = 1; i < c->n; i++)
            if (c->shapes[i] != c->task) {
                pd_req_error(r, 400, "invalid_input",
                             "inputs mix classification and question-answering inputs (inputs[0] and inputs[%d]); send them separately", i);
                return -1;
            }
    if (pd_head_for(m, c->adapter ? pd_adapter_delta(c->adapter) : NULL, c->task)) return 0;
    if (c->adapter)
        pd_req_error(r, 422, "unsupported", "adapter \"%s\" has no %s head and neither has the base model", c->name, pd_task_name(c->task));
    else
        pd_req_error(r, 422, "unsupported", "the base model has no %s head; name an adapter that has one", pd_task_name(c->task));
    return -1;
}

/* Prepares every input (task checked, head picked, tokenized) and queues them on the scheduler. */
static void prepare_and_submit(pd_req *r) {
    predict_ctx *c = r->ctx;
    const pd_model *m = r->srv->model;
    r->log_version = c->version;
    if (pick_task(r, c)) return;
    const pd_delta *delta = c->adapter ? pd_adapter_delta(c->adapter) : NULL;
    if (!(c->pred.items = calloc((size_t)c->n, sizeof *c->pred.items))) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    c->pred.n = c->n;
    char err[512];
    for (int i = 0; i < c->n; i++) {
        pd_item *it = &c->pred.items[i];
        pd_status st = pd_item_prepare(m, delta, c->task, &c->ins[i], c->shapes[i], &c->opts, it, err, sizeof err);
        if (st) {
            char msg[600];
            const char *why = st == PD_ERR_TOO_LARGE && c->task == PD_TASK_QA ? " (--max-batch-tokens)" : "";
            if (c->list) snprintf(msg, sizeof msg, "inputs[%d]: %s%s", i, err, why);
            else snprintf(msg, sizeof msg, "inputs: %s%s", err, why);
            pd_req_fail(r, st, msg);
            return;
        }
        int tok = pd_item_tokens(it);
        if (tok > r->srv->opt.max_batch_tokens) {
            pd_req_error(r, 413, "too_large", "inputs[%d] needs %d tokens in %d windows; the limit is %d (--max-batch-tokens)", i, tok,
                         it->n_win, r->srv->opt.max_batch_tokens);
            return;
        }
        r->tokens += tok;
    }
    drop_request(c);
    c->pred.opts = c->opts;
    c->pred.done = prediction_done;
    c->pred.arg = r;
    pd_req_park(r, predict_done);
    pd_status st = pd_sched_submit(r->srv->sched, &c->pred);
    if (st) {
        r->async_st = st;
        r->tokens = 0; /* none computed: the log must not count them */
        if (st == PD_ERR_BUSY)
            snprintf(r->async_err, sizeof r->async_err, "the queue is full (--max-queue %d inputs); retry later", r->srv->opt.max_queue);
        else
            snprintf(r->async_err, sizeof r->async_err, "the server is shutting down");
        pd_req_unpark(r);
    }
}

/* ==== The adapter ==== */

/* Runs on the loader worker: reads the adapter's current version from disk and pins it. */
static void load_task(void *arg) {
    pd_req *r = arg;
    predict_ctx *c = r->ctx;
    r->async_st = pd_registry_get(r->srv->reg, c->name, &c->adapter, &c->version, r->async_err, sizeof r->async_err);
    pd_req_unpark(r);
}

static void loaded(pd_req *r) {
    if (r->async_st) pd_req_fail(r, r->async_st, r->async_err);
    else prepare_and_submit(r);
}

void pd_route_predict(pd_req *r) {
    predict_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    r->ctx = c;
    r->ctx_free = predict_ctx_free;
    char err[512];
    pd_status st = pd_json_parse(r->body ? r->body : "", r->body_len, &c->json, err, sizeof err);
    if (st) {
        pd_req_fail(r, st, err);
        return;
    }
    if (!cJSON_IsObject(c->json)) {
        pd_req_error(r, 400, "invalid_input", "the body must be a JSON object with \"inputs\"");
        return;
    }
    if (check_fields(r, c) || parse_adapter(r, c) || parse_options(r, c) || parse_inputs(r, c)) return;
    if (c->name) {
        /* Pin the adapter's current version for the whole request. */
        snprintf(r->log_adapter, sizeof r->log_adapter, "%s", c->name);
        c->name = r->log_adapter; /* the body goes before the response is built */
        st = pd_registry_get_cached(r->srv->reg, c->name, &c->adapter, &c->version, err, sizeof err);
        if (st) {
            pd_req_fail(r, st, err);
            return;
        }
        if (!c->adapter) { /* on disk, not in memory */
            pd_req_park_on(r, r->srv->loader, load_task, loaded);
            return;
        }
    }
    prepare_and_submit(r);
}
