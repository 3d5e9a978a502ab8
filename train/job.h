/* job.h - a training job's record (inside train/): what it trains, its progress and histories,
 * and its JSON: the object GET /jobs/{id} shows, which job.json and checkpoints store (with the
 * internal fields that resuming needs), and reading that JSON back at start-up.
 *
 * Ownership: a record owns its spec and, when read back, its JSON. Thread-safety: none; the
 * trainer guards records with its lock (fields marked so) and serialises the rest. */
#ifndef PD_TRAIN_JOB_H
#define PD_TRAIN_JOB_H

#include "spec.h"

#include <cJSON.h>
#include <stdatomic.h>

typedef enum { PD_JOB_QUEUED = 0, PD_JOB_RUNNING, PD_JOB_SUCCEEDED, PD_JOB_FAILED, PD_JOB_CANCELLED } pd_job_status;

/* "queued", "running", "succeeded", "failed", "cancelled". */
const char *pd_job_status_name(pd_job_status s);

typedef struct pd_eval_point {
    long step;
    double accuracy, f1, loss;
} pd_eval_point;

typedef struct pd_train_job {
    char id[32];
    char adapter[65];
    pd_train_spec *spec;     /* what it trains (immutable once queued); NULL for a record read back (frozen) */
    int n_train, n_eval;
    char ckpt[64];           /* checkpoint directory to resume from, "" = none */
    long ckpt_seq;           /* number of the last checkpoint directory (ckpt-<seq>) */
    long ckpt_step;          /* optimizer step it holds */
    /* progress: guarded by the trainer's lock */
    pd_job_status status;
    int hold;                /* queued but not yet on disk: workers skip it */
    int ended;               /* finished and its end recorded (job.json, files): the record may be forgotten */
    long step;
    double ex_per_s, eta_s;
    long *loss_step;
    double *loss_val;
    int n_loss, cap_loss;
    pd_eval_point *ev;
    int n_ev, cap_ev;
    int has_best;
    long best_step;
    double best_value;
    int *versions;
    int n_versions, cap_versions;
    char error[512];
    double created_at, started_at, finished_at;
    long resumed_from;       /* -1: not resumed */
    cJSON *frozen;           /* a finished job read back from disk, or another process's: its JSON */
    int lock_fd;             /* the job store's lock while this process owns the job, else -1 */
    atomic_int cancel;       /* 1 = DELETE /jobs/{id}, 2 = the trainer is shutting down */
    /* worker-only */
    double loss_acc;
    int loss_acc_n;
    struct pd_train_job *next;
} pd_train_job;

/* A record for spec (taken over; NULL: a frozen record filled in by the caller). NULL on OOM. */
pd_train_job *pd_train_job_new(pd_train_spec *spec);
/* Drops what only a runnable job needs (data, adapter); the record and the spec's fields stay. */
void pd_train_job_drop_data(pd_train_job *j);
/* Gives up ownership of the job's directory: another process may take an unfinished job over. */
void pd_train_job_unlock(pd_train_job *j);
void pd_train_job_free(pd_train_job *j); /* NULL is a no-op */

/* Histories; -1 on OOM. */
int pd_train_job_push_version(pd_train_job *j, int v);
int pd_train_job_push_loss(pd_train_job *j, long step, double v);
int pd_train_job_push_eval(pd_train_job *j, pd_eval_point r);

/* ==== JSON ==== */

/* The job as the API shows it. exact: unrounded numbers plus the internal fields job.json and
 * checkpoints need ("checkpoint", "loss_acc", "loss_acc_n"). NULL on OOM. */
cJSON *pd_train_job_json(const pd_train_job *j, int exact);
/* A checkpoint's state.json at optimizer step: the exact JSON plus the generators' seeds. */
cJSON *pd_train_job_ckpt_state(const pd_train_job *j, long step);
/* Compact text of one job, or {"jobs": [...]} of the list from head (records on hold left
 * out), into *json (malloc'd). PD_ERR_NOMEM. */
pd_status pd_train_job_print(const pd_train_job *j, char **json, char *err, size_t errlen);
pd_status pd_train_jobs_print(const pd_train_job *head, char **json, char *err, size_t errlen);

/* Restores the histories of a job from its exact JSON (a checkpoint's state.json). */
void pd_train_job_restore_history(pd_train_job *j, const cJSON *state);
/* The status job.json records (anything unknown is failed). */
pd_job_status pd_train_job_state_status(const cJSON *state);
/* A record shown as its job.json says (a finished job, or an unfinished one a live replica
 * owns), without the internal fields; takes state over. NULL on OOM (state is then the caller's). */
pd_train_job *pd_train_job_frozen(cJSON *state, pd_job_status status);
/* A job rebuilt to resume takes from job.json its creation time, its checkpoint and the
 * versions it published. now: the creation time when job.json has none. */
void pd_train_job_resume_state(pd_train_job *j, const cJSON *state, double now);
/* Marks job.json's state failed with err (a job that could not be resumed). */
void pd_train_job_state_fail(cJSON *state, const char *err);

#endif
