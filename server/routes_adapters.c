/* routes_adapters.c - the adapter routes: list, describe, version history, upload (POST
 * /adapters, PUT /adapters/{name}), delete, download a file. Uploads and deletes are registry writes: they run
 * on the server's worker with the connection parked. See routes.h and docs/API.md. */
#include "routes.h"

#include "jsonio.h"
#include "server.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== JSON ==== */

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

/* ==== Reading ==== */

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
    pd_req_json(r, 200, o, ok);
}

void pd_route_adapter_get(pd_req *r) {
    if (pd_route_check_name(r, r->name)) return;
    char err[512];
    pd_adapter_info info;
    pd_status st = pd_registry_info(r->srv->reg, r->name, &info, err, sizeof err);
    if (st) {
        pd_req_fail(r, st, err);
        return;
    }
    cJSON *o = info_json(&info);
    pd_adapter_info_clear(&info);
    pd_req_json(r, 200, o, 1);
}

/* The version history, read on the loader worker (meta.json files) with the connection parked. */
typedef struct versions_ctx {
    pd_adapter_info *l;
    int n, current;
} versions_ctx;

static void versions_ctx_free(void *p) {
    versions_ctx *c = p;
    if (!c) return;
    pd_registry_list_free(c->l, c->n);
    free(c);
}

static void versions_task(void *arg) {
    pd_req *r = arg;
    versions_ctx *c = r->ctx;
    r->async_st = pd_registry_versions(r->srv->reg, r->name, &c->l, &c->n, &c->current, r->async_err, sizeof r->async_err);
    pd_req_unpark(r);
}

/* {"name", "current", "versions": [AdapterInfo + "current": bool, ...]} newest first */
static void versions_done(pd_req *r) {
    versions_ctx *c = r->ctx;
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "name", r->name) && cJSON_AddNumberToObject(o, "current", c->current);
    cJSON *a = ok ? cJSON_AddArrayToObject(o, "versions") : NULL;
    ok = a != NULL;
    for (int i = 0; ok && i < c->n; i++) {
        cJSON *e = info_json(&c->l[i]);
        if (!e || !cJSON_AddBoolToObject(e, "current", c->l[i].version == c->current) || !cJSON_AddItemToArray(a, e)) {
            cJSON_Delete(e);
            ok = 0;
        }
    }
    pd_req_json(r, 200, o, ok);
}

void pd_route_adapter_versions(pd_req *r) {
    if (pd_route_check_name(r, r->name)) return;
    versions_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    r->ctx = c;
    r->ctx_free = versions_ctx_free;
    pd_req_park_on(r, r->srv->loader, versions_task, versions_done);
}

void pd_route_adapter_file(pd_req *r) {
    const char *name = r->name;
    if (pd_route_check_name(r, name)) return;
    char path[4096], err[512];
    pd_status st = pd_registry_file_path(r->srv->reg, name, r->file, path, sizeof path, err, sizeof err);
    if (st) {
        pd_req_fail(r, st, err);
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

/* ==== Uploads ==== */

/* An upload's result, filled on the worker. */
typedef struct upload_ctx {
    pd_adapter_info info;
    int created;
} upload_ctx;

static void upload_ctx_free(void *p) {
    upload_ctx *c = p;
    if (!c) return;
    pd_adapter_info_clear(&c->info);
    free(c);
}

/* Runs on the worker thread: load, validate, persist and swap in the uploaded version. */
static void publish_task(void *arg) {
    pd_req *r = arg;
    upload_ctx *c = r->ctx;
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
    r->async_st = pd_registry_publish(r->srv->reg, r->name, &f, &c->created, &c->info, r->async_err, sizeof r->async_err);
    pd_req_unpark(r);
}

static void upload_done(pd_req *r) {
    upload_ctx *c = r->ctx;
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    r->log_version = c->info.version;
    cJSON *o = info_json(&c->info);
    pd_req_json(r, c->created ? 201 : 200, o, o && cJSON_AddBoolToObject(o, "created", c->created));
}

/* Checks the upload's fields (r->name is the adapter's name by now) and hands it to the worker. */
static void upload(pd_req *r) {
    if (pd_route_check_name(r, r->name)) return;
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
    if (!(r->ctx = calloc(1, sizeof(upload_ctx)))) {
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    r->ctx_free = upload_ctx_free;
    pd_req_park_on(r, r->srv->worker, publish_task, upload_done);
}

void pd_route_adapter_post(pd_req *r) {
    const pd_part *pn = &r->parts[PD_PART_NAME];
    if (!pn->seen || !pn->len) {
        pd_req_error(r, 400, "invalid_input", "missing form field \"name\"");
        return;
    }
    if (pn->len >= sizeof r->name || strlen(pn->data) != pn->len) {
        pd_req_error(r, 400, "invalid_input", "invalid adapter name: use " PD_ADAPTER_NAME_RULE);
        return;
    }
    memcpy(r->name, pn->data, pn->len + 1);
    upload(r);
}

void pd_route_adapter_put(pd_req *r) {
    const pd_part *pn = &r->parts[PD_PART_NAME];
    if (pd_route_check_name(r, r->name)) return;
    if (pn->seen && (pn->len != strlen(r->name) || memcmp(pn->data, r->name, pn->len))) {
        pd_req_error(r, 400, "invalid_input", "the form field \"name\" (%.64s) differs from the name in the path (%s)",
                     pn->data ? pn->data : "", r->name);
        return;
    }
    upload(r);
}

/* ==== Deleting ==== */

static void delete_task(void *arg) {
    pd_req *r = arg;
    r->async_st = pd_registry_delete(r->srv->reg, r->name, r->async_err, sizeof r->async_err);
    pd_req_unpark(r);
}

static void delete_done(pd_req *r) {
    if (r->async_st) pd_req_fail(r, r->async_st, r->async_err);
    else pd_req_reply(r, 204, NULL, NULL, 0);
}

void pd_route_adapter_delete(pd_req *r) {
    if (pd_route_check_name(r, r->name)) return;
    snprintf(r->log_adapter, sizeof r->log_adapter, "%s", r->name);
    pd_req_park_on(r, r->srv->worker, delete_task, delete_done);
}
