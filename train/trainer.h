/* trainer.h - training jobs: validated specs, a background queue of jobs (redis bio.c style:
 * a queue, a mutex, a condition variable, the lock dropped while a job runs), AdamW, evaluation,
 * publishing new immutable versions to the registry, persistence of job state and checkpoints.
 *
 * Inference comes first: the trainer shares the compute pool with the inference scheduler and
 * yields between steps while predictions wait (pd_trainer_set_yield gives it the question).
 * Thread-safety: every function may be called from any thread. */
#ifndef PD_TRAINER_H
#define PD_TRAINER_H

#include "registry.h"
#include "optim.h"
#include "trainable.h"

#include <cJSON.h>

typedef struct pd_trainer pd_trainer;

/* threads: training worker threads (jobs run concurrently up to this many). data_dir may be NULL
 * (no persistence); with one, job state lives in data_dir/jobs/<id>/ and jobs that were queued or
 * running when the process stopped are resumed from their last checkpoint. pool: the compute
 * pool shared with inference. Returns NULL on allocation or thread-creation failure. */
pd_trainer *pd_trainer_new(const pd_model *base, pd_registry *reg, pd_pool *pool, const char *data_dir, int threads);
/* Stops the workers (a running job stops between steps, writes a checkpoint and stays resumable
 * on disk: it is not marked cancelled), joins them and frees everything. NULL is a no-op. */
void pd_trainer_free(pd_trainer *t);

/* The inference side tells the trainer whether predictions are waiting; the trainer calls it
 * between steps and sleeps briefly while it returns nonzero. */
void pd_trainer_set_yield(pd_trainer *t, int (*waiting)(void *arg), void *arg);

/* Validates a POST /train request body (plus optional JSON Lines train/eval data from
 * multipart parts, NULL if absent) and queues a job. On success *job_id gets the new id
 * ("j-<n>"). Failures name the field, and the example index for data
 * (e.g. "train[12].label: unknown label 'pos'"):
 *   PD_ERR_INVALID   malformed request: wrong JSON types, missing or unknown fields (HTTP 400)
 *   PD_ERR_MISMATCH  well-formed but unusable values: unknown labels, answers not in their
 *                    context, hyperparameters out of range, empty data (HTTP 422)
 *   PD_ERR_NOT_FOUND "method" omitted and the adapter does not exist (HTTP 404)
 *   PD_ERR_BUSY      the adapter already has a queued or running job, or too many jobs wait (409)
 *   PD_ERR_UNSUPPORTED, PD_ERR_NOMEM, PD_ERR_IO (the job directory could not be written). */
pd_status pd_trainer_submit(pd_trainer *t, const cJSON *req, const char *train_jsonl, size_t train_len,
                            const char *eval_jsonl, size_t eval_len, char *job_id, size_t id_cap, char *err,
                            size_t errlen);

/* Job state as the API's JSON object ({"job","adapter","status",...}); NULL if unknown. The
 * caller frees with cJSON_Delete. */
cJSON *pd_trainer_job_json(pd_trainer *t, const char *job_id);
cJSON *pd_trainer_list_json(pd_trainer *t); /* {"jobs": [...]} */

/* Cancels a queued or running job; the adapter keeps its last published version. */
pd_status pd_trainer_cancel(pd_trainer *t, const char *job_id, char *err, size_t errlen);

typedef struct pd_trainer_stats {
    int queued, running;
    uint64_t succeeded, failed, cancelled, steps;
} pd_trainer_stats;
void pd_trainer_stats_get(pd_trainer *t, pd_trainer_stats *s);

/* ==== Engine (what a job runs each step; public for tests/test_trainer.c) ==== */

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

/* Adds the gradients of the batch's mean loss (cross-entropy, or QA (CE(start) + CE(end)) / 2)
 * over ex[idx[0..n)] to the adapter's gradient buffers (not zeroed here), in micro-batches of at
 * most max_tokens rows, each example scaled by 1/n. *loss gets the mean loss. */
pd_status pd_train_engine_grad(pd_train_engine *e, const pd_train_example *ex, const int *idx, int n, double *loss,
                               char *err, size_t errlen);

/* One optimizer step exactly as a job takes it: zero the gradients, dropout masks from
 * dropout_seed, pd_train_engine_grad, clip to max_grad_norm (0 = off), AdamW with learning rate
 * lr. *loss gets the batch loss, *grad_norm (may be NULL) the norm before clipping. */
pd_status pd_train_engine_step(pd_train_engine *e, pd_adamw *opt, const pd_train_example *ex, const int *idx,
                               int n, double lr, double max_grad_norm, uint64_t dropout_seed, double *loss,
                               double *grad_norm, char *err, size_t errlen);

#endif
