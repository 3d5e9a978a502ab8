/* trainable.c - adapters that learn: fresh adapters initialised as PEFT / AdapterHub do, trainable
 * copies of existing ones, the parameter list the optimizer walks, and snapshots for publishing.
 *
 * A fresh adapter is built as files first (config + initialised tensors, by peft.c / bottleneck.c)
 * and then loaded by the ordinary loader, so a trainable adapter is always exactly what its files
 * say; training state (gradients, dropout, the prefix-projection MLP, the *_bwd callbacks) is then
 * attached. Snapshots and clones go through the same files in memory: a snapshot is what a reload
 * of the saved directory gives, bit for bit. */
#include "trainable.h"
#include "adapter_impl.h"

#include <ctype.h>
#include <string.h>

/* ==== Attaching training state ==== */

/* Makes a loaded adapter trainable: the method's gradients and callbacks, then the head's
 * gradients (layers the adapter does not own, such as a base pooler, get sinks), then the
 * parameter list in store order. mlp: a prefix projection MLP to train through, or NULL. */
static pd_status attach(pd_adapter *a, float *const *mlp, int mlp_hidden, char *err, size_t errlen) {
    pd_train *tr = a->train = calloc(1, sizeof *a->train);
    if (!tr) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    pd_status st = pd_method_ops_of(a->method)->train_init(a, mlp, mlp_hidden, err, errlen);
    if (st) return st;
    if (a->head.task != PD_TASK_NONE) {
        tr->ghead = a->head;
        for (int k = 0; k < a->head.n_layers; k++) {
            const pd_head_layer *hl = &a->head.layer[k];
            pd_head_layer *gl = &tr->ghead.layer[k];
            for (int wb = 0; wb < 2; wb++) {
                const float *p = wb ? hl->b : hl->w;
                if (!p) continue;
                float *g = pd_at_by_data(a, p) ? pd_at_grad(a, p, !wb)
                                               : (tr->sink[2 * k + wb] = calloc((size_t)hl->out * (wb ? 1 : hl->in), sizeof(float)));
                if (!g) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
                if (wb) gl->b = g;
                else gl->w = g;
            }
        }
    }
    for (int i = 0; i < a->nt; i++) tr->n_param += a->t[i].grad != NULL;
    if (!(tr->param = calloc((size_t)(tr->n_param ? tr->n_param : 1), sizeof *tr->param)))
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < a->nt; i++) {
        const pd_atensor *t = &a->t[i];
        if (t->grad) tr->param[k++] = (pd_param){t->data, t->grad, pd_at_numel(t), t->decay, t->name};
    }
    return PD_OK;
}

/* Loads files built in memory and makes the result trainable. */
static pd_status load_trainable(const pd_model *base, const pd_adapter_files *f, float *const *mlp, int mlp_hidden, pd_adapter **out,
                                char *err, size_t errlen) {
    pd_adapter *a = NULL;
    pd_status st = pd_adapter_load(base, f, &a, err, errlen);
    if (!st) st = attach(a, mlp, mlp_hidden, err, errlen);
    if (st) {
        pd_adapter_release(a);
        return st;
    }
    *out = a;
    return PD_OK;
}

/* ==== Fresh adapters ==== */

/* The head a fresh adapter gets: num_labels (default: the base classifier's) and their names
 * (the caller's, else the base's when the count matches, else LABEL_i). */
static pd_status head_spec(const pd_model *base, pd_task task, char *const *labels, int num_labels, pd_fresh_head *fh, char ***own,
                           int *n_own, char *err, size_t errlen) {
    memset(fh, 0, sizeof *fh);
    *own = NULL;
    *n_own = 0;
    fh->task = task;
    if (task == PD_TASK_NONE) return PD_OK;
    if (task == PD_TASK_QA) {
        fh->num_labels = 2;
        return PD_OK;
    }
    if (task != PD_TASK_CLS) return pd_err(err, errlen, PD_ERR_INVALID, "task must be classification or question_answering");
    const pd_config *cf = pd_model_config(base);
    const pd_head *bh = pd_model_head(base, PD_TASK_CLS);
    int n = num_labels > 0 ? num_labels : bh ? bh->num_labels : 0;
    if (n < 1) return pd_err(err, errlen, PD_ERR_INVALID, "num_labels must be > 0 (the base model has no classifier to take it from)");
    if (n > 100000) return pd_err(err, errlen, PD_ERR_INVALID, "num_labels = %d is more than 100000", n);
    if (labels && num_labels <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "labels given without num_labels");
    char **l = calloc((size_t)n, sizeof(char *));
    if (!l) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    *own = l;
    *n_own = n;
    for (int i = 0; i < n; i++) {
        char b[PD_LABEL_CAP];
        const char *src = labels ? labels[i] : pd_label_name(cf->labels && cf->num_labels == n ? cf->labels[i] : NULL, i, b, sizeof b);
        if (!src || !*src) return pd_err(err, errlen, PD_ERR_INVALID, "labels[%d] is empty", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(l[j], src)) return pd_err(err, errlen, PD_ERR_INVALID, "labels[%d] \"%s\" appears twice", i, src);
        if (!(l[i] = strdup(src))) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    fh->num_labels = n;
    fh->labels = l;
    return PD_OK;
}

static void free_fresh(pd_fresh *f) {
    cJSON_Delete(f->config);
    cJSON_Delete(f->head_config);
    pd_tlist_free(&f->w);
    pd_tlist_free(&f->head);
    for (int i = 0; i < 5; i++) free(f->mlp[i]);
    memset(f, 0, sizeof *f);
}

/* The loader speaks of "adapter_config.json"; for a fresh adapter that file is the caller's
 * config, so its messages are rewritten to name "config.<key>". */
static void config_msg(char *err, size_t errlen) {
    static const char pre[] = "adapter_config.json: ";
    if (!err || !errlen || strncmp(err, pre, sizeof pre - 1)) return;
    char tmp[1024];
    const char *r = err + sizeof pre - 1;
    size_t k = 0;
    while (islower((unsigned char)r[k]) || r[k] == '_') k++;
    snprintf(tmp, sizeof tmp, "config%s%s", k && (r[k] == ' ' || r[k] == '=') ? "." : ": ", r);
    snprintf(err, errlen, "%s", tmp);
}

pd_status pd_adapter_config_known(pd_method method, const cJSON *config, char *err, size_t errlen) {
    const pd_method_ops *ops = pd_method_ops_of(method);
    if (!ops) return pd_err(err, errlen, PD_ERR_INVALID, "unknown method");
    if (!config) return PD_OK;
    char what[48];
    snprintf(what, sizeof what, "%s option", ops->name);
    return pd_json_known(config, "config.", what, ops->config_keys, err, errlen);
}

pd_status pd_adapter_new_trainable(const pd_model *base, pd_method method, const cJSON *config, pd_task task,
                                   char *const *labels, int num_labels, uint64_t seed, pd_adapter **out, char *err,
                                   size_t errlen) {
    *out = NULL;
    if (method < PD_METHOD_LORA || method > PD_METHOD_BOTTLENECK) return pd_err(err, errlen, PD_ERR_INVALID, "unknown method %d", (int)method);
    if (config && cJSON_IsNull(config)) config = NULL;
    if (config && !cJSON_IsObject(config)) return pd_err(err, errlen, PD_ERR_INVALID, "config must be an object");
    pd_fresh_head fh;
    char **own = NULL;
    int n_own = 0;
    pd_fresh fr;
    memset(&fr, 0, sizeof fr);
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    pd_rng rng;
    pd_rng_seed(&rng, seed);
    pd_status st = head_spec(base, task, labels, num_labels, &fh, &own, &n_own, err, errlen);
    const pd_method_ops *mo = pd_method_ops_of(method);
    if (!st) st = mo->fresh(mo, base, config, &fh, &rng, &fr, err, errlen);
    if (st) goto fail;
    /* the files, as they would sit in a directory */
    static const char *const meta[] = {"format", "pt"};
    char *buf = NULL;
    size_t len = 0;
    int pt = mo->format->pt_metadata;
    if (!(f.config = cJSON_PrintUnformatted(fr.config))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto done; }
    f.config_len = strlen(f.config);
    if ((st = pd_st_write_buffer(fr.w.t, fr.w.n, meta, pt ? 1 : 0, &buf, &len, err, errlen))) goto done;
    f.weights = buf;
    f.weights_len = len;
    if (fr.head_config) {
        if (!(f.head_config = cJSON_PrintUnformatted(fr.head_config))) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto done; }
        f.head_config_len = strlen(f.head_config);
        if ((st = pd_st_write_buffer(fr.head.t, fr.head.n, meta, 0, &buf, &len, err, errlen))) goto done;
        f.head_weights = buf;
        f.head_weights_len = len;
    }
    st = load_trainable(base, &f, fr.mlp[0] ? fr.mlp : NULL, fr.mlp_hidden, out, err, errlen);
fail:
    if (st) {
        config_msg(err, errlen);
        if (st == PD_ERR_MISMATCH) st = PD_ERR_INVALID; /* the caller's config, not a file, does not fit */
    }
done:
    pd_adapter_files_free(&f);
    free_fresh(&fr);
    for (int i = 0; i < n_own; i++) free(own[i]);
    free(own);
    return st;
}

/* ==== Copies ==== */

pd_status pd_adapter_clone_trainable(const pd_adapter *src, pd_adapter **out, char *err, size_t errlen) {
    *out = NULL;
    pd_adapter_files f;
    pd_status st = pd_adapter_serialize(src, &f, err, errlen);
    if (st) return st;
    int E = 0;
    const pd_method_ops *mo = pd_method_ops_of(src->method);
    float *const *mlp = src->train && mo->mlp ? mo->mlp(src, &E) : NULL;
    st = load_trainable(src->base, &f, mlp, E, out, err, errlen);
    pd_adapter_files_free(&f);
    return st;
}

pd_status pd_adapter_snapshot(const pd_adapter *a, pd_adapter **out, char *err, size_t errlen) {
    *out = NULL;
    pd_adapter_files f;
    pd_status st = pd_adapter_serialize(a, &f, err, errlen);
    if (st) return st;
    st = pd_adapter_load(a->base, &f, out, err, errlen);
    pd_adapter_files_free(&f);
    return st;
}

/* ==== Parameters ==== */

const pd_param *pd_adapter_train_params(pd_adapter *a, int *n) {
    *n = a->train ? a->train->n_param : 0;
    return a->train ? a->train->param : NULL;
}

void pd_adapter_zero_grad(pd_adapter *a) {
    pd_train *tr = a->train;
    if (!tr) return;
    for (int i = 0; i < tr->n_param; i++) memset(tr->param[i].grad, 0, sizeof(float) * tr->param[i].n);
    for (int k = 0; k < a->head.n_layers; k++) {
        const pd_head_layer *hl = &a->head.layer[k];
        if (tr->sink[2 * k]) memset(tr->sink[2 * k], 0, sizeof(float) * (size_t)hl->in * hl->out);
        if (tr->sink[2 * k + 1]) memset(tr->sink[2 * k + 1], 0, sizeof(float) * (size_t)hl->out);
    }
}

void pd_adapter_set_training(pd_adapter *a, int on, uint64_t seed) {
    if (!a->train) return;
    a->train->on = on;
    a->train->seed = seed;
    a->train->pass = 0;
}

void pd_adapter_params_changed(pd_adapter *a) {
    if (!a->train) return;
    pd_method_ops_of(a->method)->params_changed(a);
}

const pd_head *pd_adapter_head_grad(pd_adapter *a) {
    return a->train && a->head.task != PD_TASK_NONE ? &a->train->ghead : NULL;
}
