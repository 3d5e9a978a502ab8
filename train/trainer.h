/* trainer.h - training jobs: a background queue of validated specs (spec.h) run by worker
 * threads (redis bio.c style: a queue, a mutex, a condition variable, the lock dropped while a
 * job runs), each job a loop of engine steps (engine.h) with evaluations (eval.h), publishing
 * new immutable versions to the registry, its state and checkpoints kept in the job store
 * (store.h) so that unfinished jobs resume after a restart.
 *
 * Inference comes first: the trainer shares the compute pool with the inference scheduler and
 * yields between steps while predictions wait (pd_trainer_set_yield gives it the question).
 * Thread-safety: every function may be called from any thread. */
#ifndef PD_TRAINER_H
#define PD_TRAINER_H

#include "spec.h"

typedef struct pd_trainer pd_trainer;

/* threads: training worker threads (jobs run concurrently up to this many). data_dir may be NULL
 * (no persistence); with one, job state lives in data_dir/.jobs/<id>/ (store.h) and jobs that
 * were queued or running when the process stopped are resumed from their last checkpoint.
 * pool: the compute pool shared with inference. Returns NULL on allocation or thread-creation
 * failure, or when the job store cannot be opened. */
pd_trainer *pd_trainer_new(const pd_model *base, pd_registry *reg, pd_pool *pool, const char *data_dir, int threads);
/* Stops the workers (a running job stops between steps, writes a checkpoint and stays resumable
 * on disk: it is not marked cancelled), joins them and frees everything. NULL is a no-op. */
void pd_trainer_free(pd_trainer *t);

/* The inference side tells the trainer whether predictions are waiting; the trainer calls it
 * between steps and sleeps briefly while it returns nonzero. */
void pd_trainer_set_yield(pd_trainer *t, int (*waiting)(void *arg), void *arg);

/* Finished jobs (succeeded, failed, cancelled) are kept, listed by GET /jobs with their
 * job.json on disk, until more than keep (at least 1) have finished after them or, with
 * max_age_s > 0, they finished more than max_age_s seconds ago (the newest job always stays:
 * ids count on from it after a restart). Then the record and its directory go, oldest first,
 * when a job ends or the list is read. Applies at once. Default: no limit. */
void pd_trainer_set_retention(pd_trainer *t, int keep, double max_age_s);

/* Queues a job for spec (pd_train_spec_parse), taken over whatever the outcome, and writes its
 * directory. On success job_id gets the new id ("j-<n>"). Failures:
 *   PD_ERR_CONFLICT  the adapter already has a queued or running job, or too many jobs wait
 *   PD_ERR_CANCELLED the trainer is shutting down
 *   PD_ERR_IO        the job directory could not be written; PD_ERR_NOMEM. */
pd_status pd_trainer_submit(pd_trainer *t, pd_train_spec *spec, char *job_id, size_t id_cap, char *err, size_t errlen);

/* A job as the API's JSON object ({"job","adapter","status",...}, docs/TRAINING.md), or all of
 * them as {"jobs": [...]} in submission order: compact JSON text into *json (malloc'd).
 * PD_ERR_NOT_FOUND for an unknown job, PD_ERR_NOMEM. */
pd_status pd_trainer_job_json(pd_trainer *t, const char *job_id, char **json, char *err, size_t errlen);
/* The same for a job this process does not list (one another replica sharing the data dir
 * queued after this one started): its job.json as the store has it. Reads the disk: call it
 * off the event loops. PD_ERR_NOT_FOUND when the store has no such job. */
pd_status pd_trainer_job_json_stored(pd_trainer *t, const char *job_id, char **json, char *err, size_t errlen);
pd_status pd_trainer_list_json(pd_trainer *t, char **json, char *err, size_t errlen);

/* Cancels a queued or running job (a running one stops between two micro-batches; this waits up
 * to 2 s for it); the adapter keeps its last published version. PD_ERR_NOT_FOUND, or
 * PD_ERR_CONFLICT when the job has already ended. */
pd_status pd_trainer_cancel(pd_trainer *t, const char *job_id, char *err, size_t errlen);

typedef struct pd_trainer_stats {
    int queued, running;
    uint64_t succeeded, failed, cancelled, steps;
} pd_trainer_stats;
void pd_trainer_stats_get(pd_trainer *t, pd_trainer_stats *s);

#endif
