/* trainer.c - training jobs: the queue and its workers, the run of one job
 * (steps, evaluations, checkpoints, publishing), jobs found at start-up, the API. See
 * trainer.h and docs/TRAINING.md. Requests are parsed in spec.c, steps taken in engine.c,
 * evaluations in eval.c, files written in store.c; a job's record and its JSON are in job.c. */
#include "trainer.h"

#include "eval.h"
#include "job.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_WAITING_JOBS 64 /* queued jobs before submit says busy */
#define CKPT_EVERY_S 30.0   /* checkpoint at least this often (seconds) */
#define YIELD_MAX_S 0.5     /* longest wait for inference before one step runs */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ==== The trainer ==== */

struct pd_trainer {
    const pd_model *base;
    pd_registry *reg;
    pd_pool *pool;
    pd_train_store *store;
    pthread_t *th;
    int n_th;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    pd_train_job *jobs, *tail; /* guarded by lock: every job, in submission order */
    int stop;                 /* guarded by lock */
    int (*waiting)(void *arg);/* guarded by lock */
    void *waiting_arg;
    int n_queued, n_running;  /* guarded by lock */
    int keep;                 /* guarded by lock: finished jobs kept (pd_trainer_set_retention) */
    double max_age;           /* guarded by lock: seconds a finished job is kept; 0 = no limit */
    uint64_t n_succeeded, n_failed, n_cancelled, n_steps;
};

/* ==== State on disk ==== */

/* Writes job.json (a no-op without a data dir). Failures are logged: the job goes on. */
static void job_save_state(pd_trainer *t, pd_train_job *j) {
    if (!pd_train_store_persistent(t->store)) return;
    char err[512];
    pthread_mutex_lock(&t->lock);
    /* a finished job is only ever shown: store it as the API shows it */
    cJSON *o = pd_train_job_json(j, j->status == PD_JOB_QUEUED || j->status == PD_JOB_RUNNING);
    pthread_mutex_unlock(&t->lock);
    if (!o || pd_train_store_write_state(t->store, j->id, o, err, sizeof err))
        fprintf(stderr, "peftd: trainer: %s: %s\n", j->id, o ? err : "out of memory");
    cJSON_Delete(o);
}

/* Writes a checkpoint of the job at the optimizer's step (store.h: the adapter as a download
 * would have it, the AdamW state, the histories and generator seeds in state.json), points
 * job.json at it and removes older checkpoints. */
static pd_status ckpt_write(pd_trainer *t, pd_train_job *j, pd_adamw *o, int force, char *err, size_t errlen) {
    long step = pd_adamw_steps(o);
    if (!force && j->ckpt[0] && j->ckpt_step == step) return PD_OK; /* nothing new since the last one */
    const pd_train_spec *s = j->spec;
    pd_adapter *snap = NULL;
    pd_status st = pd_adapter_snapshot(s->a, &snap, err, errlen);
    if (st) return st;
    pthread_mutex_lock(&t->lock);
    cJSON *state = pd_train_job_ckpt_state(j, step);
    pthread_mutex_unlock(&t->lock);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)s->seed);
    const char *kv[] = {"seed", seed, "job", j->id};
    st = state ? pd_train_store_ckpt_write(t->store, j->id, j->ckpt_seq + 1, snap, o, kv, 2, state, err, errlen)
               : pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    cJSON_Delete(state);
    pd_adapter_release(snap);
    if (st) return st;
    pthread_mutex_lock(&t->lock);
    j->ckpt_seq++;
    snprintf(j->ckpt, sizeof j->ckpt, "ckpt-%ld", j->ckpt_seq);
    j->ckpt_step = step;
    pthread_mutex_unlock(&t->lock);
    job_save_state(t, j);
    pd_train_store_ckpt_prune(t->store, j->id, j->ckpt);
    return PD_OK;
}

/* Loads the job's checkpoint into the adapter and optimizer, and its histories. */
static pd_status ckpt_load(pd_trainer *t, pd_train_job *j, pd_adamw *o, char *err, size_t errlen) {
    cJSON *s = NULL;
    pd_status st = pd_train_store_ckpt_read(t->store, j->id, j->ckpt, o, &s, err, errlen);
    if (st) return st;
    pd_adapter_params_changed(j->spec->a);
    pthread_mutex_lock(&t->lock);
    int keep_n = j->n_versions;
    int *keep = keep_n ? malloc(sizeof(int) * (size_t)keep_n) : NULL;
    if (keep) memcpy(keep, j->versions, sizeof(int) * (size_t)keep_n);
    pd_train_job_restore_history(j, s);
    /* versions published after the checkpoint are known from job.json: keep them all */
    for (int i = 0; keep && i < keep_n; i++) {
        int seen = 0;
        for (int k = 0; k < j->n_versions && !seen; k++) seen = j->versions[k] == keep[i];
        if (!seen) pd_train_job_push_version(j, keep[i]);
    }
    j->step = pd_adamw_steps(o);
    j->resumed_from = j->step;
    j->ckpt_seq = strtol(j->ckpt + 5, NULL, 10);
    j->ckpt_step = j->step;
    pthread_mutex_unlock(&t->lock);
    free(keep);
    cJSON_Delete(s);
    return PD_OK;
}

/* ==== Running one ==== */

typedef struct hook_arg {
    pd_trainer *t;
    pd_train_job *j;
} hook_arg;

/* Inference first: while predictions wait, sleep in short slices (at most YIELD_MAX_S in a row,
 * so training still advances under a queue that never empties). */
static void trainer_yield(pd_trainer *t, pd_train_job *j) {
    pthread_mutex_lock(&t->lock);
    int (*fn)(void *) = t->waiting;
    void *arg = t->waiting_arg;
    pthread_mutex_unlock(&t->lock);
    if (!fn) return;
    double t0 = pd_now();
    while (!atomic_load(&j->cancel) && fn(arg) && pd_now() - t0 < YIELD_MAX_S) sleep_s(0.0005);
}

/* Between micro-batches and evaluation batches: yield, and stop if the job is cancelled. */
static int job_hook(void *arg) {
    hook_arg *h = arg;
    if (atomic_load(&h->j->cancel)) return 1;
    trainer_yield(h->t, h->j);
    return atomic_load(&h->j->cancel) != 0;
}

/* Publishes a snapshot of the adapter as the next version of its name. */
/* ==== The job's lifecycle in the log ==== */

/* One line {"msg": "job <what>", "job", "adapter", ...} (docs/TRAINING.md, "Logs"); key/value
 * pairs follow: a string for a key starting with '$' (the '$' dropped), else a number. */
static void job_log(const pd_train_job *j, const char *what, const char *k1, const void *v1, const char *k2, const void *v2) {
    char extra[900], msg[32];
    size_t pos = 0;
    extra[0] = 0;
    pd_log_str(extra, sizeof extra, &pos, "job", j->id);
    pd_log_str(extra, sizeof extra, &pos, "adapter", j->adapter);
    const char *keys[2] = {k1, k2};
    const void *vals[2] = {v1, v2};
    for (int i = 0; i < 2 && keys[i]; i++) {
        if (keys[i][0] == '$') pd_log_str(extra, sizeof extra, &pos, keys[i] + 1, vals[i]);
        else pd_log_num(extra, sizeof extra, &pos, keys[i], *(const double *)vals[i]);
    }
    snprintf(msg, sizeof msg, "job %s", what);
    pd_log(strcmp(what, "ended") || j->status != PD_JOB_FAILED ? "info" : "warn", msg, extra);
}

static pd_status job_publish(pd_trainer *t, pd_train_job *j, char *err, size_t errlen) {
    pd_adapter *snap = NULL;
    pd_status st = pd_adapter_snapshot(j->spec->a, &snap, err, errlen);
    if (st) return st;
    int created = 0;
    pd_adapter_info info;
    st = pd_registry_publish_adapter(t->reg, j->adapter, snap, &created, &info, err, errlen);
    pd_adapter_release(snap);
    if (st) return st;
    pthread_mutex_lock(&t->lock);
    int bad = pd_train_job_push_version(j, info.version);
    pthread_mutex_unlock(&t->lock);
    double version = info.version, at = (double)j->step;
    job_log(j, "published", "version", &version, "step", &at);
    pd_adapter_info_clear(&info);
    return bad ? pd_err(err, errlen, PD_ERR_NOMEM, "out of memory") : PD_OK;
}

/* Evaluates at step, records the result and the best so far, publishes as the policy says. */
static pd_status job_eval(pd_trainer *t, pd_train_job *j, pd_train_engine *e, long step, char *err, size_t errlen) {
    const pd_train_spec *s = j->spec;
    pd_eval_result r = {0, 0, 0};
    pd_status st = pd_train_evaluate(e, s, &r, err, errlen);
    if (st) return st;
    double metric = s->task == PD_TASK_CLS ? r.accuracy : r.f1;
    pthread_mutex_lock(&t->lock);
    int bad = pd_train_job_push_eval(j, (pd_eval_point){step, r.accuracy, r.f1, r.loss});
    int improved = !j->has_best || metric > j->best_value;
    if (improved) {
        j->has_best = 1;
        j->best_step = step;
        j->best_value = metric;
    }
    pthread_mutex_unlock(&t->lock);
    if (bad) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    double at = (double)step;
    job_log(j, "evaluated", "step", &at, s->task == PD_TASK_CLS ? "accuracy" : "f1", &metric);
    if (s->publish == PD_PUBLISH_EVERY_EVAL || (s->publish == PD_PUBLISH_BEST && improved)) return job_publish(t, j, err, errlen);
    return PD_OK;
}

static int is_eval_step(const pd_train_job *j, long step) {
    const pd_train_spec *s = j->spec;
    return j->n_eval > 0 && ((s->eval_every > 0 && step % s->eval_every == 0) || step == s->total_steps);
}

/* Runs a job to its end (or to a cancel / shutdown) and returns its final status; PD_JOB_RUNNING
 * means interrupted by shutdown and resumable. err gets the failure message. */
static pd_job_status run_job(pd_trainer *t, pd_train_job *j, char *err, size_t errlen) {
    pd_train_engine *e = NULL;
    pd_adamw *o = NULL;
    const pd_train_spec *s = j->spec;
    int *perm = malloc(sizeof(int) * (size_t)s->train.n);
    hook_arg ha = {t, j};
    pd_status st = pd_train_engine_new(t->base, s->a, s->task, t->pool, 0, &e, err, errlen);
    int np = 0;
    const pd_param *params = pd_adapter_train_params(s->a, &np);
    if (!st && !(o = pd_adamw_new(params, np, 0.9, 0.999, 1e-8, s->weight_decay))) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st && !perm) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    if (!st && j->ckpt[0]) {
        char e2[400];
        if ((st = ckpt_load(t, j, o, e2, sizeof e2))) pd_err(err, errlen, st, "cannot resume from %s: %s", j->ckpt, e2);
    }
    if (!st) pd_train_engine_set_hook(e, job_hook, &ha);
    job_save_state(t, j);
    long step = o ? pd_adamw_steps(o) : 0, step0 = step, cur_epoch = -1, examples = 0;
    double t0 = pd_now(), last_ckpt = t0;
    int persistent = pd_train_store_persistent(t->store);
    /* stopped during the evaluation of the step it checkpointed: do that evaluation first */
    if (!st && step > 0 && is_eval_step(j, step) && (j->n_ev == 0 || j->ev[j->n_ev - 1].step != step)) {
        st = job_eval(t, j, e, step, err, errlen);
        if (!st && persistent) st = ckpt_write(t, j, o, 1, err, errlen);
    }
    while (!st && step < s->total_steps && !atomic_load(&j->cancel)) {
        trainer_yield(t, j);
        if (atomic_load(&j->cancel)) break;
        long ep = step / s->steps_per_epoch;
        if (ep != cur_epoch) {
            pd_train_order(s, ep, perm);
            cur_epoch = ep;
        }
        long b0 = (step % s->steps_per_epoch) * s->batch_size;
        int nb = s->train.n - b0 < s->batch_size ? (int)(s->train.n - b0) : s->batch_size;
        double lr = s->lr * pd_lr_lambda(step, s->warmup_steps, s->total_steps), loss = 0;
        st = pd_train_engine_step(e, o, s->train.ex, perm + b0, nb, lr, s->max_grad_norm, pd_train_dropout_seed(s, step), &loss,
                                  NULL, err, errlen);
        if (st) break;
        step++;
        examples += nb;
        double el = pd_now() - t0;
        pthread_mutex_lock(&t->lock);
        j->loss_acc += loss;
        j->loss_acc_n++;
        j->step = step;
        t->n_steps++;
        if (step % s->log_every == 0 || step == s->total_steps) {
            pd_train_job_push_loss(j, step, j->loss_acc / j->loss_acc_n);
            j->loss_acc = 0;
            j->loss_acc_n = 0;
        }
        j->ex_per_s = el > 0 ? examples / el : 0;
        j->eta_s = (double)(s->total_steps - step) * el / (double)(step - step0);
        pthread_mutex_unlock(&t->lock);
        int eval_now = is_eval_step(j, step);
        if (eval_now) {
            if ((st = job_eval(t, j, e, step, err, errlen))) break;
        }
        if (persistent && (eval_now || pd_now() - last_ckpt >= CKPT_EVERY_S)) {
            if ((st = ckpt_write(t, j, o, 0, err, errlen))) break;
            last_ckpt = pd_now();
        }
    }
    int c = atomic_load(&j->cancel);
    if (st == PD_ERR_CANCELLED) st = PD_OK;
    pd_job_status res;
    if (st) {
        res = PD_JOB_FAILED;
    } else if (c == 1) {
        res = PD_JOB_CANCELLED;
    } else if (c == 2) {
        /* shutdown: keep the job resumable from exactly this step */
        if (persistent && o && (st = ckpt_write(t, j, o, 0, err, errlen)))
            fprintf(stderr, "peftd: trainer: %s: checkpoint at shutdown: %s\n", j->id, err);
        res = PD_JOB_RUNNING;
    } else {
        /* done: evaluate at the end if the last evaluation was earlier, then publish */
        if (s->eval.n > 0 && (j->n_ev == 0 || j->ev[j->n_ev - 1].step != step)) st = job_eval(t, j, e, step, err, errlen);
        if (!st && (s->publish == PD_PUBLISH_END || j->n_versions == 0)) st = job_publish(t, j, err, errlen);
        res = st == PD_ERR_CANCELLED ? PD_JOB_CANCELLED : st ? PD_JOB_FAILED : PD_JOB_SUCCEEDED;
    }
    free(perm);
    pd_adamw_free(o);
    pd_train_engine_free(e);
    return res;
}

/* ==== The queue and its workers ==== */

static pd_train_job *job_find(pd_trainer *t, const char *id) { /* caller holds t->lock */
    for (pd_train_job *j = t->jobs; j; j = j->next)
        if (!j->hold && !strcmp(j->id, id)) return j;
    return NULL;
}

static void job_append(pd_trainer *t, pd_train_job *j) { /* caller holds t->lock */
    j->next = NULL;
    if (t->tail) t->tail->next = j;
    else t->jobs = j;
    t->tail = j;
}

static void job_unlink(pd_trainer *t, pd_train_job *j) { /* caller holds t->lock */
    pd_train_job *prev = NULL;
    for (pd_train_job *x = t->jobs; x; prev = x, x = x->next) {
        if (x != j) continue;
        if (prev) prev->next = x->next;
        else t->jobs = x->next;
        if (t->tail == x) t->tail = prev;
        return;
    }
}

/* Unlinks the finished jobs past the retention limits, oldest first: beyond the newest
 * t->keep, and those that finished more than t->max_age seconds ago (but the newest job, whose
 * number the next ids count from after a restart). Returns them as a list for jobs_forget.
 * Caller holds t->lock. */
static pd_train_job *jobs_expire(pd_trainer *t) {
    int finished = 0;
    for (const pd_train_job *j = t->jobs; j; j = j->next) finished += j->ended;
    double now = wall_now();
    pd_train_job *gone = NULL, **end = &gone;
    for (pd_train_job *j = t->jobs, *nx; j; j = nx) {
        nx = j->next;
        if (!j->ended) continue;
        int old = t->max_age > 0 && j != t->tail && j->finished_at > 0 && now - j->finished_at > t->max_age;
        if (finished <= t->keep && !old) continue;
        job_unlink(t, j);
        j->next = NULL;
        *end = j;
        end = &j->next;
        finished--;
    }
    return gone;
}

/* Removes the directories of expired jobs and frees their records. Without the lock. */
static void jobs_forget(pd_trainer *t, pd_train_job *gone) {
    for (pd_train_job *nx; gone; gone = nx) {
        nx = gone->next;
        pd_train_store_remove(t->store, gone->id);
        pd_train_job_free(gone);
    }
}

/* A job that ended: job.json says how, its data and checkpoints go (the published versions are
 * in the registry), this process gives up its lock, and the memory it trained with is freed.
 * Finished jobs past the retention limits are forgotten. */
static void job_ended(pd_trainer *t, pd_train_job *j) {
    job_save_state(t, j);
    pd_train_store_finish(t->store, j->id);
    pd_train_job_unlock(j);
    pd_train_job_drop_data(j); /* only the thread that ended the job touches its data */
    pthread_mutex_lock(&t->lock);
    j->ended = 1;
    pd_train_job *gone = jobs_expire(t);
    pthread_mutex_unlock(&t->lock);
    jobs_forget(t, gone);
}

static void *worker_main(void *arg) {
    pd_trainer *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        pd_train_job *j = NULL;
        while (!t->stop) {
            for (j = t->jobs; j && (j->hold || j->status != PD_JOB_QUEUED); j = j->next) {}
            if (j) break;
            pthread_cond_wait(&t->cv, &t->lock);
        }
        if (t->stop) break;
        j->status = PD_JOB_RUNNING;
        j->started_at = wall_now();
        t->n_queued--;
        t->n_running++;
        double from = (double)j->step, total = (double)j->spec->total_steps;
        pthread_mutex_unlock(&t->lock);
        job_log(j, "started", "step", &from, "total_steps", &total);
        char err[512] = "";
        pd_job_status res = run_job(t, j, err, sizeof err);
        pthread_mutex_lock(&t->lock);
        t->n_running--;
        if (res == PD_JOB_RUNNING) { /* shutdown: job.json still says running */
            double at = (double)j->step;
            job_log(j, "paused", "step", &at, "$reason", "the server is shutting down; the job resumes at the next start");
            continue;
        }
        j->status = res;
        j->finished_at = wall_now();
        j->eta_s = 0;
        if (res == PD_JOB_FAILED) snprintf(j->error, sizeof j->error, "%s", err[0] ? err : "failed");
        if (res == PD_JOB_SUCCEEDED) t->n_succeeded++;
        else if (res == PD_JOB_FAILED) t->n_failed++;
        else t->n_cancelled++;
        char reason[600];
        if (res == PD_JOB_FAILED) snprintf(reason, sizeof reason, "%s", j->error);
        else if (res == PD_JOB_CANCELLED) snprintf(reason, sizeof reason, "cancelled while running (DELETE /jobs/%s)", j->id);
        else snprintf(reason, sizeof reason, "trained %ld steps", j->step);
        pthread_mutex_unlock(&t->lock);
        job_log(j, "ended", "$status", pd_job_status_name(res), "$reason", reason);
        job_ended(t, j);
        pthread_mutex_lock(&t->lock);
        pthread_cond_broadcast(&t->cv); /* pd_trainer_cancel may wait for this */
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* ==== Start-up: jobs found on disk ==== */

/* Rebuilds a runnable job from its files: the spec parsed again exactly as when it was
 * submitted (from the saved copy of the version it continues), its place from job.json. */
static pd_status job_resume(pd_trainer *t, const char *id, const cJSON *state, pd_train_job **out, char *err, size_t errlen) {
    pd_train_stored d;
    char e2[400];
    pd_train_spec *spec = NULL;
    pd_status st = pd_train_store_read_spec(t->store, id, &d, err, errlen);
    if (st) return st;
    st = pd_train_spec_parse(t->base, t->reg, d.spec, d.spec_len, d.train ? d.train : "", d.train_len, d.eval, d.eval_len,
                             d.source_dir[0] ? d.source_dir : NULL, 0 /* accepted when submitted */, &spec, e2, sizeof e2);
    pd_train_stored_clear(&d);
    if (st) return pd_err(err, errlen, st, "cannot resume: %s", e2);
    pd_train_spec_drop_texts(spec); /* on disk already */
    pd_train_job *j = *out = pd_train_job_new(spec);
    if (!j) {
        pd_train_spec_free(spec);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    j->status = PD_JOB_QUEUED;
    pd_train_job_resume_state(j, state, wall_now());
    return PD_OK;
}

/* Loads job id: a finished job as a record, an unfinished one queued again to resume from its
 * checkpoint (unless a live replica owns it). Problems are logged and the job is marked
 * failed; start-up goes on. */
static void job_load(pd_trainer *t, const char *id) {
    char err[512];
    cJSON *state = NULL;
    if (pd_train_store_read_state(t->store, id, &state, err, sizeof err)) {
        fprintf(stderr, "peftd: trainer: skipping %s: %s\n", id, err);
        return;
    }
    pd_job_status status = pd_train_job_state_status(state);
    pd_train_job *j = NULL;
    int lock_fd = -1;
    if (status != PD_JOB_QUEUED && status != PD_JOB_RUNNING) {
        if ((j = pd_train_job_frozen(state, status))) j->ended = 1;
    } else if ((lock_fd = pd_train_store_lock(t->store, id)) < 0) {
        /* a live process (a replica sharing the data dir) owns it: show it as its job.json says */
        j = pd_train_job_frozen(state, status);
    } else if (job_resume(t, id, state, &j, err, sizeof err)) {
        /* keep a record of what could not be resumed */
        fprintf(stderr, "peftd: trainer: %s: %s\n", id, err);
        pd_train_job_state_fail(state, err);
        pd_train_store_write_state(t->store, id, state, err, sizeof err);
        close(lock_fd);
        j = pd_train_job_frozen(state, PD_JOB_FAILED);
    } else {
        j->lock_fd = lock_fd;
        t->n_queued++;
        cJSON_Delete(state);
    }
    if (!j) {
        cJSON_Delete(state);
        return;
    }
    snprintf(j->id, sizeof j->id, "%s", id);
    job_append(t, j);
}

/* ==== API ==== */

pd_trainer *pd_trainer_new(const pd_model *base, pd_registry *reg, pd_pool *pool, const char *data_dir, int threads) {
    if (!base || !reg) return NULL;
    pd_trainer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->base = base;
    t->reg = reg;
    t->pool = pool;
    t->keep = INT_MAX;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cv, NULL);
    char err[512];
    if (pd_train_store_open(data_dir, &t->store, err, sizeof err)) {
        fprintf(stderr, "peftd: trainer: %s\n", err);
        goto fail;
    }
    long *nums = NULL;
    int n = 0;
    if (pd_train_store_list(t->store, &nums, &n)) fprintf(stderr, "peftd: trainer: cannot list the jobs of %s\n", data_dir);
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "j-%ld", nums[i]);
        job_load(t, id);
    }
    free(nums);
    if (threads < 1) threads = 1;
    if (!(t->th = calloc((size_t)threads, sizeof *t->th))) goto fail;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&t->th[i], NULL, worker_main, t)) break;
        t->n_th++;
    }
    if (t->n_th == 0) goto fail;
    return t;
fail:
    pd_trainer_free(t);
    return NULL;
}

void pd_trainer_free(pd_trainer *t) {
    if (!t) return;
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    for (pd_train_job *j = t->jobs; j; j = j->next) {
        int zero = 0;
        if (j->status == PD_JOB_RUNNING) atomic_compare_exchange_strong(&j->cancel, &zero, 2);
    }
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->n_th; i++) pthread_join(t->th[i], NULL);
    for (pd_train_job *j = t->jobs, *nx; j; j = nx) {
        nx = j->next;
        pd_train_job_free(j);
    }
    free(t->th);
    pd_train_store_free(t->store);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void pd_trainer_set_yield(pd_trainer *t, int (*waiting)(void *arg), void *arg) {
    pthread_mutex_lock(&t->lock);
    t->waiting = waiting;
    t->waiting_arg = arg;
    pthread_mutex_unlock(&t->lock);
}

void pd_trainer_set_retention(pd_trainer *t, int keep, double max_age_s) {
    pthread_mutex_lock(&t->lock);
    t->keep = keep < 1 ? 1 : keep;
    t->max_age = max_age_s > 0 ? max_age_s : 0;
    pd_train_job *gone = jobs_expire(t);
    pthread_mutex_unlock(&t->lock);
    jobs_forget(t, gone);
}

pd_status pd_trainer_submit(pd_trainer *t, pd_train_spec *spec, char *job_id, size_t id_cap, char *err, size_t errlen) {
    pd_train_job *j = pd_train_job_new(spec);
    if (!j) {
        pd_train_spec_free(spec);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    pd_status st = PD_OK;
    pthread_mutex_lock(&t->lock);
    int waiting = 0;
    const pd_train_job *busy = NULL;
    for (const pd_train_job *x = t->jobs; x; x = x->next) {
        if (x->status == PD_JOB_QUEUED) waiting++;
        if ((x->status == PD_JOB_QUEUED || x->status == PD_JOB_RUNNING) && !strcmp(x->adapter, j->adapter)) busy = x;
    }
    if (t->stop) st = pd_err(err, errlen, PD_ERR_CANCELLED, "the trainer is shutting down");
    else if (busy) st = pd_err(err, errlen, PD_ERR_CONFLICT, "adapter: '%s' is already being trained by job %s", j->adapter, busy->id);
    else if (waiting >= MAX_WAITING_JOBS) st = pd_err(err, errlen, PD_ERR_CONFLICT, "%d training jobs are already queued", waiting);
    cJSON *state = NULL;
    char id[32];
    if (!st) {
        pd_train_store_next_id(t->store, j->id, sizeof j->id);
        j->status = PD_JOB_QUEUED;
        j->hold = 1;
        j->created_at = wall_now();
        job_append(t, j);
        if (!(state = pd_train_job_json(j, 1))) st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
        snprintf(id, sizeof id, "%s", j->id);
    }
    pthread_mutex_unlock(&t->lock);
    if (st && !state) {
        pthread_mutex_lock(&t->lock);
        job_unlink(t, j);
        pthread_mutex_unlock(&t->lock);
        pd_train_job_free(j);
        return st;
    }
    /* the store may give the job another number (a replica took this one): id is ours until then */
    st = pd_train_store_create(t->store, id, sizeof id, spec, state, &j->lock_fd, err, errlen);
    cJSON_Delete(state);
    pd_train_spec_drop_texts(spec); /* the texts and the source version were only needed on disk */
    pthread_mutex_lock(&t->lock);
    if (st) {
        job_unlink(t, j);
    } else {
        snprintf(j->id, sizeof j->id, "%s", id);
        j->hold = 0;
        t->n_queued++;
        snprintf(job_id, id_cap, "%s", j->id);
        double steps = (double)spec->total_steps; /* logged before a worker can take the job */
        job_log(j, "queued", "$method", pd_method_name(spec->method), "total_steps", &steps);
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->lock);
    if (st) pd_train_job_free(j);
    return st;
}

pd_status pd_trainer_job_json(pd_trainer *t, const char *job_id, char **json, char *err, size_t errlen) {
    *json = NULL;
    pthread_mutex_lock(&t->lock);
    pd_train_job *j = job_find(t, job_id);
    pd_status st = j ? pd_train_job_print(j, json, err, errlen) : pd_err(err, errlen, PD_ERR_NOT_FOUND, "job \"%s\" not found", job_id);
    pthread_mutex_unlock(&t->lock);
    return st;
}

pd_status pd_trainer_job_json_stored(pd_trainer *t, const char *job_id, char **json, char *err, size_t errlen) {
    *json = NULL;
    size_t n = strlen(job_id);
    int ok = n > 2 && n < 22 && job_id[0] == 'j' && job_id[1] == '-' && job_id[2] != '0';
    for (size_t i = 2; ok && i < n; i++) ok = job_id[i] >= '0' && job_id[i] <= '9';
    cJSON *state = NULL;
    char e2[256];
    if (!ok || pd_train_store_read_state(t->store, job_id, &state, e2, sizeof e2))
        return pd_err(err, errlen, PD_ERR_NOT_FOUND, "job \"%.40s\" not found", job_id);
    pd_train_job *j = pd_train_job_frozen(state, pd_train_job_state_status(state));
    if (!j) {
        cJSON_Delete(state);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    pd_status st = pd_train_job_print(j, json, err, errlen);
    pd_train_job_free(j);
    return st;
}

pd_status pd_trainer_list_json(pd_trainer *t, char **json, char *err, size_t errlen) {
    pthread_mutex_lock(&t->lock);
    pd_train_job *gone = jobs_expire(t); /* the time limit: nothing else may have ended a job lately */
    pd_status st = pd_train_jobs_print(t->jobs, json, err, errlen);
    pthread_mutex_unlock(&t->lock);
    jobs_forget(t, gone);
    return st;
}

pd_status pd_trainer_cancel(pd_trainer *t, const char *job_id, char *err, size_t errlen) {
    pthread_mutex_lock(&t->lock);
    pd_train_job *j = job_find(t, job_id);
    if (!j) {
        pthread_mutex_unlock(&t->lock);
        return pd_err(err, errlen, PD_ERR_NOT_FOUND, "job '%.40s' not found", job_id);
    }
    if (j->status == PD_JOB_QUEUED) {
        j->status = PD_JOB_CANCELLED;
        j->finished_at = wall_now();
        t->n_queued--;
        t->n_cancelled++;
        pthread_mutex_unlock(&t->lock);
        job_log(j, "ended", "$status", "cancelled", "$reason", "cancelled while queued (DELETE /jobs/{id})");
        job_ended(t, j); /* no worker takes a cancelled pd_train_job */
        return PD_OK;
    }
    if (j->status != PD_JOB_RUNNING) {
        pd_status st = pd_err(err, errlen, PD_ERR_CONFLICT, "job %s already %s", j->id, pd_job_status_name(j->status));
        pthread_mutex_unlock(&t->lock);
        return st;
    }
    int zero = 0;
    atomic_compare_exchange_strong(&j->cancel, &zero, 1);
    /* the worker stops between micro-batches; wait a little so the answer usually shows it (the
     * record is looked up again each time: once ended, retention may forget it) */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    char id[sizeof j->id];
    memcpy(id, j->id, sizeof id);
    while ((j = job_find(t, id)) && j->status == PD_JOB_RUNNING && !t->stop)
        if (pthread_cond_timedwait(&t->cv, &t->lock, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&t->lock);
    return PD_OK;
}

void pd_trainer_stats_get(pd_trainer *t, pd_trainer_stats *s) {
    pthread_mutex_lock(&t->lock);
    s->queued = t->n_queued;
    s->running = t->n_running;
    s->succeeded = t->n_succeeded;
    s->failed = t->n_failed;
    s->cancelled = t->n_cancelled;
    s->steps = t->n_steps;
    pthread_mutex_unlock(&t->lock);
}
