/* worker.h - one background thread running slow tasks off the HTTP threads, in order.
 *
 * Publishing an adapter (validate, write, fsync, rename) or deleting one takes milliseconds
 * to seconds; an HTTP event-loop thread must not block that long, so routes park the
 * connection and hand the work here (redis bio.c: a queue, a mutex, a condition variable,
 * the lock dropped while a task runs). One thread also serialises registry writes.
 *
 * Ownership: the worker owns its queue nodes, never the task arguments. Thread-safety:
 * pd_worker_submit may be called from any thread; pd_worker_free once, by the owner. */
#ifndef PD_WORKER_H
#define PD_WORKER_H

#include "common.h"

typedef struct pd_worker pd_worker;
typedef void (*pd_worker_fn)(void *arg);

/* Starts the thread. Returns NULL on failure. */
pd_worker *pd_worker_new(void);

/* Runs every task already submitted, then stops the thread and frees the worker. NULL: no-op. */
void pd_worker_free(pd_worker *w);

/* Queues fn(arg). PD_OK (fn will run exactly once), PD_ERR_NOMEM, or PD_ERR_CANCELLED once
 * the worker is stopping (fn will not run). */
pd_status pd_worker_submit(pd_worker *w, pd_worker_fn fn, void *arg);

int pd_worker_depth(pd_worker *w); /* tasks queued or running */

#endif
