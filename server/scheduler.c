/* scheduler.c - batching compute thread. See scheduler.h. */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

struct pd_sched {
    const pd_model *model;
    pd_pool *pool;
    pd_ctx *ctx;           /* used only by the scheduler thread */
    pd_metrics *metrics;
    pd_sched_limits lim;
    pthread_t thread;
    int started;

    pthread_mutex_t lock;
    pthread_cond_t cv;
    pd_prediction *head, *tail;   /* guarded by lock: jobs with items not yet batched */
    int jobs;              /* guarded by lock: jobs in that list */
    int depth;             /* guarded by lock: inputs submitted, not finished */
    int waiting;           /* guarded by lock: inputs not yet batched */
    long waiting_tokens;   /* guarded by lock */
    int stop;              /* guarded by lock */
    pd_sched_company_fn company; /* guarded by lock; NULL: always wait batch_wait_ms */
    void *company_arg;     /* guarded by lock */

    /* the current batch; used only by the scheduler thread */
    pd_item **batch;
    pd_prediction **owner;
    int *group;            /* (cap) owner's place in the batch: items of one request share it */
    pd_prediction **done;         /* jobs completed by the batch */
    int cap;
};

/* ==== Submitting ==== */

pd_status pd_sched_submit(pd_sched *s, pd_prediction *job) {
    if (job->n <= 0) return PD_ERR_INVALID;
    long tokens = 0;
    for (int i = 0; i < job->n; i++) tokens += pd_item_tokens(&job->items[i]);
    job->status = PD_OK;
    job->err[0] = 0;
    job->next = job->finished = 0;
    job->qnext = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->stop) {
        pthread_mutex_unlock(&s->lock);
        return PD_ERR_CANCELLED;
    }
    if (s->depth + job->n > s->lim.max_queue) {
        pthread_mutex_unlock(&s->lock);
        if (s->metrics) pd_metrics_rejected(s->metrics, job->n);
        return PD_ERR_BUSY;
    }
    job->t_submit = pd_now();
    if (s->tail) s->tail->qnext = job;
    else s->head = job;
    s->tail = job;
    s->jobs++;
    s->depth += job->n;
    s->waiting += job->n;
    s->waiting_tokens += tokens;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
    return PD_OK;
}

int pd_sched_depth(pd_sched *s) {
    pthread_mutex_lock(&s->lock);
    int d = s->depth;
    pthread_mutex_unlock(&s->lock);
    return d;
}

int pd_sched_waiting(pd_sched *s) {
    pthread_mutex_lock(&s->lock);
    int w = s->waiting;
    pthread_mutex_unlock(&s->lock);
    return w;
}

pd_pool *pd_sched_pool(pd_sched *s) { return s->pool; }
int pd_sched_threads(pd_sched *s) { return pd_pool_size(s->pool); }

/* Installs the hook that tells a batch wait whether company can still come, and wakes the
 * scheduler so a wait in progress re-checks with it. */
void pd_sched_set_company(pd_sched *s, pd_sched_company_fn fn, void *arg) {
    pthread_mutex_lock(&s->lock);
    s->company = fn;
    s->company_arg = arg;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

/* Wakes a batch wait to consult the hook again (a source went away without submitting). */
void pd_sched_kick(pd_sched *s) {
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->lock);
}

/* ==== Batching ==== */

static int qa_opts_equal(const pd_opts *a, const pd_opts *b) {
    return a->top_k == b->top_k && a->max_answer_length == b->max_answer_length;
}

static int grow_batch(pd_sched *s, int need) {
    if (need <= s->cap) return 0;
    int cap = s->cap ? s->cap * 2 : 64;
    while (cap < need) cap *= 2;
    pd_item **b = realloc(s->batch, sizeof *b * (size_t)cap);
    if (!b) return -1;
    s->batch = b;
    pd_prediction **o = realloc(s->owner, sizeof *o * (size_t)cap);
    if (!o) return -1;
    s->owner = o;
    pd_prediction **d = realloc(s->done, sizeof *d * (size_t)cap);
    if (!d) return -1;
    s->done = d;
    int *g = realloc(s->group, sizeof *g * (size_t)cap);
    if (!g) return -1;
    s->group = g;
    s->cap = cap;
    return 0;
}

/* Takes items in arrival order up to the token budget into s->batch; unlinks jobs whose items
 * are all taken. Returns the number of items (>= 1 when a job waits). Caller holds s->lock. */
static int gather(pd_sched *s, long *tokens_out, pd_opts *qa_out) {
    int n = 0, have_qa = 0;
    long tokens = 0;
    pd_prediction *prev = NULL, *job = s->head;
    while (job) {
        while (job->next < job->n) {
            pd_item *it = &job->items[job->next];
            int c = pd_item_tokens(it);
            if (n > 0 && tokens + c > s->lim.max_batch_tokens) goto full;
            if (it->task == PD_TASK_QA) {
                if (!have_qa) { *qa_out = job->opts; have_qa = 1; }
                else if (!qa_opts_equal(qa_out, &job->opts)) break; /* next batch */
            }
            if (grow_batch(s, n + 1)) goto full;
            s->batch[n] = it;
            s->owner[n] = job;
            n++;
            tokens += c;
            job->next++;
        }
        pd_prediction *nx = job->qnext;
        if (job->next == job->n) { /* fully batched: leaves the queue */
            if (prev) prev->qnext = nx;
            else s->head = nx;
            if (s->tail == job) s->tail = prev;
            job->qnext = NULL;
            s->jobs--;
        } else {
            prev = job;
        }
        job = nx;
    }
full:
    s->waiting -= n;
    s->waiting_tokens -= tokens;
    *tokens_out = tokens;
    return n;
}

/* A request of the batch failed (alone, or the whole batch was its): it gets the status. */
static void batch_failed(int first, int count, pd_status st, const char *err, void *arg) {
    pd_prediction *p = ((pd_sched *)arg)->owner[first];
    p->status = st;
    snprintf(p->err, sizeof p->err, "%s", err);
}

/* Runs the batch; items of one request are adjacent in it (gather takes them in order), and a
 * failure lands only on the requests that fail by themselves. The QA options of a batch are
 * equal for all its QA items (gather), so a request runs alone with the same ones. */
static void run_batch(pd_sched *s, int n, const pd_opts *qa) {
    for (int i = 0; i < n; i++) s->group[i] = i > 0 && s->owner[i] == s->owner[i - 1] ? s->group[i - 1] : i;
    pd_predict_groups(s->ctx, s->batch, n, s->group, qa, batch_failed, s);
}

static void *sched_main(void *arg) {
    pd_sched *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* Nothing queued: the pool's workers sleep rather than spin, so the HTTP threads
         * (and, on a shared machine, everything else) get the cores until the next batch. */
        if (!s->head && !s->stop) pd_pool_rest(s->pool);
        while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->lock);
        if (!s->head) break; /* stopping and drained */
        /* Give the oldest waiting input up to batch_wait_ms to gather company, but only while
         * company can still come: once every source the hook counts (open connections) has a
         * job in the queue, more waiting only adds latency. Each submit and each kick wakes
         * this loop to look again. Under load the oldest input has waited that long already
         * behind the previous batch, so the wait costs nothing then. */
        while (!s->stop && s->head && s->waiting_tokens < s->lim.max_batch_tokens) {
            if (s->company && s->company(s->company_arg) <= s->jobs) break;
            double due = s->head->t_submit + s->lim.batch_wait_ms / 1000.0, now = pd_now();
            if (now >= due) break;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double wait = due - now;
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
            if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&s->cv, &s->lock, &ts);
        }
        if (!s->head) continue;
        long tokens = 0;
        pd_opts qa = {0};
        int n = gather(s, &tokens, &qa);
        pthread_mutex_unlock(&s->lock);

        double t0 = pd_now();
        for (int i = 0; s->metrics && i < n; i++) pd_metrics_queue_wait(s->metrics, t0 - s->owner[i]->t_submit);
        if (n > 0) run_batch(s, n, &qa);
        double dt = pd_now() - t0;
        int seqs = 0;
        for (int i = 0; i < n; i++) seqs += s->batch[i]->n_win;
        if (s->metrics && n > 0) pd_metrics_batch(s->metrics, n, seqs, (int)tokens, dt);

        /* Count finished items; collect jobs that are now complete. */
        int nd = 0;
        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < n; i++) {
            pd_prediction *j = s->owner[i];
            if (++j->finished == j->n) s->done[nd++] = j; /* nd <= n <= cap */
        }
        s->depth -= n;
        pthread_mutex_unlock(&s->lock);
        for (int i = 0; i < nd; i++) s->done[i]->done(s->done[i], s->done[i]->arg);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ==== Lifetime ==== */

pd_status pd_sched_new(const pd_model *m, int threads, const pd_sched_limits *lim, pd_metrics *metrics, pd_sched **out,
                       char *err, size_t errlen) {
    *out = NULL;
    pd_sched *s = calloc(1, sizeof *s);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    s->model = m;
    s->lim = *lim;
    if (s->lim.max_batch_tokens < 1) s->lim.max_batch_tokens = 1;
    if (s->lim.max_queue < 1) s->lim.max_queue = 1;
    if (s->lim.batch_wait_ms < 0) s->lim.batch_wait_ms = 0;
    s->metrics = metrics;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->pool = pd_pool_new(threads);
    s->ctx = s->pool ? pd_ctx_new(m, s->pool) : NULL;
    if (!s->pool || !s->ctx || grow_batch(s, 64)) {
        pd_sched_free(s);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory starting the scheduler");
    }
    int rc = pthread_create(&s->thread, NULL, sched_main, s);
    if (rc) {
        pd_sched_free(s);
        return pd_err(err, errlen, PD_ERR_IO, "cannot start the scheduler thread: %s", strerror(rc));
    }
    s->started = 1;
    *out = s;
    return PD_OK;
}

void pd_sched_free(pd_sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    pd_ctx_free(s->ctx);
    pd_pool_free(s->pool);
    free(s->batch);
    free(s->owner);
    free(s->group);
    free(s->done);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
