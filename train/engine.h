/* engine.h - the step engine: forward, loss and backward of a batch of tokenized examples in
 * micro-batches, and one optimizer step, for one trainable adapter on the frozen base model.
 * A training job (trainer.h) runs one engine; evaluation (eval.h) runs its forward passes in
 * inference mode; tests/test_trainer.c checks its gradients and steps against torch.
 *
 * Ownership: the engine owns its pd_ctx and scratch; it never owns the adapter or the model.
 * Thread-safety: none; an engine and its adapter are one thread's (the pool it computes on is
 * shared: pd_pool_run takes turns). */
#ifndef PD_TRAIN_ENGINE_H
#define PD_TRAIN_ENGINE_H

#include "optim.h"
#include "trainable.h"

/* One tokenized training example: the window the model sees and its target. */
typedef struct pd_train_example {
    int32_t *ids, *type_ids; /* (len) real tokens, special tokens included */
    int len;
    int label;               /* classification: index into the labels */
    int start, end;          /* QA: answer token span (inclusive) among the len tokens */
} pd_train_example;

typedef struct pd_train_engine pd_train_engine;

/* A forward/backward engine for one trainable adapter on base, with its own pd_ctx on pool.
 * The adapter's own head trains with it (pd_adapter_head_grad; a base pooler inside it stays
 * frozen); an adapter without a head of its own uses the base model's, frozen.
 * max_tokens: rows per micro-batch (prompt tokens included); 0 = from a 1 GiB activation
 * budget. PD_ERR_MISMATCH if the adapter has no head for task, PD_ERR_NOMEM. */
pd_status pd_train_engine_new(const pd_model *base, pd_adapter *a, pd_task task, pd_pool *pool, int max_tokens,
                              pd_train_engine **out, char *err, size_t errlen);
void pd_train_engine_free(pd_train_engine *e); /* NULL is a no-op */
pd_ctx *pd_train_engine_ctx(pd_train_engine *e);
int pd_train_engine_max_tokens(const pd_train_engine *e);
const pd_model *pd_train_engine_base(const pd_train_engine *e);
pd_adapter *pd_train_engine_adapter(pd_train_engine *e);
const pd_head *pd_train_engine_head(const pd_train_engine *e); /* the head the loss is taken on */

/* A hook called between micro-batches and evaluation batches (and by pd_train_engine_stopped):
 * nonzero stops the work in progress with PD_ERR_CANCELLED. NULL: none. */
void pd_train_engine_set_hook(pd_train_engine *e, int (*hook)(void *arg), void *arg);
int pd_train_engine_stopped(pd_train_engine *e); /* asks the hook */

/* Adds the gradients of the batch's mean loss (cross-entropy, or QA (CE(start) + CE(end)) / 2)
 * over ex[idx[0..n)] to the adapter's gradient buffers (not zeroed here), in micro-batches of at
 * most max_tokens rows, each example scaled by 1/n. *loss gets the mean loss. */
pd_status pd_train_engine_grad(pd_train_engine *e, const pd_train_example *ex, const int *idx, int n, double *loss,
                               char *err, size_t errlen);

/* One optimizer step exactly as a job takes it: zero the gradients, dropout masks from
 * dropout_seed, pd_train_engine_grad, clip to max_grad_norm (0 = off), AdamW (made over
 * pd_adapter_train_params) with learning rate lr, then pd_adapter_params_changed. *loss gets
 * the batch loss, *grad_norm (may be NULL) the norm before clipping. */
pd_status pd_train_engine_step(pd_train_engine *e, pd_adamw *opt, const pd_train_example *ex, const int *idx,
                               int n, double lr, double max_grad_norm, uint64_t dropout_seed, double *loss,
                               double *grad_norm, char *err, size_t errlen);

/* Training mode off (on = 0: no dropout, no saved activations) for evaluation, or back on. */
void pd_train_engine_set_training(pd_train_engine *e, int on);

/* Evaluation: runs ex[from..n) in one inference forward pass, as many examples as fit in
 * max_rows rows (prompt tokens included; at least one). *end gets the index after the last one;
 * the results are read from pd_train_engine_ctx. Asks the hook first. */
pd_status pd_train_engine_infer(pd_train_engine *e, const pd_train_example *ex, int from, int n, int max_rows, int *end,
                                char *err, size_t errlen);

#endif
