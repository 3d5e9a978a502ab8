/* scheduler.h - the one compute thread: gathers pending predictions from every connection into
 * batches and runs each batch through one pd_predict call.
 *
 * A pd_prediction is one request's inputs, already prepared (pd_item_prepare) with each item's
 * delta and head set, so one batch may mix adapters and base-model requests. The scheduler thread waits
 * until the oldest waiting input has waited batch_wait_ms, or max_batch_tokens tokens wait, or
 * the company hook (pd_sched_set_company) says nothing else can arrive, then takes inputs in
 * arrival order up to max_batch_tokens (always at least one; a job's inputs may span several
 * batches) and runs them. Inputs that arrive while a batch runs form the next one. QA inputs
 * of one batch share one pd_opts (answers, answer length), so a QA input whose options differ
 * from the batch's waits for the next batch. When every input of a job is computed the
 * scheduler calls job->done on its thread, without locks held; after that call it never
 * touches the job again.
 *
 * If a mixed batch fails, each request in it is run again on its own (pd_predict_groups), so
 * one bad request cannot fail another's.
 *
 * Sharing compute with training: the scheduler owns the pd_ctx and the pd_pool (kernels.h).
 * A trainer runs its steps on the same pool (pd_pool_run takes turns job by job) and yields
 * between steps while pd_sched_depth() > 0 (inputs submitted and not finished), so
 * predictions never wait behind a whole epoch.
 *
 * Ownership: the caller keeps ownership of jobs and their items; the scheduler only fills
 * results. Thread-safety: pd_sched_submit / _depth / _waiting may be called from any thread;
 * pd_sched_free from the owner once, after the last submit. */
#ifndef PD_SCHEDULER_H
#define PD_SCHEDULER_H

#include "metrics.h"
#include "pipeline.h"

typedef struct pd_sched pd_sched;
typedef struct pd_prediction pd_prediction;

typedef void (*pd_prediction_done_fn)(pd_prediction *job, void *arg);

struct pd_prediction {
    /* set by the submitter */
    pd_item *items;        /* (n) encoded; delta and head set */
    int n;
    pd_opts opts;          /* top_k / max_answer_length for QA items */
    pd_prediction_done_fn done;
    void *arg;
    /* results, valid in done() */
    pd_status status;
    char err[256];
    /* private to the scheduler (guarded by its lock) */
    int next;              /* items handed to a batch */
    int finished;          /* items computed */
    double t_submit;
    pd_prediction *qnext;
};

typedef struct pd_sched_limits {
    int max_batch_tokens;  /* tokens per forward batch */
    int max_queue;         /* inputs submitted but not finished */
    int batch_wait_ms;
} pd_sched_limits;

/* Starts the scheduler thread with its own pd_ctx and a pool of `threads` threads (0 = every
 * core). metrics may be NULL. Returns PD_OK, PD_ERR_NOMEM or PD_ERR_IO (thread creation). */
pd_status pd_sched_new(const pd_model *m, int threads, const pd_sched_limits *lim, pd_metrics *metrics, pd_sched **out,
                       char *err, size_t errlen);

/* Finishes every job already submitted, stops the thread and frees everything. NULL: no-op. */
void pd_sched_free(pd_sched *s);

/* Queues a job. PD_ERR_BUSY if its inputs do not fit in max_queue next to those already
 * waiting or running; PD_ERR_CANCELLED once the scheduler is stopping; PD_ERR_INVALID for a
 * job without items. On PD_OK, job->done will be called exactly once. */
pd_status pd_sched_submit(pd_sched *s, pd_prediction *job);

/* The company hook: returns how many sources of jobs exist (the server: open client
 * connections, each of which has at most one request at a time). A source with a job in the
 * queue adds nothing more; when every source has one (the hook's count <= queued jobs) the
 * scheduler does not wait batch_wait_ms for company. Called on the scheduler thread with its
 * lock held, so it must be cheap and must not call into the scheduler. Without a hook (the
 * default) every batch waits the full batch_wait_ms. Any thread, any time. */
typedef int (*pd_sched_company_fn)(void *arg);
void pd_sched_set_company(pd_sched *s, pd_sched_company_fn fn, void *arg);

/* Wakes the scheduler to consult the company hook again (e.g. a connection closed). Any thread. */
void pd_sched_kick(pd_sched *s);

int pd_sched_depth(pd_sched *s);   /* inputs submitted and not finished */
int pd_sched_waiting(pd_sched *s); /* inputs not yet handed to a batch */
pd_pool *pd_sched_pool(pd_sched *s);
int pd_sched_threads(pd_sched *s);

#endif
