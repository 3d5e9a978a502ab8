/* store.h - the job store: one directory per training job under DATA_DIR/.jobs/, outside the
 * adapter namespace (a name starting with '.' is never an adapter's; docs/STORE.md):
 *
 *   .jobs/j-<n>/spec.json      the request without its data
 *               train.jsonl    eval.jsonl (when given or split off)
 *               source/        continuing jobs: the version training started from
 *               job.json       the job as GET /jobs/{id} shows it (+ the current checkpoint)
 *               lock           flock'd by the process that owns an unfinished job
 *               ckpt-<k>/      adapter/ (its files), optim.safetensors (AdamW), state.json
 *
 * Every write survives a crash whole or not at all: a job directory and a checkpoint are
 * written under a temporary name and renamed into place, job.json is replaced atomically.
 * Replicas share the store: a job id is claimed by that rename, and a process owns an
 * unfinished job while it holds the flock on its lock file. Opening the store moves the job
 * directories of the old layout (DATA_DIR/jobs/j-<n>) into .jobs/.
 *
 * Ownership: functions returning text or cJSON give the caller what it frees. Thread-safety:
 * every function may be called from any thread; calls on one job are serialised by its owner. */
#ifndef PD_TRAIN_STORE_H
#define PD_TRAIN_STORE_H

#include "spec.h"

#include <cJSON.h>

#define PD_TRAIN_STORE_DIR ".jobs"

typedef struct pd_train_store pd_train_store;

/* Opens DATA_DIR/.jobs (created; old-layout jobs moved in, see above). data_dir NULL: no files,
 * every write is a no-op and ids are only counted. PD_ERR_IO when the directory cannot be made. */
pd_status pd_train_store_open(const char *data_dir, pd_train_store **out, char *err, size_t errlen);
void pd_train_store_free(pd_train_store *s); /* NULL is a no-op */
int pd_train_store_persistent(const pd_train_store *s);

/* Job ids "j-<n>", n counting up from 1 past every id found on disk. */
void pd_train_store_next_id(pd_train_store *s, char *id, size_t cap);

/* Writes the directory of a new job: spec's texts and source, state as job.json, and the lock
 * file, held open in *lock_fd (closing it gives the job up). When another process has taken id
 * meanwhile, the job takes the next free one: id (and state's "job") are rewritten. */
pd_status pd_train_store_create(pd_train_store *s, char *id, size_t cap, const pd_train_spec *spec, cJSON *state,
                                int *lock_fd, char *err, size_t errlen);

/* Replaces the job's job.json with state. */
pd_status pd_train_store_write_state(pd_train_store *s, const char *id, const cJSON *state, char *err, size_t errlen);

/* Writes checkpoint ckpt-<seq> of the job: the adapter a in its own format, the optimizer o
 * (with meta_kv in its metadata) and state as state.json. */
pd_status pd_train_store_ckpt_write(pd_train_store *s, const char *id, long seq, const pd_adapter *a, const pd_adamw *o,
                                    const char *const *meta_kv, int n_meta, const cJSON *state, char *err, size_t errlen);

/* Reads checkpoint name back: the optimizer's state (and the parameters it lists) into o,
 * state.json into *state. */
pd_status pd_train_store_ckpt_read(pd_train_store *s, const char *id, const char *name, pd_adamw *o, cJSON **state,
                                   char *err, size_t errlen);

/* Removes every checkpoint of the job but keep (NULL: all). */
void pd_train_store_ckpt_prune(pd_train_store *s, const char *id, const char *keep);

/* A finished job keeps job.json and spec.json; its data, source, lock and checkpoints go. */
void pd_train_store_finish(pd_train_store *s, const char *id);

/* Forgets a finished job: its directory goes (renamed to a temporary name first, so that a
 * crash halfway leaves nothing that looks like a job). */
void pd_train_store_remove(pd_train_store *s, const char *id);

/* The job numbers on disk in increasing order (malloc'd into *nums); job directories being
 * created that are older than 10 minutes (left by a crash) are removed. */
pd_status pd_train_store_list(pd_train_store *s, long **nums, int *n);

/* Reads the job's job.json. */
pd_status pd_train_store_read_state(pd_train_store *s, const char *id, cJSON **state, char *err, size_t errlen);

/* What an unfinished job needs to resume: spec.json, train.jsonl and eval.jsonl as text (NULL
 * when absent), and the path of source/ in source_dir ("" when absent). */
typedef struct pd_train_stored {
    char *spec, *train, *eval;
    size_t spec_len, train_len, eval_len;
    char source_dir[4200];
} pd_train_stored;
pd_status pd_train_store_read_spec(pd_train_store *s, const char *id, pd_train_stored *out, char *err, size_t errlen);
void pd_train_stored_clear(pd_train_stored *d);

/* Takes the job's lock: the descriptor, or -1 when another live process holds it. */
int pd_train_store_lock(pd_train_store *s, const char *id);

#endif
