/* job.c - a training job's record and its JSON. See job.h. */
#include "job.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *const STATUS_NAME[] = {"queued", "running", "succeeded", "failed", "cancelled"};

const char *pd_job_status_name(pd_job_status s) { return STATUS_NAME[s]; }

/* ==== The record ==== */

/* A record for spec (taken over; NULL: a frozen record filled in by the caller). NULL on OOM. */
pd_train_job *pd_train_job_new(pd_train_spec *spec) {
    pd_train_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    atomic_init(&j->cancel, 0);
    j->resumed_from = -1;
    j->lock_fd = -1;
    j->spec = spec;
    if (spec) {
        snprintf(j->adapter, sizeof j->adapter, "%s", spec->adapter);
        j->n_train = spec->train.n;
        j->n_eval = spec->eval.n;
    }
    return j;
}

/* Drops what only a runnable job needs (data, adapter); the record and the spec's fields stay. */
void pd_train_job_drop_data(pd_train_job *j) {
    if (!j->spec) return;
    pd_train_spec_drop_texts(j->spec);
    pd_train_set_free(&j->spec->train);
    pd_train_set_free(&j->spec->eval);
    pd_adapter_release(j->spec->a);
    j->spec->a = NULL;
}

/* Gives up ownership of the job's directory: another process may take an unfinished job over. */
void pd_train_job_unlock(pd_train_job *j) {
    if (j->lock_fd >= 0) close(j->lock_fd); /* closing releases the flock */
    j->lock_fd = -1;
}

void pd_train_job_free(pd_train_job *j) {
    if (!j) return;
    pd_train_job_unlock(j);
    pd_train_spec_free(j->spec);
    cJSON_Delete(j->frozen);
    free(j->loss_step);
    free(j->loss_val);
    free(j->ev);
    free(j->versions);
    free(j);
}


/* ==== JSON ==== */

static double round_to(double x, double scale) { return isfinite(x) ? round(x * scale) / scale : 0; }

static void add_num_or_null(cJSON *o, const char *k, double v, int null) {
    if (null) cJSON_AddNullToObject(o, k);
    else cJSON_AddNumberToObject(o, k, v);
}

/* The job as the API shows it. exact: unrounded numbers plus the internal fields job.json and
 * checkpoints need ("checkpoint", "loss_acc", "loss_acc_n"). NULL on OOM. */
cJSON *pd_train_job_json(const pd_train_job *j, int exact) {
    const pd_train_spec *s = j->spec;
    if (j->frozen) return cJSON_Duplicate(j->frozen, 1);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    double sc = exact ? 0 : 1e6;
#define R(x) (sc > 0 ? round_to((x), sc) : (x))
    cJSON_AddStringToObject(o, "job", j->id);
    cJSON_AddStringToObject(o, "adapter", j->adapter);
    cJSON_AddStringToObject(o, "method", pd_method_name(s->method));
    cJSON_AddStringToObject(o, "task", pd_task_name(s->task));
    cJSON_AddStringToObject(o, "base_dtype", pd_wtype_name(s->base_dtype));
    cJSON_AddStringToObject(o, "status", STATUS_NAME[j->status]);
    cJSON_AddNumberToObject(o, "epoch", s->steps_per_epoch ? round_to((double)j->step / s->steps_per_epoch, 1e3) : 0);
    cJSON_AddNumberToObject(o, "epochs", s->epochs);
    cJSON_AddNumberToObject(o, "step", (double)j->step);
    cJSON_AddNumberToObject(o, "total_steps", (double)s->total_steps);
    cJSON_AddNumberToObject(o, "examples_per_s", round_to(j->ex_per_s, 100));
    add_num_or_null(o, "eta_s", j->status == PD_JOB_RUNNING ? round_to(j->eta_s, 10) : 0, j->status == PD_JOB_QUEUED);
    cJSON *loss = cJSON_AddArrayToObject(o, "loss");
    for (int i = 0; loss && i < j->n_loss; i++) {
        double p[2] = {(double)j->loss_step[i], R(j->loss_val[i])};
        cJSON_AddItemToArray(loss, cJSON_CreateDoubleArray(p, 2));
    }
    cJSON *ev = cJSON_AddArrayToObject(o, "eval");
    for (int i = 0; ev && i < j->n_ev; i++) {
        cJSON *pair = cJSON_CreateArray(), *m = cJSON_CreateObject();
        if (!pair || !m) { cJSON_Delete(pair); cJSON_Delete(m); break; }
        cJSON_AddNumberToObject(m, "accuracy", R(j->ev[i].accuracy));
        cJSON_AddNumberToObject(m, "f1", R(j->ev[i].f1));
        cJSON_AddNumberToObject(m, "loss", R(j->ev[i].loss));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)j->ev[i].step));
        cJSON_AddItemToArray(pair, m);
        cJSON_AddItemToArray(ev, pair);
    }
    if (j->has_best) {
        cJSON *b = cJSON_AddObjectToObject(o, "best");
        if (b) {
            cJSON_AddNumberToObject(b, "step", (double)j->best_step);
            cJSON_AddStringToObject(b, "metric", s->task == PD_TASK_CLS ? "accuracy" : "f1");
            cJSON_AddNumberToObject(b, "value", R(j->best_value));
        }
    } else {
        cJSON_AddNullToObject(o, "best");
    }
    cJSON *pv = cJSON_AddArrayToObject(o, "published_versions");
    for (int i = 0; pv && i < j->n_versions; i++) cJSON_AddItemToArray(pv, cJSON_CreateNumber(j->versions[i]));
    if (j->error[0]) cJSON_AddStringToObject(o, "error", j->error);
    else cJSON_AddNullToObject(o, "error");
    cJSON_AddStringToObject(o, "publish", pd_publish_name(s->publish));
    cJSON_AddNumberToObject(o, "train_examples", j->n_train);
    cJSON_AddNumberToObject(o, "eval_examples", j->n_eval);
    cJSON_AddNumberToObject(o, "created_at", round_to(j->created_at, 1e3));
    add_num_or_null(o, "started_at", round_to(j->started_at, 1e3), j->started_at == 0);
    add_num_or_null(o, "finished_at", round_to(j->finished_at, 1e3), j->finished_at == 0);
    add_num_or_null(o, "resumed_from_step", (double)j->resumed_from, j->resumed_from < 0);
    if (exact) {
        if (j->ckpt[0]) cJSON_AddStringToObject(o, "checkpoint", j->ckpt);
        else cJSON_AddNullToObject(o, "checkpoint");
        cJSON_AddNumberToObject(o, "loss_acc", j->loss_acc);
        cJSON_AddNumberToObject(o, "loss_acc_n", j->loss_acc_n);
    }
#undef R
    return o;
}

int pd_train_job_push_version(pd_train_job *j, int v) {
    if (j->n_versions == j->cap_versions) {
        int nc = j->cap_versions ? 2 * j->cap_versions : 8;
        int *nv = realloc(j->versions, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        j->versions = nv;
        j->cap_versions = nc;
    }
    j->versions[j->n_versions++] = v;
    return 0;
}

int pd_train_job_push_loss(pd_train_job *j, long step, double v) {
    if (j->n_loss == j->cap_loss) {
        int nc = j->cap_loss ? 2 * j->cap_loss : 64;
        long *ns = realloc(j->loss_step, sizeof *ns * (size_t)nc);
        if (!ns) return -1;
        j->loss_step = ns;
        double *nv = realloc(j->loss_val, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        j->loss_val = nv;
        j->cap_loss = nc;
    }
    j->loss_step[j->n_loss] = step;
    j->loss_val[j->n_loss++] = v;
    return 0;
}

int pd_train_job_push_eval(pd_train_job *j, pd_eval_point r) {
    if (j->n_ev == j->cap_ev) {
        int nc = j->cap_ev ? 2 * j->cap_ev : 16;
        pd_eval_point *n = realloc(j->ev, sizeof *n * (size_t)nc);
        if (!n) return -1;
        j->ev = n;
        j->cap_ev = nc;
    }
    j->ev[j->n_ev++] = r;
    return 0;
}

/* Restores the histories of a job from its exact JSON (a checkpoint's state.json). */
void pd_train_job_restore_history(pd_train_job *j, const cJSON *s) {
    j->n_loss = j->n_ev = j->n_versions = 0;
    j->has_best = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "loss")) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) pd_train_job_push_loss(j, (long)a->valuedouble, b->valuedouble);
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "eval")) {
        const cJSON *a = cJSON_GetArrayItem(it, 0), *m = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsNumber(a) || !cJSON_IsObject(m)) continue;
        pd_eval_point r = {(long)a->valuedouble, 0, 0, 0};
        const cJSON *x;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "accuracy"))) r.accuracy = x->valuedouble;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "f1"))) r.f1 = x->valuedouble;
        if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(m, "loss"))) r.loss = x->valuedouble;
        pd_train_job_push_eval(j, r);
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, "best");
    if (cJSON_IsObject(b)) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(b, "step"), *v = cJSON_GetObjectItemCaseSensitive(b, "value");
        if (cJSON_IsNumber(st) && cJSON_IsNumber(v)) {
            j->has_best = 1;
            j->best_step = (long)st->valuedouble;
            j->best_value = v->valuedouble;
        }
    }
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(s, "published_versions"))
        if (cJSON_IsNumber(it)) pd_train_job_push_version(j, (int)it->valuedouble);
    const cJSON *x;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(s, "loss_acc"))) j->loss_acc = x->valuedouble;
    if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(s, "loss_acc_n"))) j->loss_acc_n = (int)x->valuedouble;
}


/* A record shown as its job.json says (a finished job, or an unfinished one a live replica
 * owns), without the internal fields. NULL on OOM. */
pd_train_job *pd_train_job_frozen(cJSON *state, pd_job_status status) {
    pd_train_job *j = pd_train_job_new(NULL);
    if (!j) return NULL;
    j->status = status;
    cJSON_DeleteItemFromObjectCaseSensitive(state, "checkpoint");
    cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc");
    cJSON_DeleteItemFromObjectCaseSensitive(state, "loss_acc_n");
    j->frozen = state;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(state, "finished_at");
    if (cJSON_IsNumber(f)) j->finished_at = f->valuedouble;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(state, "adapter");
    if (cJSON_IsString(a)) snprintf(j->adapter, sizeof j->adapter, "%s", a->valuestring);
    return j;
}

cJSON *pd_train_job_ckpt_state(const pd_train_job *j, long step) {
    const pd_train_spec *s = j->spec;
    cJSON *state = pd_train_job_json(j, 1);
    cJSON *rng = state ? cJSON_AddObjectToObject(state, "rng") : NULL;
    if (!rng) {
        cJSON_Delete(state);
        return NULL;
    }
    /* the generators are functions of (seed, epoch) and (seed, step): see spec.c */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    cJSON_AddStringToObject(rng, "algorithm", "splitmix64");
    cJSON_AddStringToObject(rng, "seed", seed);
    cJSON_AddNumberToObject(rng, "epoch", (double)(step / s->steps_per_epoch));
    cJSON_AddNumberToObject(rng, "step", (double)step);
    return state;
}

/* Prints o (consumed) compactly into *json. */
static pd_status print_json(cJSON *o, char **json, char *err, size_t errlen) {
    *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return *json ? PD_OK : pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
}

pd_status pd_train_job_print(const pd_train_job *j, char **json, char *err, size_t errlen) {
    return print_json(pd_train_job_json(j, 0), json, err, errlen);
}

pd_status pd_train_jobs_print(const pd_train_job *head, char **json, char *err, size_t errlen) {
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *a = o ? cJSON_AddArrayToObject(o, "jobs") : NULL;
    if (!a) {
        cJSON_Delete(o);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    for (const pd_train_job *j = head; j; j = j->next) {
        if (j->hold) continue;
        cJSON *x = pd_train_job_json(j, 0);
        if (!x) { cJSON_Delete(o); o = NULL; break; }
        cJSON_AddItemToArray(a, x);
    }
    return print_json(o, json, err, errlen);
}

/* ==== Reading job.json back ==== */

pd_job_status pd_train_job_state_status(const cJSON *state) {
    const cJSON *stv = cJSON_GetObjectItemCaseSensitive(state, "status");
    const char *status = cJSON_IsString(stv) ? stv->valuestring : "";
    for (int i = 0; i < (int)(sizeof STATUS_NAME / sizeof STATUS_NAME[0]); i++)
        if (!strcmp(status, STATUS_NAME[i])) return (pd_job_status)i;
    return PD_JOB_FAILED;
}

void pd_train_job_resume_state(pd_train_job *j, const cJSON *state, double now) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(state, "created_at");
    j->created_at = cJSON_IsNumber(x) ? x->valuedouble : now;
    x = cJSON_GetObjectItemCaseSensitive(state, "checkpoint");
    if (cJSON_IsString(x) && !strncmp(x->valuestring, "ckpt-", 5)) snprintf(j->ckpt, sizeof j->ckpt, "%s", x->valuestring);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(state, "published_versions"))
        if (cJSON_IsNumber(it)) pd_train_job_push_version(j, (int)it->valuedouble);
}

void pd_train_job_state_fail(cJSON *state, const char *err) {
    cJSON_ReplaceItemInObjectCaseSensitive(state, "status", cJSON_CreateString("failed"));
    cJSON_DeleteItemFromObjectCaseSensitive(state, "error");
    cJSON_AddStringToObject(state, "error", err);
    cJSON_DeleteItemFromObjectCaseSensitive(state, "checkpoint");
}
