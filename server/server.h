/* server.h - the serving process: base model, adapter registry, scheduler, background workers,
 * trainer, registry sync thread and the HTTP daemon (with the route table of routes.h), started
 * and stopped in order.
 *
 * pd_server_start brings the HTTP daemon up first (GET /health answers 200 at once, GET /ready
 * 503 while loading), then loads the model (generating the embedded default model when none is given and none
 * is on disk), opens the registry on the data dir, starts the scheduler, the workers, the
 * trainer and the sync thread, and only then marks the server ready. pd_server_stop stops
 * accepting, lets in-flight requests finish (parked ones are always finished: the scheduler and
 * the workers drain their queues), stops the daemon and frees everything.
 *
 * Ownership: the server owns every object it points to. Thread-safety: fields are set before
 * `ready` is raised (release) and only read afterwards (acquire), except the atomics. */
#ifndef PD_SERVER_H
#define PD_SERVER_H

#include "http.h"
#include "metrics.h"
#include "options.h"
#include "registry.h"
#include "scheduler.h"
#include "trainer.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct pd_server {
    pd_serve_opts opt;
    char model_dir[4096];
    pd_model *model;
    pd_registry *reg;
    pd_sched *sched;
    pd_worker *worker;      /* registry writes and training requests, in order */
    pd_worker *loader;      /* registry loads (a version read from disk) for /predict */
    pd_trainer *trainer;    /* training jobs, on the scheduler's pool */
    pd_metrics *metrics;
    char *api_key;          /* NULL: no authentication */
    size_t api_key_len;
    size_t max_body;        /* bytes */
    pd_http_config http_config;
    pd_http *http;
    int port;               /* the bound port */
    char replica[128];      /* "<hostname>:<port>", sent as X-Peftd-Replica on every response */
    double t_start;
    atomic_int ready;       /* 1 once model, registry and scheduler are up */
    atomic_int draining;    /* 1 once shutdown began: responses close their connection */
    atomic_int connections; /* open client connections (the scheduler's company hook) */
    atomic_llong store_ok_ms; /* pd_now() in ms when the sync thread last read the data dir */
    atomic_int store_errno;   /* why its last attempt failed; 0 when it succeeded */
    /* registry sync thread */
    pthread_t sync_thread;
    int sync_started;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cv;
    int sync_stop;          /* guarded by sync_lock */
} pd_server;

/* Starts everything described by o. On failure returns an error (the message names the
 * option, file or address) and *out stays NULL. */
pd_status pd_server_start(const pd_serve_opts *o, pd_server **out, char *err, size_t errlen);

/* Seconds without a successful read of the data dir after which the server is not ready. */
#define PD_STORE_STALE_S 10.0

/* Whether the server is ready (GET /ready): the model loaded, the registry open and the data
 * dir read by the sync thread within PD_STORE_STALE_S, not shutting down. When not, why gets
 * the reason. Any thread. */
int pd_server_ready(pd_server *s, char *why, size_t cap);

/* Graceful stop: no new connections, in-flight requests answered, then everything freed. */
void pd_server_stop(pd_server *s);

/* Finds the embedded default model directory: models/default under the executable's
 * directory's parent, else under the current directory. If neither exists, generates it in
 * the first of those places that can be written. Writes the path into dir. */
pd_status pd_server_default_model(char *dir, size_t cap, char *err, size_t errlen);

/* Refuses an API key a client could guess: shorter than PD_API_KEY_MIN characters, holding a
 * placeholder word ("change-me", "example", ...; case ignored) or one character repeated.
 * PD_ERR_INVALID saying why. */
#define PD_API_KEY_MIN 16
pd_status pd_api_key_check(const char *key, size_t len, char *err, size_t errlen);

#endif
