/* server.c - process lifetime: start in order, stop gracefully. See server.h. */
#include "server.h"

#include "fs.h"
#include "genmodel.h"
#include "log.h"
#include "routes.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ==== Default model ==== */

pd_status pd_server_default_model(char *dir, size_t cap, char *err, size_t errlen) {
    char cand[2][4096];
    int nc = 0;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;             /* the executable's directory */
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;                    /* its parent */
            if (!pd_path_join(cand[nc], sizeof cand[nc], *exe ? exe : "/", "models/default")) nc++;
        }
    }
    snprintf(cand[nc++], sizeof cand[0], "models/default");
    for (int i = 0; i < nc; i++)
        if (pd_fs_exists(cand[i], "config.json")) {
            if ((size_t)snprintf(dir, cap, "%s", cand[i]) >= cap) return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
            return PD_OK;
        }
    char e[512] = "";
    for (int i = 0; i < nc; i++) {
        if (pd_genmodel_write(cand[i], e, sizeof e) == PD_OK) {
            char extra[4200];
            size_t pos = 0;
            extra[pos++] = ',';
            memcpy(extra + pos, "\"dir\":", 6);
            pos += 6;
            pd_json_escape(extra, sizeof extra, &pos, cand[i]);
            pd_log("info", "generated the embedded default model", pos < sizeof extra ? extra : "");
            if ((size_t)snprintf(dir, cap, "%s", cand[i]) >= cap) return pd_err(err, errlen, PD_ERR_INVALID, "path too long");
            return PD_OK;
        }
    }
    return pd_err(err, errlen, PD_ERR_IO, "no default model found and none could be generated: %s", e);
}

/* ==== Start and stop ==== */

pd_status pd_api_key_check(const char *key, size_t len, char *err, size_t errlen) {
    /* words of the examples people copy; a real key (openssl rand -hex 32) holds none */
    static const char *const PLACEHOLDERS[] = {"changeme", "change-me", "change_me", "placeholder", "replaceme", "replace-me",
                                               "replace_me", "your-key", "your_key", "yourkey", "your-api-key", "example",
                                               "dummy", "password", "insecure", NULL};
    if (len < PD_API_KEY_MIN)
        return pd_err(err, errlen, PD_ERR_INVALID, "the key has %zu characters; use at least %d (e.g. openssl rand -hex 32)", len,
                      PD_API_KEY_MIN);
    for (int i = 0; PLACEHOLDERS[i]; i++) {
        size_t w = strlen(PLACEHOLDERS[i]);
        for (size_t k = 0; k + w <= len; k++)
            if (!strncasecmp(key + k, PLACEHOLDERS[i], w))
                return pd_err(err, errlen, PD_ERR_INVALID, "the key looks like a placeholder (\"%s\"); make one with openssl rand -hex 32",
                              PLACEHOLDERS[i]);
    }
    size_t same = 1;
    while (same < len && key[same] == key[0]) same++;
    if (same == len) return pd_err(err, errlen, PD_ERR_INVALID, "the key is one character repeated; make one with openssl rand -hex 32");
    return PD_OK;
}

static pd_status read_key(pd_server *s, char *err, size_t errlen) {
    char *text = NULL;
    size_t len = 0;
    pd_status st = pd_read_file(s->opt.api_key_file, 1 << 16, &text, &len, err, errlen);
    if (st) return st;
    size_t n = 0;
    while (n < len && text[n] != '\n' && text[n] != '\r') n++;
    size_t a = 0;
    while (a < n && (text[a] == ' ' || text[a] == '\t')) a++;
    while (n > a && (text[n - 1] == ' ' || text[n - 1] == '\t')) n--;
    if (n == a) {
        free(text);
        return pd_err(err, errlen, PD_ERR_INVALID, "--api-key-file %s: the first line is empty", s->opt.api_key_file);
    }
    memmove(text, text + a, n - a);
    text[n - a] = 0;
    if ((st = pd_api_key_check(text, n - a, err, errlen))) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        free(text);
        return pd_err(err, errlen, st, "--api-key-file %s: %s", s->opt.api_key_file, why);
    }
    s->api_key = text;
    s->api_key_len = n - a;
    return PD_OK;
}

/* Reads the data dir's listing (opendir revalidates a network file system's view) and records
 * when that last worked, for GET /ready. */
static void store_check(pd_server *s) {
    DIR *d = opendir(s->opt.data_dir);
    int e = d ? 0 : errno ? errno : EIO;
    if (d) closedir(d);
    if (!e && access(s->opt.data_dir, W_OK) != 0) e = errno ? errno : EACCES;
    atomic_store(&s->store_errno, e);
    if (!e) atomic_store(&s->store_ok_ms, (long long)(pd_now() * 1000.0));
}

int pd_server_ready(pd_server *s, char *why, size_t cap) {
    if (atomic_load(&s->draining)) {
        snprintf(why, cap, "the server is shutting down");
        return 0;
    }
    if (!atomic_load(&s->ready)) {
        snprintf(why, cap, "the base model is still loading");
        return 0;
    }
    double age = pd_now() - (double)atomic_load(&s->store_ok_ms) / 1000.0;
    int e = atomic_load(&s->store_errno);
    if (age > PD_STORE_STALE_S) {
        snprintf(why, cap, "the adapter store (--data-dir) was last read %.0f s ago%s%s", age, e ? ": " : "", e ? strerror(e) : "");
        return 0;
    }
    return 1;
}

/* Picks up adapters that replicas sharing the data dir published or deleted. */
static void *sync_main(void *arg) {
    pd_server *s = arg;
    pthread_mutex_lock(&s->sync_lock);
    while (!s->sync_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 500000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&s->sync_cv, &s->sync_lock, &ts);
        if (s->sync_stop) break;
        pthread_mutex_unlock(&s->sync_lock);
        pd_registry_sync(s->reg);
        store_check(s);
        pthread_mutex_lock(&s->sync_lock);
    }
    pthread_mutex_unlock(&s->sync_lock);
    return NULL;
}

/* The scheduler's company hook: every open connection may send a prediction (one at a time);
 * the scheduler stops waiting for company once each has one queued. */
static int open_connections(void *arg) {
    pd_server *s = arg;
    return atomic_load(&s->connections);
}

/* http.c's hooks: a finished request counts in the metrics; connections are counted, and a
 * closing one may end the scheduler's wait for company. */
static void request_completed(pd_server *s, const pd_req *r, double seconds) {
    pd_metrics_request(s->metrics, r->route, r->status, seconds);
    if (r->route == PD_ROUTE_PREDICT && r->status == 200) pd_metrics_adapter_request(s->metrics, r->log_adapter);
}

static void request_refused(pd_server *s, int status, const char *code) {
    (void)status;
    pd_metrics_refused(s->metrics, code);
}

static void connection_changed(pd_server *s, int delta) {
    atomic_fetch_add(&s->connections, delta);
    if (delta < 0 && atomic_load(&s->ready)) pd_sched_kick(s->sched);
}

/* The trainer's yield question (pd_trainer_set_yield): predictions are waiting or in a batch. */
static int inference_busy(void *arg) { return pd_sched_depth(arg) > 0; }

pd_status pd_server_start(const pd_serve_opts *o, pd_server **out, char *err, size_t errlen) {
    *out = NULL;
    pd_server *s = calloc(1, sizeof *s);
    if (!s) return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    s->opt = *o;
    s->t_start = pd_now();
    s->max_body = (size_t)o->max_body_mb << 20;
    atomic_init(&s->ready, 0);
    atomic_init(&s->draining, 0);
    atomic_init(&s->connections, 0);
    atomic_init(&s->store_ok_ms, 0);
    atomic_init(&s->store_errno, 0);
    pthread_mutex_init(&s->sync_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->sync_cv, &ca);
    pthread_condattr_destroy(&ca);

    pd_status st = PD_OK;
    static const char *route_names[PD_ROUTE_COUNT]; /* the metrics keep them: the table's templates */
    for (int i = 0; i < PD_ROUTE_COUNT; i++) route_names[i] = pd_route_name(i);
    s->metrics = pd_metrics_new(route_names, PD_ROUTE_COUNT);
    if (!s->metrics) { st = pd_err(err, errlen, PD_ERR_NOMEM, "out of memory"); goto fail; }
    if (*o->api_key_file && (st = read_key(s, err, errlen))) goto fail;
    {
        /* Names the replica in X-Peftd-Replica (set before the daemon starts: read by its threads). */
        char host[64] = "";
        if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "peftd");
        host[sizeof host - 1] = 0;
        if (o->port) snprintf(s->replica, sizeof s->replica, "%s:%d", host, o->port);
        else snprintf(s->replica, sizeof s->replica, "%s/%ld", host, (long)getpid());
    }
    s->http_config = (pd_http_config){o->host, o->port, o->http_threads, o->max_connections, s->max_body, o->max_body_mb,
                                      s->api_key, s->api_key_len, o->auth_all, s->replica, pd_routes, PD_ROUTE_COUNT, s,
                                      &s->ready, &s->draining, request_completed, connection_changed, request_refused};
    if ((st = pd_http_start(&s->http_config, &s->http, &s->port, err, errlen))) goto fail;
    {
        char extra[512];
        size_t pos = 0;
        memcpy(extra, ",\"host\":", 8);
        pos = 8;
        pd_json_escape(extra, sizeof extra, &pos, o->host);
        if (pos < sizeof extra) snprintf(extra + pos, sizeof extra - pos, ",\"port\":%d", s->port);
        pd_log("info", "listening", extra);
    }

    if (*o->model) {
        if ((size_t)snprintf(s->model_dir, sizeof s->model_dir, "%s", o->model) >= sizeof s->model_dir) {
            st = pd_err(err, errlen, PD_ERR_INVALID, "--model: path too long");
            goto fail;
        }
    } else if ((st = pd_server_default_model(s->model_dir, sizeof s->model_dir, err, errlen))) {
        goto fail;
    }
    pd_blas_init();
    int dtype;
    if ((st = pd_opts_dtype(o->dtype, &dtype, err, errlen))) goto fail;
    if ((st = pd_model_load_as(s->model_dir, 0, (pd_wtype)dtype, &s->model, err, errlen))) goto fail;
    if ((st = pd_fs_mkdir_p(o->data_dir, err, errlen))) goto fail;
    if ((st = pd_registry_open(s->model, o->data_dir, (size_t)o->max_resident_mb << 20, &s->reg, err, errlen))) goto fail;
    pd_sched_limits lim = {o->max_batch_tokens, o->max_queue, o->batch_wait_ms};
    if ((st = pd_sched_new(s->model, o->threads, &lim, s->metrics, &s->sched, err, errlen))) goto fail;
    pd_sched_set_company(s->sched, open_connections, s);
    s->worker = pd_worker_new();
    s->loader = pd_worker_new();
    if (!s->worker || !s->loader) { st = pd_err(err, errlen, PD_ERR_NOMEM, "cannot start the worker threads"); goto fail; }
    /* training shares the scheduler's pool and steps aside while predictions are queued or running */
    s->trainer = pd_trainer_new(s->model, s->reg, pd_sched_pool(s->sched), o->data_dir, o->train_threads);
    if (!s->trainer) { st = pd_err(err, errlen, PD_ERR_IO, "cannot start the trainer (--data-dir %s/.jobs)", o->data_dir); goto fail; }
    pd_trainer_set_yield(s->trainer, inference_busy, s->sched);
    pd_trainer_set_retention(s->trainer, o->keep_jobs, o->keep_jobs_hours * 3600.0);
    if (pthread_create(&s->sync_thread, NULL, sync_main, s)) {
        st = pd_err(err, errlen, PD_ERR_IO, "cannot start the sync thread");
        goto fail;
    }
    s->sync_started = 1;
    store_check(s); /* the registry just read it */
    atomic_store(&s->ready, 1);
    {
        const pd_config *c = pd_model_config(s->model);
        char extra[4600];
        size_t pos = 0;
        memcpy(extra, ",\"model\":", 9);
        pos = 9;
        pd_json_escape(extra, sizeof extra, &pos, s->model_dir);
        if (pos < sizeof extra)
            snprintf(extra + pos, sizeof extra - pos,
                     ",\"architecture\":\"%s\",\"hidden\":%d,\"layers\":%d,\"dtype\":\"%s\",\"kernel\":\"%s\","
                     "\"weight_bytes\":%zu,\"load_s\":%.3f,\"threads\":%d,\"port\":%d",
                     pd_arch_name(c->arch), c->hidden, c->layers, pd_wtype_name((pd_wtype)dtype), pd_wmat_kernel((pd_wtype)dtype),
                     pd_model_bytes(s->model), pd_model_load_seconds(s->model), pd_sched_threads(s->sched), s->port);
        pd_log("info", "ready", extra);
        if (strstr(pd_wmat_kernel((pd_wtype)dtype), "emulated"))
            pd_log("warning", "no dot-product instruction for --dtype on this CPU (or under PD_ISA): its weights are widened to "
                              "fp32 at each product (it saves memory, not time)", "");
    }
    *out = s;
    return PD_OK;
fail:
    pd_server_stop(s);
    return st;
}

void pd_server_stop(pd_server *s) {
    if (!s) return;
    atomic_store(&s->draining, 1);
    pd_http_stop(s->http); /* waits for requests in flight: the scheduler and workers still run */
    s->http = NULL;
    if (s->sync_started) {
        pthread_mutex_lock(&s->sync_lock);
        s->sync_stop = 1;
        pthread_cond_broadcast(&s->sync_cv);
        pthread_mutex_unlock(&s->sync_lock);
        pthread_join(s->sync_thread, NULL);
    }
    pd_worker_free(s->worker);
    pd_worker_free(s->loader);
    /* running jobs stop between steps and checkpoint (resumed at the next start); before the
     * scheduler: the trainer computes on its pool */
    pd_trainer_free(s->trainer);
    pd_sched_free(s->sched);
    if (s->reg) pd_registry_free(s->reg);
    pd_model_free(s->model);
    pd_metrics_free(s->metrics);
    pthread_cond_destroy(&s->sync_cv);
    pthread_mutex_destroy(&s->sync_lock);
    free(s->api_key);
    free(s);
}
