/* worker.c - background task thread. See worker.h. */
#include "worker.h"

#include <pthread.h>

typedef struct task {
    pd_worker_fn fn;
    void *arg;
    struct task *next;
} task;

struct pd_worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    task *head, *tail; /* guarded by lock */
    int depth;         /* guarded by lock */
    int stop;          /* guarded by lock */
};

static void *worker_main(void *arg) {
    pd_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stop) pthread_cond_wait(&w->cv, &w->lock);
        task *t = w->head;
        if (!t) break; /* stopping and drained */
        w->head = t->next;
        if (!w->head) w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        t->fn(t->arg);
        free(t);
        pthread_mutex_lock(&w->lock);
        w->depth--;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

pd_worker *pd_worker_new(void) {
    pd_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w)) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return NULL;
    }
    return w;
}

void pd_worker_free(pd_worker *w) {
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

pd_status pd_worker_submit(pd_worker *w, pd_worker_fn fn, void *arg) {
    task *t = malloc(sizeof *t);
    if (!t) return PD_ERR_NOMEM;
    *t = (task){fn, arg, NULL};
    pthread_mutex_lock(&w->lock);
    if (w->stop) {
        pthread_mutex_unlock(&w->lock);
        free(t);
        return PD_ERR_CANCELLED;
    }
    if (w->tail) w->tail->next = t;
    else w->head = t;
    w->tail = t;
    w->depth++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->lock);
    return PD_OK;
}

int pd_worker_depth(pd_worker *w) {
    pthread_mutex_lock(&w->lock);
    int d = w->depth;
    pthread_mutex_unlock(&w->lock);
    return d;
}
