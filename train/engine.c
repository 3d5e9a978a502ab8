/* engine.c - forward, loss and backward of a batch in micro-batches, and one optimizer step.
 * See engine.h. */
#include "engine.h"

#include <math.h>
#include <string.h>

#define ACT_BUDGET_BYTES ((size_t)1 << 30) /* training activations per micro-batch (BERT-base: 1,664 rows) */

struct pd_train_engine {
    const pd_model *base;
    pd_adapter *a;
    pd_task task;
    pd_ctx *ctx;
    const pd_head *head;
    pd_head ghead;                           /* same shapes; w/b point at gradient buffers */
    float *frozen[2 * PD_HEAD_MAX_LAYERS];   /* sinks for head layers that do not train */
    size_t frozen_n[2 * PD_HEAD_MAX_LAYERS];
    int max_tokens;
    pd_seq *seqs;
    int cap_seqs;
    /* called between micro-batches; nonzero aborts the step with PD_ERR_CANCELLED */
    int (*hook)(void *arg);
    void *hook_arg;
};

void pd_train_engine_free(pd_train_engine *e) {
    if (!e) return;
    pd_ctx_free(e->ctx);
    for (int i = 0; i < 2 * PD_HEAD_MAX_LAYERS; i++) free(e->frozen[i]);
    free(e->seqs);
    free(e);
}

/* Floats one row of a training micro-batch keeps (core/model.c: saved activations, gradient
 * scratch and the hidden-state gradient), used to size micro-batches from the budget. */
static size_t train_row_floats(const pd_config *c) {
    size_t H = (size_t)c->hidden, F = (size_t)c->ffn, L = (size_t)c->layers;
    return (L + 2) * H + L * (7 * H + 2 * F) + 8 * H + F + 4 * H /* adapter scratch, roughly */;
}

pd_status pd_train_engine_new(const pd_model *base, pd_adapter *a, pd_task task, pd_pool *pool, int max_tokens,
                              pd_train_engine **out, char *err, size_t errlen) {
    *out = NULL;
    const pd_head *head = pd_adapter_head(a, base, task);
    if (!head || head->task != task || head->n_layers < 1)
        return pd_err(err, errlen, PD_ERR_MISMATCH, "the adapter has no %s head", pd_task_name(task));
    pd_train_engine *e = calloc(1, sizeof *e);
    if (!e) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    e->base = base;
    e->a = a;
    e->task = task;
    e->head = head;
    e->ghead = *head;
    if (!(e->ctx = pd_ctx_new(base, pool))) {
        pd_train_engine_free(e);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    pd_ctx_set_training(e->ctx, 1);
    /* the adapter's own head trains (its layers that are base weights, such as a bert pooler,
     * point at sinks in the adapter); the base model's head, when the adapter has none, stays
     * frozen: its gradients go to sinks here */
    const pd_head *gh = pd_adapter_head_grad(a);
    if (gh && head == pd_adapter_head(a, base, task) && gh->task == task) {
        e->ghead = *gh;
    } else {
        for (int k = 0; k < head->n_layers; k++) {
            const pd_head_layer *hl = &head->layer[k];
            e->frozen_n[2 * k] = (size_t)hl->in * hl->out;
            e->frozen_n[2 * k + 1] = (size_t)hl->out;
            if (!(e->frozen[2 * k] = calloc(e->frozen_n[2 * k], sizeof(float))) ||
                !(e->frozen[2 * k + 1] = calloc(e->frozen_n[2 * k + 1], sizeof(float)))) {
                pd_train_engine_free(e);
                return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
            }
            e->ghead.layer[k].w = e->frozen[2 * k];
            e->ghead.layer[k].b = hl->b ? e->frozen[2 * k + 1] : NULL;
        }
    }
    const pd_config *cf = pd_model_config(base);
    if (max_tokens <= 0) {
        size_t rows = ACT_BUDGET_BYTES / (train_row_floats(cf) * sizeof(float));
        max_tokens = rows < (size_t)cf->max_tokens ? cf->max_tokens : rows > (1u << 20) ? (1 << 20) : (int)rows;
    }
    e->max_tokens = max_tokens;
    *out = e;
    return PD_OK;
}

pd_ctx *pd_train_engine_ctx(pd_train_engine *e) { return e->ctx; }
int pd_train_engine_max_tokens(const pd_train_engine *e) { return e->max_tokens; }
const pd_model *pd_train_engine_base(const pd_train_engine *e) { return e->base; }
pd_adapter *pd_train_engine_adapter(pd_train_engine *e) { return e->a; }
const pd_head *pd_train_engine_head(const pd_train_engine *e) { return e->head; }

void pd_train_engine_set_hook(pd_train_engine *e, int (*hook)(void *arg), void *arg) {
    e->hook = hook;
    e->hook_arg = arg;
}

int pd_train_engine_stopped(pd_train_engine *e) { return e->hook && e->hook(e->hook_arg); }

void pd_train_engine_set_training(pd_train_engine *e, int on) {
    if (!on) pd_adapter_set_training(e->a, 0, 0);
    pd_ctx_set_training(e->ctx, on);
}

static int engine_seqs(pd_train_engine *e, int n) {
    if (n <= e->cap_seqs) return 0;
    pd_seq *s = realloc(e->seqs, sizeof *s * (size_t)n);
    if (!s) return -1;
    e->seqs = s;
    e->cap_seqs = n;
    return 0;
}

pd_status pd_train_engine_grad(pd_train_engine *e, const pd_train_example *ex, const int *idx, int n, double *loss,
                               char *err, size_t errlen) {
    *loss = NAN;
    if (n <= 0) return pd_err(err, errlen, PD_ERR_INVALID, "empty batch");
    if (engine_seqs(e, n)) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const pd_delta *d = pd_adapter_delta(e->a);
    int np = d ? d->n_prompt : 0;
    float scale = 1.0f / (float)n; /* loss averaged over the batch, whatever the micro-batches */
    double total = 0;
    /* Micro-batches of about equal size: as few as max_tokens allows, each filled up to the
     * batch's rows / that number (BERT-base, 16 x 128 tokens under its 1,664-row limit: 8 + 8, not 13 + 3;
     * larger GEMMs run faster, and the last micro-batch is not a small one). */
    long all_rows = 0;
    for (int k = 0; k < n; k++) all_rows += ex[idx[k]].len + np;
    long n_micro = (all_rows + e->max_tokens - 1) / e->max_tokens, target = (all_rows + n_micro - 1) / n_micro;
    for (int i = 0; i < n;) {
        /* micro-batch: examples up to the target, never more than max_tokens rows, at least one */
        int j = i, rows = 0;
        while (j < n && (j == i || (rows < target && rows + ex[idx[j]].len + np <= e->max_tokens))) {
            const pd_train_example *x = &ex[idx[j]];
            e->seqs[j - i] = (pd_seq){x->ids, x->type_ids, x->len, d, e->task == PD_TASK_CLS};
            rows += x->len + np;
            j++;
        }
        if (i > 0 && pd_train_engine_stopped(e)) return pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
        pd_status st = pd_forward(e->ctx, e->seqs, j - i, err, errlen);
        if (st) return st;
        if (!pd_ctx_grad_hidden(e->ctx)) return pd_err(err, errlen, PD_ERR_INVALID, "the context is not in training mode");
        for (int k = i; k < j; k++) {
            const pd_train_example *x = &ex[idx[k]];
            float l = pd_ctx_head_loss(e->ctx, k - i, e->head, &e->ghead, x->label, x->start, x->end, scale, NULL);
            if (isnan(l)) return pd_err(err, errlen, PD_ERR_NOMEM, "loss of example %d could not be computed", idx[k]);
            total += l;
        }
        if ((st = pd_backward(e->ctx, err, errlen))) return st;
        i = j;
    }
    *loss = total / n;
    return PD_OK;
}

pd_status pd_train_engine_step(pd_train_engine *e, pd_adamw *opt, const pd_train_example *ex, const int *idx, int n,
                               double lr, double max_grad_norm, uint64_t dropout_seed, double *loss, double *grad_norm,
                               char *err, size_t errlen) {
    pd_adapter_zero_grad(e->a);
    for (int i = 0; i < 2 * PD_HEAD_MAX_LAYERS; i++)
        if (e->frozen[i]) memset(e->frozen[i], 0, e->frozen_n[i] * sizeof(float));
    pd_adapter_set_training(e->a, 1, dropout_seed);
    pd_status st = pd_train_engine_grad(e, ex, idx, n, loss, err, errlen);
    if (st) return st;
    int np = 0;
    const pd_param *params = pd_adapter_train_params(e->a, &np);
    double norm = pd_grad_clip(params, np, max_grad_norm);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm) || !isfinite(*loss))
        return pd_err(err, errlen, PD_ERR_INVALID, "the loss or its gradient is not finite (loss %g, gradient norm %g): "
                      "lower the learning rate", *loss, norm);
    pd_adamw_step(opt, NULL, lr);
    pd_adapter_params_changed(e->a);
    return PD_OK;
}

pd_status pd_train_engine_infer(pd_train_engine *e, const pd_train_example *ex, int from, int n, int max_rows, int *end,
                                char *err, size_t errlen) {
    *end = from;
    if (engine_seqs(e, n - from > 0 ? n - from : 1)) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    const pd_delta *d = pd_adapter_delta(e->a);
    int np = d ? d->n_prompt : 0, k = from, rows = 0;
    while (k < n && (k == from || rows + ex[k].len + np <= max_rows)) {
        e->seqs[k - from] = (pd_seq){ex[k].ids, ex[k].type_ids, ex[k].len, d, e->task == PD_TASK_CLS};
        rows += ex[k].len + np;
        k++;
    }
    *end = k;
    if (pd_train_engine_stopped(e)) return pd_err(err, errlen, PD_ERR_CANCELLED, "cancelled");
    return pd_forward(e->ctx, e->seqs, k - from, err, errlen);
}
