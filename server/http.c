/* http.c - libmicrohttpd glue: routing, request bodies, auth, replies, parking, request log.
 * See http.h for the order of checks and the threading model. */
#include "http.h"

#include "console.h"
#include "jobs.h"
#include "jsonio.h"
#include "routes.h"

#include <microhttpd.h>

#include <netdb.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ==== Routing table ==== */

typedef struct method_entry {
    const char *method;
    pd_req_fn fn;
    int write;            /* needs the API key even without --auth-all */
    pd_body_kind body;
} method_entry;

typedef struct route_def {
    const char *allow;    /* the Allow header of a 405 */
    method_entry m[3];
} route_def;

/* Indexed by pd_route. HEAD is served by the GET handler (MHD sends no body for HEAD). */
static const route_def ROUTES[PD_ROUTE_COUNT] = {
    [PD_ROUTE_HEALTH] = {"GET, HEAD", {{"GET", pd_route_health, 0, PD_BODY_NONE}}},
    [PD_ROUTE_INFO] = {"GET, HEAD", {{"GET", pd_route_info, 0, PD_BODY_NONE}}},
    [PD_ROUTE_METRICS] = {"GET, HEAD", {{"GET", pd_route_metrics, 0, PD_BODY_NONE}}},
    [PD_ROUTE_PREDICT] = {"POST", {{"POST", pd_route_predict, 0, PD_BODY_JSON}}},
    [PD_ROUTE_ADAPTERS] = {"GET, HEAD, POST",
                           {{"GET", pd_route_adapters_list, 0, PD_BODY_NONE},
                            {"POST", pd_route_adapter_upload, 1, PD_BODY_MULTIPART}}},
    [PD_ROUTE_ADAPTER] = {"GET, HEAD, PUT, DELETE",
                          {{"GET", pd_route_adapter_get, 0, PD_BODY_NONE},
                           {"PUT", pd_route_adapter_upload, 1, PD_BODY_MULTIPART},
                           {"DELETE", pd_route_adapter_delete, 1, PD_BODY_NONE}}},
    [PD_ROUTE_ADAPTER_FILE] = {"GET, HEAD", {{"GET", pd_route_adapter_file, 0, PD_BODY_NONE}}},
    [PD_ROUTE_TRAIN] = {"POST", {{"POST", pd_route_train, 1, PD_BODY_EITHER}}},
    [PD_ROUTE_JOBS] = {"GET, HEAD", {{"GET", pd_route_jobs_list, 0, PD_BODY_NONE}}},
    [PD_ROUTE_JOB] = {"GET, HEAD, DELETE",
                      {{"GET", pd_route_job_get, 0, PD_BODY_NONE}, {"DELETE", pd_route_job_delete, 1, PD_BODY_NONE}}},
    [PD_ROUTE_OTHER] = {"", {{NULL, NULL, 0, PD_BODY_NONE}}},
};

/* Copies the path segment [p, end) into dst; returns 0, or -1 if empty or it does not fit. */
static int copy_segment(char *dst, size_t cap, const char *p, size_t n) {
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, p, n);
    dst[n] = 0;
    return 0;
}

/* Maps a (percent-decoded) path to a route, capturing {name} and {file}. */
static pd_route match_route(const char *url, pd_req *r) {
    if (!strcmp(url, "/health")) return PD_ROUTE_HEALTH;
    if (!strcmp(url, "/info")) return PD_ROUTE_INFO;
    if (!strcmp(url, "/metrics")) return PD_ROUTE_METRICS;
    if (!strcmp(url, "/predict")) return PD_ROUTE_PREDICT;
    if (!strcmp(url, "/train")) return PD_ROUTE_TRAIN;
    if (!strcmp(url, "/jobs")) return PD_ROUTE_JOBS;
    if (!strncmp(url, "/jobs/", 6))
        return strchr(url + 6, '/') || copy_segment(r->name, sizeof r->name, url + 6, strlen(url + 6)) ? PD_ROUTE_OTHER : PD_ROUTE_JOB;
    if (strncmp(url, "/adapters", 9)) return PD_ROUTE_OTHER;
    const char *p = url + 9;
    if (!*p) return PD_ROUTE_ADAPTERS;
    if (*p++ != '/') return PD_ROUTE_OTHER;
    const char *slash = strchr(p, '/');
    if (!slash) return copy_segment(r->name, sizeof r->name, p, strlen(p)) ? PD_ROUTE_OTHER : PD_ROUTE_ADAPTER;
    if (copy_segment(r->name, sizeof r->name, p, (size_t)(slash - p))) return PD_ROUTE_OTHER;
    if (strncmp(slash, "/files/", 7)) return PD_ROUTE_OTHER;
    const char *f = slash + 7;
    if (strchr(f, '/') || copy_segment(r->file, sizeof r->file, f, strlen(f))) return PD_ROUTE_OTHER;
    return PD_ROUTE_ADAPTER_FILE;
}

static const method_entry *find_method(pd_route route, const char *method) {
    if (!strcmp(method, "HEAD")) method = "GET";
    for (int i = 0; i < 3; i++) {
        const method_entry *m = &ROUTES[route].m[i];
        if (m->method && !strcmp(m->method, method)) return m;
    }
    return NULL;
}

/* ==== Replies ==== */

int pd_http_status(pd_status st) {
    switch (st) {
    case PD_OK: return 200;
    case PD_ERR_INVALID: return 400;
    case PD_ERR_FORMAT: return 400;
    case PD_ERR_NOT_FOUND: return 404;
    case PD_ERR_TOO_LARGE: return 413;
    case PD_ERR_UNSUPPORTED: return 422;
    case PD_ERR_MISMATCH: return 422;
    case PD_ERR_BUSY: return 503;
    case PD_ERR_CANCELLED: return 503;
    case PD_ERR_NOMEM: return 500;
    case PD_ERR_IO: return 500;
    }
    return 500;
}

void pd_req_header(pd_req *r, const char *name, const char *value) {
    if (r->n_extra < 4) {
        r->extra_hdr[r->n_extra][0] = name;
        r->extra_hdr[r->n_extra][1] = value;
        r->n_extra++;
    }
}

static int has_header(const pd_req *r, const char *name) {
    for (int i = 0; i < r->n_extra; i++) if (!strcasecmp(r->extra_hdr[i][0], name)) return 1;
    return 0;
}

static void queue(pd_req *r, int status, struct MHD_Response *resp, const char *content_type) {
    if (!resp) {
        r->replied = 1;
        r->status = 500;
        r->fatal = 1; /* the handler then closes the connection */
        return;
    }
    if (content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    for (int i = 0; i < r->n_extra; i++) MHD_add_response_header(resp, r->extra_hdr[i][0], r->extra_hdr[i][1]);
    if (r->srv->replica[0]) MHD_add_response_header(resp, "X-Peftd-Replica", r->srv->replica);
    if (atomic_load(&r->srv->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (MHD_queue_response(r->conn, (unsigned)status, resp) != MHD_YES) {
        status = 500;
        r->fatal = 1;
    }
    MHD_destroy_response(resp);
    r->replied = 1;
    r->status = status;
}

void pd_req_reply(pd_req *r, int status, const char *content_type, char *body, size_t len) {
    PD_ASSERT(!r->replied);
    struct MHD_Response *resp;
    if (!body || len == 0) {
        free(body);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (!resp) free(body);
    }
    queue(r, status, resp, len ? content_type : NULL);
}

void pd_req_json(pd_req *r, int status, const cJSON *v) {
    char *txt = v ? pd_json_print(v) : NULL;
    if (!txt) {
        pd_req_error(r, 500, "out_of_memory", "out of memory building the response");
        return;
    }
    pd_req_reply(r, status, "application/json", txt, strlen(txt));
}

/* Replaces every byte that is not part of valid UTF-8 with '?', in place: messages quote client
 * input (field names, adapter names) and the JSON we send must stay valid UTF-8. A sequence
 * cut by truncation at the end is dropped the same way. */
static void utf8_scrub(char *s) {
    unsigned char *u = (unsigned char *)s;
    while (*u) {
        int n = *u < 0x80 ? 0 : (*u & 0xE0) == 0xC0 && *u >= 0xC2 ? 1 : (*u & 0xF0) == 0xE0 ? 2 : (*u & 0xF8) == 0xF0 && *u <= 0xF4 ? 3 : -1;
        int ok = n >= 0;
        for (int k = 1; ok && k <= n; k++) ok = (u[k] & 0xC0) == 0x80;
        if (ok && n == 2) {
            unsigned cp = ((u[0] & 0x0Fu) << 12) | ((u[1] & 0x3Fu) << 6) | (u[2] & 0x3Fu);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        } else if (ok && n == 3) {
            unsigned cp = ((u[0] & 0x07u) << 18) | ((u[1] & 0x3Fu) << 12) | ((u[2] & 0x3Fu) << 6) | (u[3] & 0x3Fu);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (!ok) {
            *u++ = '?';
            continue;
        }
        u += n + 1;
    }
}

void pd_req_error(pd_req *r, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_scrub(msg);
    cJSON *e = pd_json_error(code, msg);
    char *txt = e ? pd_json_print(e) : NULL;
    cJSON_Delete(e);
    if (!txt) txt = strdup("{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}");
    if (status == 503 && !has_header(r, MHD_HTTP_HEADER_RETRY_AFTER)) pd_req_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401 && !has_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE))
        pd_req_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"peftd\"");
    pd_req_reply(r, status, "application/json", txt, txt ? strlen(txt) : 0);
}

void pd_req_fail(pd_req *r, pd_status st, const char *message) {
    pd_req_error(r, pd_http_status(st), pd_status_name(st), "%s", message);
}

void pd_req_file(pd_req *r, int fd, size_t size, const char *content_type, const char *filename) {
    PD_ASSERT(!r->replied);
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)size, fd);
    if (!resp) {
        close(fd);
        pd_req_error(r, 500, "out_of_memory", "cannot create the response");
        return;
    }
    char disp[256];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", filename);
    MHD_add_response_header(resp, "Content-Disposition", disp);
    queue(r, 200, resp, content_type);
}

const char *pd_req_get_header(pd_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* ==== Parking ==== */

void pd_req_park(pd_req *r, pd_req_fn resume) {
    r->resume = resume;
    r->parked = 1;
    atomic_fetch_add(&r->srv->parked, 1);
    MHD_suspend_connection(r->conn);
}

void pd_req_unpark(pd_req *r) {
    MHD_resume_connection(r->conn);
}

/* ==== Auth ==== */

/* Compares in time that depends only on the lengths, never on where the bytes differ. */
static int key_equal(const char *a, size_t alen, const char *b, size_t blen) {
    unsigned char d = alen != blen;
    size_t n = alen > blen ? alen : blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < alen ? (unsigned char)a[i] : 0, y = i < blen ? (unsigned char)b[i] : 0;
        d |= x ^ y;
    }
    return d == 0;
}

static int authorized(pd_req *r) {
    const pd_server *s = r->srv;
    const char *h = pd_req_get_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return 0;
    while (*h == ' ') h++;
    if (strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\t')) return 0;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    return key_equal(h, n, s->api_key, s->api_key_len);
}

/* ==== Bodies ==== */

static const char *const PART_NAMES[PD_PART_COUNT] = {"name", "config", "weights", "labels", "head_config", "head_weights",
                                                      "spec", "train", "eval"};

static int part_append(pd_part *p, const char *data, size_t n) {
    if (!n) return 0;
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n + 1) cap *= 2;
        char *q = realloc(p->data, cap);
        if (!q) return -1;
        p->data = q;
        p->cap = cap;
    }
    memcpy(p->data + p->len, data, n);
    p->len += n;
    p->data[p->len] = 0;
    return 0;
}

/* MHD's multipart iterator: collects the known fields; the first unknown or repeated field is
 * remembered and answered with 400 once the body is complete. */
static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
    pd_req *r = cls;
    if (r->part_error[0] || !key) return MHD_YES;
    int id = -1, train = r->route == PD_ROUTE_TRAIN;
    for (int i = train ? PD_PART_SPEC : 0; i < (train ? PD_PART_COUNT : PD_PART_SPEC); i++) if (!strcmp(key, PART_NAMES[i])) id = i;
    if (id < 0) {
        snprintf(r->part_error, sizeof r->part_error, "unknown form field \"%.40s\" (expected %s)", key,
                 train ? "spec, train, eval" : "name, config, weights, labels, head_config, head_weights");
        return MHD_YES;
    }
    pd_part *p = &r->parts[id];
    int starts = id != r->last_part || (off == 0 && p->len > 0);
    if (starts) {
        if (p->seen) {
            snprintf(r->part_error, sizeof r->part_error, "form field \"%s\" is given twice", key);
            return MHD_YES;
        }
        p->seen = 1;
        r->last_part = id;
    }
    if (part_append(p, data, size)) {
        snprintf(r->part_error, sizeof r->part_error, "out of memory");
        return MHD_YES;
    }
    return MHD_YES;
}

static void free_body(pd_req *r) {
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    for (int i = 0; i < PD_PART_COUNT; i++) {
        free(r->parts[i].data);
        r->parts[i].data = NULL;
        r->parts[i].len = r->parts[i].cap = 0;
    }
}

/* Takes n more body bytes. Returns MHD_NO to drop a client that keeps sending far past the
 * limit. */
static enum MHD_Result consume(pd_req *r, const char *data, size_t n) {
    size_t max = r->srv->max_body;
    r->received += n;
    if (r->received > max) {
        if (!r->too_large) {
            r->too_large = 1;
            free_body(r);
        }
        return r->received > 2 * max + (1u << 20) ? MHD_NO : MHD_YES;
    }
    if (r->body_kind == PD_BODY_JSON) {
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 4096;
            while (cap < r->body_len + n + 1) cap *= 2;
            char *q = realloc(r->body, cap);
            if (!q) {
                r->too_large = 1; /* answered as 413: the server cannot hold it */
                free_body(r);
                return MHD_YES;
            }
            r->body = q;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, data, n);
        r->body_len += n;
        r->body[r->body_len] = 0;
    } else if (r->body_kind == PD_BODY_MULTIPART && r->pp && !r->part_error[0]) {
        if (MHD_post_process(r->pp, data, n) != MHD_YES && !r->part_error[0])
            snprintf(r->part_error, sizeof r->part_error, "malformed multipart/form-data body");
    }
    return MHD_YES;
}

/* Content-Type without parameters matches want (case-insensitive)? */
static int media_type_is(const char *ct, const char *want) {
    size_t n = strlen(want);
    while (*ct == ' ') ct++;
    return !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* ==== The web console ==== */

/* Serves an embedded console file (console.h) from memory: GET and HEAD only, before the
 * readiness and key checks (the page holds no data and asks for the key itself), 304 when
 * If-None-Match names its ETag. */
static void console_reply(pd_req *r, const pd_console_file *f, const char *method) {
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        pd_req_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        pd_req_error(r, 405, "method_not_allowed", "%s is not allowed on %.200s (allowed: GET, HEAD)", method, r->path);
        return;
    }
    int fresh = pd_console_etag_matches(f, pd_req_get_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH));
    struct MHD_Response *resp = MHD_create_response_from_buffer(fresh ? 0 : f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    for (int i = 0; resp && pd_console_headers[i][0]; i++)
        MHD_add_response_header(resp, pd_console_headers[i][0], pd_console_headers[i][1]);
    if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, f->etag);
    queue(r, fresh ? 304 : 200, resp, fresh ? NULL : f->content_type);
}

/* ==== Request lifecycle ==== */

/* First callback of a request: headers only. Replies at once when the request cannot succeed,
 * so an unwanted body is never read. */
static void begin(pd_req *r, const char *url, const char *method) {
    pd_server *s = r->srv;
    r->route = match_route(url, r);
    const pd_console_file *cf = r->route == PD_ROUTE_OTHER ? pd_console_lookup(url) : NULL;
    if (cf) {
        console_reply(r, cf, method);
        return;
    }
    if (r->route == PD_ROUTE_OTHER) {
        pd_req_error(r, 404, "not_found", "no route %s %.200s", method, url);
        return;
    }
    const method_entry *m = find_method(r->route, method);
    if (!m) {
        pd_req_header(r, MHD_HTTP_HEADER_ALLOW, ROUTES[r->route].allow);
        pd_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", method,
                     pd_route_name(r->route), ROUTES[r->route].allow);
        return;
    }
    if (!atomic_load(&s->ready) && r->route != PD_ROUTE_HEALTH && r->route != PD_ROUTE_METRICS) {
        pd_req_error(r, 503, "not_ready", "the base model is still loading");
        return;
    }
    if (s->api_key && (m->write || (s->opt.auth_all && r->route != PD_ROUTE_HEALTH)) && !authorized(r)) {
        pd_req_error(r, 401, "unauthorized", "%s", pd_req_get_header(r, MHD_HTTP_HEADER_AUTHORIZATION)
                                                        ? "wrong API key"
                                                        : "this route needs \"Authorization: Bearer <key>\"");
        return;
    }
    r->body_kind = m->body;
    const char *ct = pd_req_get_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (m->body == PD_BODY_EITHER) r->body_kind = ct && media_type_is(ct, "multipart/form-data") ? PD_BODY_MULTIPART : PD_BODY_JSON;
    if (r->body_kind == PD_BODY_JSON && ct && !media_type_is(ct, "application/json")) {
        pd_req_error(r, 415, "unsupported_media_type", "expected Content-Type: application/json%s, got %.100s",
                     m->body == PD_BODY_EITHER ? " or multipart/form-data" : "", ct);
        return;
    }
    if (m->body == PD_BODY_MULTIPART && (!ct || !media_type_is(ct, "multipart/form-data"))) {
        pd_req_error(r, 415, "unsupported_media_type", "expected Content-Type: multipart/form-data, got %.100s",
                     ct ? ct : "none");
        return;
    }
    const char *cl = pd_req_get_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *e = NULL;
        unsigned long long v = strtoull(cl, &e, 10);
        if (e != cl && v > s->max_body) {
            pd_req_error(r, 413, "too_large", "the body has %llu bytes; the limit is %zu (--max-body-mb %d)", v, s->max_body,
                         s->opt.max_body_mb);
            return;
        }
    }
    if (r->body_kind == PD_BODY_MULTIPART) {
        r->last_part = -1;
        r->pp = MHD_create_post_processor(r->conn, 64 * 1024, on_part, r);
        if (!r->pp) {
            pd_req_error(r, 400, "invalid_input", "multipart/form-data body without a usable boundary");
            return;
        }
    }
}

/* Last callback of a request's upload: the body is complete. */
static void dispatch(pd_req *r, const char *method) {
    pd_server *s = r->srv;
    if (r->pp) {
        if (MHD_destroy_post_processor(r->pp) != MHD_YES && !r->part_error[0] && !r->too_large)
            snprintf(r->part_error, sizeof r->part_error, "truncated multipart/form-data body");
        r->pp = NULL;
    }
    if (r->too_large) {
        pd_req_error(r, 413, "too_large", "the body exceeds %zu bytes (--max-body-mb %d)", s->max_body, s->opt.max_body_mb);
        return;
    }
    if (r->part_error[0]) {
        pd_req_error(r, 400, "invalid_input", "%s", r->part_error);
        return;
    }
    find_method(r->route, method)->fn(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    pd_server *s = cls;
    pd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->srv = s;
        r->conn = conn;
        r->t0 = pd_now();
        r->route = PD_ROUTE_OTHER;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        atomic_fetch_add(&s->active, 1);
        begin(r, url, method);
        return r->fatal ? MHD_NO : MHD_YES;
    }
    if (r->replied) { /* early reply; MHD discards the rest */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        enum MHD_Result ok = consume(r, upload_data, *upload_size);
        *upload_size = 0;
        return ok;
    }
    if (r->parked) { /* resumed */
        r->parked = 0;
        atomic_fetch_sub(&s->parked, 1);
        pd_req_fn fn = r->resume;
        r->resume = NULL;
        fn(r);
        if (!r->replied) pd_req_error(r, 500, "internal", "no response was produced");
        return r->fatal ? MHD_NO : MHD_YES;
    }
    dispatch(r, method);
    if (r->parked) return MHD_YES;
    if (!r->replied) pd_req_error(r, 500, "internal", "no response was produced");
    return r->fatal ? MHD_NO : MHD_YES;
}

/* Writes the request's log line, counts it and frees it. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    pd_server *s = cls;
    pd_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->parked) { /* closed while resuming */
        r->parked = 0;
        atomic_fetch_sub(&s->parked, 1);
    }
    double dt = pd_now() - r->t0;
    int status = r->replied ? r->status : 499; /* 499: the client went away first */
    pd_metrics_request(s->metrics, r->route, status, dt);

    char line[2048];
    size_t pos = 0;
    char ts[40];
    pd_time_iso(ts, sizeof ts);
    pos += (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"method\":", ts);
    pd_json_escape(line, sizeof line, &pos, r->method);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"path\":");
    pd_json_escape(line, sizeof line, &pos, r->path);
    if (pos < sizeof line) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"status\":%d,\"adapter\":", status);
    if (r->log_adapter[0]) pd_json_escape(line, sizeof line, &pos, r->log_adapter);
    else if (pos + 4 < sizeof line) { memcpy(line + pos, "null", 4); pos += 4; }
    if (pos < sizeof line) {
        if (r->log_version > 0) pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"version\":%d", r->log_version);
        else pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"version\":null");
    }
    if (pos < sizeof line)
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"tokens\":%ld,\"ms\":%.3f}\n", r->tokens, dt * 1000.0);
    if (pos >= sizeof line) { /* cut: keep it one valid line */
        pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"status\":%d,\"ms\":%.3f,\"note\":\"log line cut\"}\n", ts,
                               status, dt * 1000.0);
    }
    ssize_t wr = write(2, line, pos);
    (void)wr;

    if (r->pp) MHD_destroy_post_processor(r->pp);
    pd_route_cleanup(r);
    free_body(r);
    free(r);
    atomic_fetch_sub(&s->active, 1);
}

/* Counts open connections for the scheduler's company hook; a closing one may end a batch wait. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    pd_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->connections, 1);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&s->connections, 1);
        if (atomic_load(&s->ready)) pd_sched_kick(s->sched);
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    pd_log("warn", msg, "");
}

/* ==== Daemon ==== */

pd_status pd_http_start(pd_server *s, char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", s->opt.port);
    int rc = getaddrinfo(*s->opt.host ? s->opt.host : NULL, port, &hints, &res);
    if (rc || !res) return pd_err(err, errlen, PD_ERR_INVALID, "--host %s: %s", s->opt.host, gai_strerror(rc));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const unsigned poll_modes[2] = {MHD_USE_EPOLL, MHD_USE_POLL};
    for (int i = 0; i < 2 && !s->daemon; i++) {
        s->daemon = MHD_start_daemon(flags | poll_modes[i], (uint16_t)s->opt.port, NULL, NULL, on_request, s,
                                     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                     MHD_OPTION_SOCK_ADDR, res->ai_addr,
                                     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->opt.http_threads,
                                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                     MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->opt.max_connections,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                                     MHD_OPTION_END);
    }
    freeaddrinfo(res);
    if (!s->daemon)
        return pd_err(err, errlen, PD_ERR_IO, "cannot listen on %s:%d (address in use or not available)", s->opt.host,
                      s->opt.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->opt.port;
    return PD_OK;
}

void pd_http_quiesce(pd_server *s) {
    if (!s->daemon || s->quiesced_fd >= 0) return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    s->quiesced_fd = fd == MHD_INVALID_SOCKET ? -1 : (int)fd;
}

void pd_http_stop(pd_server *s) {
    if (!s->daemon) return;
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    if (s->quiesced_fd >= 0) close(s->quiesced_fd);
    s->quiesced_fd = -1;
}
