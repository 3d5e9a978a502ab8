/* server.h - the serving process: base model, adapter registry, scheduler, background worker,
 * registry sync thread and the HTTP daemon, started and stopped in order.
 *
 * pd_server_start brings the HTTP daemon up first (GET /health answers 503 while loading),
 * then loads the model (generating the embedded default model when none is given and none
 * is on disk), opens the registry on the data dir, starts the scheduler, the worker and the
 * sync thread, and only then marks the server ready. pd_server_stop stops accepting, lets
 * in-flight requests finish (parked ones are always finished: the scheduler and the worker
 * drain their queues), stops the daemon and frees everything.
 *
 * Ownership: the server owns every object it points to. Thread-safety: fields are set before
 * `ready` is raised (release) and only read afterwards (acquire), except the atomics. */
#ifndef PD_SERVER_H
#define PD_SERVER_H

#include "metrics.h"
#include "options.h"
#include "registry.h"
#include "scheduler.h"
#include "worker.h"

#include <pthread.h>
#include <stdatomic.h>

struct MHD_Daemon;

typedef struct pd_server {
    pd_serve_opts opt;
    char model_dir[4096];
    pd_model *model;
    pd_registry *reg;
    pd_sched *sched;
    pd_worker *worker;
    struct pd_trainer *trainer; /* training jobs (adapters/trainer.h), on the scheduler's pool */
    pd_metrics *metrics;
    char *api_key;          /* NULL: no authentication */
    size_t api_key_len;
    size_t max_body;        /* bytes */
    struct MHD_Daemon *daemon;
    int port;               /* the bound port */
    int quiesced_fd;        /* listening socket handed back by MHD_quiesce_daemon, -1 none */
    char replica[128];      /* "<hostname>:<port>", sent as X-Peftd-Replica on every response */
    double t_start;
    atomic_int ready;       /* 1 once model, registry and scheduler are up */
    atomic_int draining;    /* 1 once shutdown began: responses close their connection */
    atomic_int active;      /* requests between their first callback and completion */
    atomic_int parked;      /* suspended connections */
    atomic_int connections; /* open client connections (the scheduler's company hook) */
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

/* Graceful stop: no new connections, in-flight requests answered, then everything freed. */
void pd_server_stop(pd_server *s);

/* Finds the embedded default model directory: models/default under the executable's
 * directory's parent, else under the current directory. If neither exists, generates it in
 * the first of those places that can be written. Writes the path into dir. */
pd_status pd_server_default_model(char *dir, size_t cap, char *err, size_t errlen);

/* One JSON log line on stderr, written with a single write(2): {"ts", "level", "msg", extra}.
 * extra is "" or a string of further members starting with ',' (already JSON). */
void pd_log(const char *level, const char *msg, const char *extra);

/* Appends s as a JSON string literal (quotes included) into buf at *pos (bounded by cap). */
void pd_json_escape(char *buf, size_t cap, size_t *pos, const char *s);

/* ISO 8601 UTC time with milliseconds, e.g. 2024-05-01T12:00:00.123Z. */
void pd_time_iso(char *buf, size_t cap);

#endif
