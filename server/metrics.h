/* metrics.h - counters and histograms of the server, rendered as Prometheus text.
 *
 * Requests are counted per route (the route table's templates, so a client cannot grow the
 * label space, plus "other" for requests that matched none) and status; latencies and batch sizes go into fixed-bucket histograms.
 * Predictions are also counted per adapter, rendered as the PD_METRICS_TOP_ADAPTERS most
 * requested plus ".other" (and ".base" for the base model), so the series stay few whatever
 * the number of adapters; a prediction's wait in the queue and its batch's compute time are
 * two histograms.
 * Gauges owned by other modules (queue depth, adapters, memory) are passed in at render time.
 *
 * Ownership: pd_metrics_new returns an object freed with pd_metrics_free; pd_metrics_render
 * returns a malloc'd string. Thread-safety: every function may be called from any thread
 * (one internal mutex; updates are a few additions). */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include "common.h"

typedef struct pd_metrics pd_metrics;

/* Metrics for routes 0..n_routes-1 named by route_names (kept: they must outlive the object).
 * NULL when out of memory. */
pd_metrics *pd_metrics_new(const char *const *route_names, int n_routes);
void pd_metrics_free(pd_metrics *m);

/* One finished request: its route (-1: none matched), HTTP status and wall time. */
void pd_metrics_request(pd_metrics *m, int route, int status, double seconds);

/* One forward batch: inputs, sequences (QA windows count one each), tokens and compute time. */
void pd_metrics_batch(pd_metrics *m, int inputs, int seqs, int tokens, double seconds);

/* How long one input waited between its request's submission and the start of its batch. */
void pd_metrics_queue_wait(pd_metrics *m, double seconds);

/* One finished /predict request naming adapter (NULL: the base model). Adapter names beyond
 * the PD_METRICS_TRACKED_ADAPTERS first count in ".other" only. */
#define PD_METRICS_TOP_ADAPTERS 20
#define PD_METRICS_TRACKED_ADAPTERS 1024
void pd_metrics_adapter_request(pd_metrics *m, const char *adapter);

/* Inputs rejected because the queue was full. */
void pd_metrics_rejected(pd_metrics *m, int inputs);

/* A connection the gate answered with an error and closed (server/gate.c), by its error code:
 * busy (past --max-connections), invalid_input, too_large, not_implemented; others count as
 * other. */
void pd_metrics_refused(pd_metrics *m, const char *code);

/* Values sampled by the caller when rendering. */
typedef struct pd_metrics_gauges {
    int queue_depth;          /* inputs waiting or running */
    int adapters_registered, adapters_resident;
    size_t adapters_resident_bytes;
    uint64_t swaps, loads, evictions;
    int train_running, train_queued; /* training jobs */
    uint64_t train_succeeded, train_failed, train_cancelled; /* jobs ended, by outcome */
    uint64_t train_steps;     /* optimizer steps taken by every job */
    const char *model;        /* the model's name (last component of its directory) */
    int ready;
    double uptime;
    const char *base_dtype;   /* "fp32", "bf16", "int8"; NULL before the model is loaded */
    size_t base_bytes;        /* resident bytes of the base's weights (pd_model_bytes) */
} pd_metrics_gauges;

/* Prometheus text exposition format 0.0.4. Returns a malloc'd string or NULL. */
char *pd_metrics_render(pd_metrics *m, const pd_metrics_gauges *g);

#endif
