/* metrics.c - Prometheus counters and histograms. See metrics.h. */
#include "metrics.h"

#include "version.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

/* ==== Histograms ==== */

#define MAX_BUCKETS 16

typedef struct hist {
    int nb;
    const double *le;                 /* (nb) upper bounds; +Inf is implicit */
    uint64_t count[MAX_BUCKETS + 1];  /* per bucket (not cumulative); last = above every bound */
    double sum;
    uint64_t n;
} hist;

static const double LAT_LE[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double SIZE_LE[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double TOK_LE[] = {16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536};

static void hist_init(hist *h, const double *le, int nb) {
    PD_ASSERT(nb <= MAX_BUCKETS);
    memset(h, 0, sizeof *h);
    h->le = le;
    h->nb = nb;
}

static void hist_add(hist *h, double v) {
    int b = 0;
    while (b < h->nb && v > h->le[b]) b++;
    h->count[b]++;
    h->sum += v;
    h->n++;
}

#define ADAPTER_NAME_CAP 65 /* registry names: 1-64 characters */
#define STATUS_MIN 100
#define STATUS_MAX 599

struct pd_metrics {
    pthread_mutex_t lock;
    const char *const *names;                                       /* (n_routes) */
    int n_routes;                                                   /* + 1: "other", the last row */
    uint64_t (*requests)[STATUS_MAX - STATUS_MIN + 1];              /* (n_routes + 1) guarded by lock */
    hist *latency;                                                  /* (n_routes + 1) guarded by lock */
    hist batch_inputs, batch_tokens, batch_seconds;                 /* guarded by lock */
    hist queue_wait;                                                /* guarded by lock */
    uint64_t inputs, seqs, tokens, rejected;                        /* guarded by lock */
    uint64_t refused[5];                                            /* by refused_reasons; guarded by lock */
    /* /predict requests per adapter: exact counts of the first PD_METRICS_TRACKED_ADAPTERS
     * names (linear search: a handful of cache lines per request), the rest and the base model
     * apart; guarded by lock */
    char (*adapter_names)[ADAPTER_NAME_CAP];
    uint64_t *adapter_counts;
    int n_adapters;
    uint64_t untracked, base;
};

static const char *route_name(const pd_metrics *m, int r) { return r < m->n_routes ? m->names[r] : "other"; }

pd_metrics *pd_metrics_new(const char *const *route_names, int n_routes) {
    pd_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->names = route_names;
    m->n_routes = n_routes;
    m->requests = calloc((size_t)n_routes + 1, sizeof *m->requests);
    m->latency = calloc((size_t)n_routes + 1, sizeof *m->latency);
    m->adapter_names = calloc(PD_METRICS_TRACKED_ADAPTERS, sizeof *m->adapter_names);
    m->adapter_counts = calloc(PD_METRICS_TRACKED_ADAPTERS, sizeof *m->adapter_counts);
    if (!m->requests || !m->latency || !m->adapter_names || !m->adapter_counts || pthread_mutex_init(&m->lock, NULL)) {
        free(m->requests);
        free(m->latency);
        free(m->adapter_names);
        free(m->adapter_counts);
        free(m);
        return NULL;
    }
    int nl = (int)(sizeof LAT_LE / sizeof LAT_LE[0]);
    for (int r = 0; r <= n_routes; r++) hist_init(&m->latency[r], LAT_LE, nl);
    hist_init(&m->batch_inputs, SIZE_LE, (int)(sizeof SIZE_LE / sizeof SIZE_LE[0]));
    hist_init(&m->batch_tokens, TOK_LE, (int)(sizeof TOK_LE / sizeof TOK_LE[0]));
    hist_init(&m->batch_seconds, LAT_LE, nl);
    hist_init(&m->queue_wait, LAT_LE, nl);
    return m;
}

void pd_metrics_free(pd_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->lock);
    free(m->requests);
    free(m->latency);
    free(m->adapter_names);
    free(m->adapter_counts);
    free(m);
}

void pd_metrics_request(pd_metrics *m, int r, int status, double seconds) {
    if (r < 0 || r >= m->n_routes) r = m->n_routes;
    pthread_mutex_lock(&m->lock);
    if (status >= STATUS_MIN && status <= STATUS_MAX) m->requests[r][status - STATUS_MIN]++;
    hist_add(&m->latency[r], seconds);
    pthread_mutex_unlock(&m->lock);
}

void pd_metrics_batch(pd_metrics *m, int inputs, int seqs, int tokens, double seconds) {
    pthread_mutex_lock(&m->lock);
    hist_add(&m->batch_inputs, inputs);
    hist_add(&m->batch_tokens, tokens);
    hist_add(&m->batch_seconds, seconds);
    m->inputs += (uint64_t)inputs;
    m->seqs += (uint64_t)seqs;
    m->tokens += (uint64_t)tokens;
    pthread_mutex_unlock(&m->lock);
}

void pd_metrics_queue_wait(pd_metrics *m, double seconds) {
    pthread_mutex_lock(&m->lock);
    hist_add(&m->queue_wait, seconds);
    pthread_mutex_unlock(&m->lock);
}

void pd_metrics_adapter_request(pd_metrics *m, const char *adapter) {
    pthread_mutex_lock(&m->lock);
    if (!adapter || !*adapter) {
        m->base++;
    } else {
        int i = 0;
        while (i < m->n_adapters && strcmp(m->adapter_names[i], adapter)) i++;
        if (i == m->n_adapters && i < PD_METRICS_TRACKED_ADAPTERS && strlen(adapter) < ADAPTER_NAME_CAP)
            snprintf(m->adapter_names[m->n_adapters++], ADAPTER_NAME_CAP, "%s", adapter);
        if (i < m->n_adapters) m->adapter_counts[i]++;
        else m->untracked++;
    }
    pthread_mutex_unlock(&m->lock);
}

void pd_metrics_rejected(pd_metrics *m, int inputs) {
    pthread_mutex_lock(&m->lock);
    m->rejected += (uint64_t)inputs;
    pthread_mutex_unlock(&m->lock);
}

static const char *const refused_reasons[5] = {"busy", "invalid_input", "too_large", "not_implemented", "other"};

void pd_metrics_refused(pd_metrics *m, const char *code) {
    int k = 0;
    while (k < 4 && strcmp(refused_reasons[k], code ? code : "")) k++;
    pthread_mutex_lock(&m->lock);
    m->refused[k]++;
    pthread_mutex_unlock(&m->lock);
}

/* ==== Rendering ==== */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) PD_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if (b->p && b->len + (size_t)n < b->cap) { b->len += (size_t)n; return; }
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
}

/* Writes a histogram's _bucket/_sum/_count lines; labels is "" or `route="/x",`. */
static void sb_hist(sbuf *b, const char *name, const char *labels, const hist *h) {
    uint64_t cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->count[i];
        sb_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->le[i], (unsigned long long)cum);
    }
    cum += h->count[h->nb];
    sb_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    size_t ll = strlen(labels);
    /* labels end with ',' for the bucket lines; sum/count take them without it */
    if (ll) {
        sb_printf(b, "%s_sum{%.*s} %.6f\n", name, (int)ll - 1, labels, h->sum);
        sb_printf(b, "%s_count{%.*s} %llu\n", name, (int)ll - 1, labels, (unsigned long long)h->n);
    } else {
        sb_printf(b, "%s_sum %.6f\n", name, h->sum);
        sb_printf(b, "%s_count %llu\n", name, (unsigned long long)h->n);
    }
}

/* Writes the per-adapter counters: the PD_METRICS_TOP_ADAPTERS largest (ties: first seen),
 * then ".other" (every other adapter) and ".base" (adapter names cannot start with '.'). */
static void sb_adapters(sbuf *b, const pd_metrics *m) {
    int shown[PD_METRICS_TOP_ADAPTERS], ns = 0;
    uint64_t other = m->untracked;
    for (int i = 0; i < m->n_adapters; i++) { /* insertion into the top list, largest first */
        int pos = ns;
        while (pos > 0 && m->adapter_counts[shown[pos - 1]] < m->adapter_counts[i]) pos--;
        if (pos == PD_METRICS_TOP_ADAPTERS) {
            other += m->adapter_counts[i];
            continue;
        }
        if (ns == PD_METRICS_TOP_ADAPTERS) other += m->adapter_counts[shown[--ns]];
        memmove(shown + pos + 1, shown + pos, sizeof *shown * (size_t)(ns - pos));
        shown[pos] = i;
        ns++;
    }
    for (int k = 0; k < ns; k++)
        sb_printf(b, "peftd_adapter_requests_total{adapter=\"%s\"} %llu\n", m->adapter_names[shown[k]],
                  (unsigned long long)m->adapter_counts[shown[k]]);
    sb_printf(b, "peftd_adapter_requests_total{adapter=\".other\"} %llu\n", (unsigned long long)other);
    sb_printf(b, "peftd_adapter_requests_total{adapter=\".base\"} %llu\n", (unsigned long long)m->base);
}

/* Resident set size from /proc/self/statm (second field, in pages); 0 if unreadable. */
static unsigned long long resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, res = 0;
    int ok = fscanf(f, "%llu %llu", &size, &res) == 2;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return ok && page > 0 ? res * (unsigned long long)page : 0;
}

char *pd_metrics_render(pd_metrics *m, const pd_metrics_gauges *g) {
    sbuf b = {0};
    pthread_mutex_lock(&m->lock);
    sb_printf(&b, "# HELP peftd_build_info peftd version.\n# TYPE peftd_build_info gauge\n");
    sb_printf(&b, "peftd_build_info{version=\"%s\"} 1\n", PD_VERSION);
    sb_printf(&b, "# HELP peftd_model_info The base model served.\n# TYPE peftd_model_info gauge\n");
    {
        /* a label value: backslash and quote escaped; bytes that are not printable ASCII (a
         * directory name need not be UTF-8) become '_' */
        char name[256];
        size_t k = 0;
        for (const unsigned char *u = (const unsigned char *)(g->model ? g->model : ""); *u && k + 3 < sizeof name; u++) {
            if (*u == '\\' || *u == '"') name[k++] = '\\';
            name[k++] = *u >= 0x20 && *u < 0x7f ? (char)*u : '_';
        }
        name[k] = 0;
        sb_printf(&b, "peftd_model_info{model=\"%s\"} 1\n", name);
    }
    sb_printf(&b, "# HELP peftd_ready 1 once the base model is loaded.\n# TYPE peftd_ready gauge\npeftd_ready %d\n", g->ready);
    sb_printf(&b, "# HELP peftd_uptime_seconds Seconds since the process started.\n# TYPE peftd_uptime_seconds gauge\n");
    sb_printf(&b, "peftd_uptime_seconds %.3f\n", g->uptime);

    sb_printf(&b, "# HELP peftd_requests_total HTTP requests by route template and status.\n# TYPE peftd_requests_total counter\n");
    for (int r = 0; r <= m->n_routes; r++)
        for (int s = 0; s <= STATUS_MAX - STATUS_MIN; s++)
            if (m->requests[r][s])
                sb_printf(&b, "peftd_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_name(m, r), s + STATUS_MIN,
                          (unsigned long long)m->requests[r][s]);

    sb_printf(&b, "# HELP peftd_request_duration_seconds Request latency by route template.\n");
    sb_printf(&b, "# TYPE peftd_request_duration_seconds histogram\n");
    for (int r = 0; r <= m->n_routes; r++) {
        if (!m->latency[r].n) continue;
        char lab[96];
        snprintf(lab, sizeof lab, "route=\"%s\",", route_name(m, r));
        sb_hist(&b, "peftd_request_duration_seconds", lab, &m->latency[r]);
    }

    sb_printf(&b, "# HELP peftd_adapter_requests_total /predict requests by adapter: the %d most requested, .other, .base.\n",
              PD_METRICS_TOP_ADAPTERS);
    sb_printf(&b, "# TYPE peftd_adapter_requests_total counter\n");
    sb_adapters(&b, m);
    sb_printf(&b, "# HELP peftd_queue_wait_seconds Time an input waited in the queue before its batch started.\n");
    sb_printf(&b, "# TYPE peftd_queue_wait_seconds histogram\n");
    sb_hist(&b, "peftd_queue_wait_seconds", "", &m->queue_wait);
    sb_printf(&b, "# HELP peftd_batch_size Inputs per forward batch.\n# TYPE peftd_batch_size histogram\n");
    sb_hist(&b, "peftd_batch_size", "", &m->batch_inputs);
    sb_printf(&b, "# HELP peftd_batch_tokens Tokens per forward batch.\n# TYPE peftd_batch_tokens histogram\n");
    sb_hist(&b, "peftd_batch_tokens", "", &m->batch_tokens);
    sb_printf(&b, "# HELP peftd_batch_duration_seconds Compute time per forward batch.\n");
    sb_printf(&b, "# TYPE peftd_batch_duration_seconds histogram\n");
    sb_hist(&b, "peftd_batch_duration_seconds", "", &m->batch_seconds);

    sb_printf(&b, "# HELP peftd_inputs_total Inputs predicted.\n# TYPE peftd_inputs_total counter\npeftd_inputs_total %llu\n",
              (unsigned long long)m->inputs);
    sb_printf(&b, "# HELP peftd_sequences_total Sequences run through the encoder (QA windows count one each).\n");
    sb_printf(&b, "# TYPE peftd_sequences_total counter\npeftd_sequences_total %llu\n", (unsigned long long)m->seqs);
    sb_printf(&b, "# HELP peftd_tokens_total Tokens run through the encoder (rate() gives tokens/s).\n");
    sb_printf(&b, "# TYPE peftd_tokens_total counter\npeftd_tokens_total %llu\n", (unsigned long long)m->tokens);
    sb_printf(&b, "# HELP peftd_rejected_inputs_total Inputs refused with 503 because the queue was full.\n");
    sb_printf(&b, "# TYPE peftd_rejected_inputs_total counter\npeftd_rejected_inputs_total %llu\n", (unsigned long long)m->rejected);
    sb_printf(&b, "# HELP peftd_http_refused_total Connections answered with an error and closed before libmicrohttpd read them (server/gate.c), by error code.\n");
    sb_printf(&b, "# TYPE peftd_http_refused_total counter\n");
    for (int k = 0; k < 5; k++)
        sb_printf(&b, "peftd_http_refused_total{reason=\"%s\"} %llu\n", refused_reasons[k], (unsigned long long)m->refused[k]);
    pthread_mutex_unlock(&m->lock);

    sb_printf(&b, "# HELP peftd_queue_depth Inputs waiting for or in a forward batch.\n# TYPE peftd_queue_depth gauge\n");
    sb_printf(&b, "peftd_queue_depth %d\n", g->queue_depth);
    sb_printf(&b, "# HELP peftd_adapters_registered Adapters in the registry.\n# TYPE peftd_adapters_registered gauge\n");
    sb_printf(&b, "peftd_adapters_registered %d\n", g->adapters_registered);
    sb_printf(&b, "# HELP peftd_adapters_resident Adapters loaded in memory.\n# TYPE peftd_adapters_resident gauge\n");
    sb_printf(&b, "peftd_adapters_resident %d\n", g->adapters_resident);
    sb_printf(&b, "# HELP peftd_adapters_resident_bytes Memory held by loaded adapters.\n");
    sb_printf(&b, "# TYPE peftd_adapters_resident_bytes gauge\npeftd_adapters_resident_bytes %zu\n", g->adapters_resident_bytes);
    sb_printf(&b, "# HELP peftd_adapter_swaps_total Adapter versions published over an existing one.\n");
    sb_printf(&b, "# TYPE peftd_adapter_swaps_total counter\npeftd_adapter_swaps_total %llu\n", (unsigned long long)g->swaps);
    sb_printf(&b, "# HELP peftd_adapter_loads_total Adapter versions loaded from disk.\n");
    sb_printf(&b, "# TYPE peftd_adapter_loads_total counter\npeftd_adapter_loads_total %llu\n", (unsigned long long)g->loads);
    sb_printf(&b, "# HELP peftd_adapter_evictions_total Adapter versions dropped from memory for the resident budget.\n");
    sb_printf(&b, "# TYPE peftd_adapter_evictions_total counter\npeftd_adapter_evictions_total %llu\n",
              (unsigned long long)g->evictions);
    sb_printf(&b, "# HELP peftd_training_jobs Training jobs by state.\n# TYPE peftd_training_jobs gauge\n");
    sb_printf(&b, "peftd_training_jobs{state=\"queued\"} %d\npeftd_training_jobs{state=\"running\"} %d\n", g->train_queued,
              g->train_running);
    sb_printf(&b, "# HELP peftd_training_jobs_finished_total Training jobs that ended, by outcome.\n");
    sb_printf(&b, "# TYPE peftd_training_jobs_finished_total counter\n");
    sb_printf(&b, "peftd_training_jobs_finished_total{status=\"succeeded\"} %llu\n", (unsigned long long)g->train_succeeded);
    sb_printf(&b, "peftd_training_jobs_finished_total{status=\"failed\"} %llu\n", (unsigned long long)g->train_failed);
    sb_printf(&b, "peftd_training_jobs_finished_total{status=\"cancelled\"} %llu\n", (unsigned long long)g->train_cancelled);
    sb_printf(&b, "# HELP peftd_training_steps_total Optimizer steps taken by training jobs.\n");
    sb_printf(&b, "# TYPE peftd_training_steps_total counter\npeftd_training_steps_total %llu\n",
              (unsigned long long)g->train_steps);
    if (g->base_dtype) {
        sb_printf(&b, "# HELP peftd_base_weight_bytes Resident bytes of the base model's weights, by dtype (--dtype).\n");
        sb_printf(&b, "# TYPE peftd_base_weight_bytes gauge\npeftd_base_weight_bytes{dtype=\"%s\"} %zu\n", g->base_dtype,
                  g->base_bytes);
    }
    sb_printf(&b, "# HELP peftd_resident_memory_bytes Resident set size of the process (/proc/self/statm).\n");
    sb_printf(&b, "# TYPE peftd_resident_memory_bytes gauge\npeftd_resident_memory_bytes %llu\n", resident_bytes());
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}
