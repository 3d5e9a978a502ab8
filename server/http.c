/* http.c - libmicrohttpd glue: routing by the table the server gives, request bodies, auth,
 * replies, parking. See http.h for the order of checks and the threading model. */
#include "http.h"

#include "gate.h"
#include "jsonio.h"
#include "multipart.h"
#include "log.h"
#include "reqlog.h"

#include <microhttpd.h>

#include <malloc.h>
#include <netdb.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

struct pd_http {
    pd_http_config c;
    struct MHD_Daemon *daemon;
    atomic_int active;      /* requests between their first callback and completion */
    atomic_int parked;      /* suspended connections */
    atomic_int open;        /* connections libmicrohttpd holds */
    pd_gate *gate;          /* the listening socket and the first request's head (gate.h) */
    uint64_t id_seed;       /* random: request ids differ across processes */
    atomic_ullong id_next;  /* request ids generated so far */
};

/* ==== Routing ==== */

/* Matches a (percent-decoded) url against a route template: literal characters must agree, a
 * {field} takes a non-empty segment (up to the next '/') into r->file for {file}, r->name
 * otherwise. 1 on a match (captures filled), 0 otherwise. */
static int match(const char *tpl, const char *url, pd_req *r) {
    const char *t = tpl, *u = url;
    while (*t) {
        if (*t != '{') {
            if (*t++ != *u++) return 0;
            continue;
        }
        const char *close = strchr(t, '}');
        PD_ASSERT(close);
        int file = close - t == 5 && !strncmp(t, "{file", 5);
        char *dst = file ? r->file : r->name;
        size_t cap = file ? sizeof r->file : sizeof r->name, n = strcspn(u, "/"), k = n;
        if (n == 0) return 0;
        if (n >= cap) { /* still this route: a name too long is a bad name, not "no route" */
            k = cap - 1;
            r->long_capture = file ? 2 : 1;
        }
        memcpy(dst, u, k);
        dst[k] = 0;
        u += n;
        t = close + 1;
    }
    return *u == 0;
}

static int find_route(const pd_http *h, const char *url, pd_req *r) {
    for (int i = 0; i < h->c.n_routes; i++) {
        r->long_capture = 0;
        if (h->c.routes[i].path && match(h->c.routes[i].path, url, r)) return i;
    }
    r->long_capture = 0;
    return -1;
}

static int hex_digit(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* MHD_OPTION_UNESCAPE_CALLBACK: percent-decodes the path in place as libmicrohttpd would, but
 * leaves "%00" as it is: a decoded NUL would end the C string there, and
 * "/adapters/x/files/adapter_config.json%00.txt" would name adapter_config.json. Kept
 * literally, the '%' makes the name invalid (400) or the file unknown (404). */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s) {
    char *w = s;
    for (const char *p = s; *p;) {
        int hi = p[0] == '%' ? hex_digit(p[1]) : -1, lo = hi >= 0 ? hex_digit(p[2]) : -1;
        if (lo >= 0 && (hi | lo)) {
            *w++ = (char)(hi * 16 + lo);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

static const pd_method_def *find_method(const pd_route_def *d, const char *method) {
    if (!strcmp(method, "HEAD")) method = "GET";
    for (int i = 0; i < 3; i++)
        if (d->m[i].method && !strcmp(d->m[i].method, method)) return &d->m[i];
    return NULL;
}

/* The Allow header of a 405: the route's methods, HEAD after GET. */
static void allow_list(const pd_route_def *d, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < 3 && d->m[i].method && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s%s", k ? ", " : "", d->m[i].method, strcmp(d->m[i].method, "GET") ? "" : ", HEAD");
}

/* ==== Replies ==== */

/* The one mapping from a status to HTTP: the status and the error code of the body. */
static const struct {
    pd_status st;
    int http;
    const char *code; /* NULL: pd_status_name */
} HTTP_OF[] = {
    {PD_OK, 200, NULL},
    {PD_ERR_INVALID, 400, NULL},
    {PD_ERR_FORMAT, 400, NULL},
    {PD_ERR_NOT_FOUND, 404, NULL},
    {PD_ERR_CONFLICT, 409, NULL},
    {PD_ERR_TOO_LARGE, 413, NULL},
    {PD_ERR_UNSUPPORTED, 422, NULL},
    {PD_ERR_MISMATCH, 422, NULL},
    {PD_ERR_NOMEM, 500, NULL},
    {PD_ERR_IO, 500, NULL},
    {PD_ERR_BUSY, 503, NULL},
    {PD_ERR_CANCELLED, 503, "shutting_down"}, /* what is cancelled under a request: the server stopping */
};

int pd_http_status(pd_status st) {
    for (size_t i = 0; i < sizeof HTTP_OF / sizeof HTTP_OF[0]; i++)
        if (HTTP_OF[i].st == st) return HTTP_OF[i].http;
    return 500;
}

static const char *http_code(pd_status st) {
    for (size_t i = 0; i < sizeof HTTP_OF / sizeof HTTP_OF[0]; i++)
        if (HTTP_OF[i].st == st && HTTP_OF[i].code) return HTTP_OF[i].code;
    return pd_status_name(st);
}

void pd_req_header(pd_req *r, const char *name, const char *value) {
    if (r->n_extra < (int)(sizeof r->extra_hdr / sizeof r->extra_hdr[0])) {
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
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    const pd_http_config *c = &r->http->c;
    if (c->replica && c->replica[0]) MHD_add_response_header(resp, "X-Peftd-Replica", c->replica);
    if (atomic_load(c->draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
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

void pd_req_reply_static(pd_req *r, int status, const char *content_type, const void *data, size_t len) {
    PD_ASSERT(!r->replied);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, len ? (void *)data : (void *)"", MHD_RESPMEM_PERSISTENT);
    queue(r, status, resp, len ? content_type : NULL);
}

void pd_req_json(pd_req *r, int status, cJSON *v, int built) {
    char *text = v && built ? pd_json_print(v) : NULL;
    cJSON_Delete(v);
    pd_req_json_text(r, status, text);
}

void pd_req_json_text(pd_req *r, int status, char *json) {
    if (!json) {
        pd_req_error(r, 500, "out_of_memory", "out of memory building the response");
        return;
    }
    pd_req_reply(r, status, "application/json", json, strlen(json));
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

/* A server-side failure is told without the server's paths (a temporary name in one holds the
 * PID): each absolute path in msg becomes "[path]" in out. */
static void hide_paths(const char *msg, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = msg; *p && k + 7 < cap;) {
        if (*p == '/' && (p == msg || strchr(" \"'(=", p[-1]))) {
            while (*p && !strchr(" :\"'),", *p)) p++;
            memcpy(out + k, "[path]", 6);
            k += 6;
        } else {
            out[k++] = *p++;
        }
    }
    out[k] = 0;
}

void pd_req_error(pd_req *r, int status, const char *code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_scrub(msg);
    if (status >= 500) {
        char shown[1024];
        hide_paths(msg, shown, sizeof shown);
        if (strcmp(shown, msg)) {
            pd_log("warn", msg, ""); /* the whole story for the operator */
            memcpy(msg, shown, sizeof msg);
        }
    }
    cJSON *e = pd_json_error(code, msg);
    cJSON *inner = e ? cJSON_GetObjectItemCaseSensitive(e, "error") : NULL;
    if (inner && !cJSON_AddStringToObject(inner, "request_id", r->request_id)) {
        cJSON_Delete(e);
        e = NULL;
    }
    char *txt = e ? pd_json_print(e) : NULL;
    cJSON_Delete(e);
    if (!txt) txt = strdup("{\"error\":{\"code\":\"out_of_memory\",\"message\":\"out of memory\"}}");
    if (status == 503 && !has_header(r, MHD_HTTP_HEADER_RETRY_AFTER)) pd_req_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401 && !has_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE))
        pd_req_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"peftd\"");
    pd_req_reply(r, status, "application/json", txt, txt ? strlen(txt) : 0);
}

void pd_req_fail(pd_req *r, pd_status st, const char *message) {
    pd_req_error(r, pd_http_status(st), http_code(st), "%s", message);
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
    atomic_fetch_add(&r->http->parked, 1);
    MHD_suspend_connection(r->conn);
}

void pd_req_unpark(pd_req *r) {
    MHD_resume_connection(r->conn);
}

void pd_req_park_on(pd_req *r, pd_worker *w, pd_worker_fn fn, pd_req_fn resume) {
    pd_req_park(r, resume);
    pd_status st = pd_worker_submit(w, fn, r);
    if (st) {
        r->async_st = st;
        snprintf(r->async_err, sizeof r->async_err, "%s", st == PD_ERR_CANCELLED ? "the server is shutting down" : "out of memory");
        pd_req_unpark(r);
    }
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
    const pd_http_config *s = &r->http->c;
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

/* pd_multipart_parse's callback: each part goes to its field (parts point into the body); an
 * unknown or repeated field (an empty first copy included) stops the parse. */
static int on_part(void *arg, const char *key, char *data, size_t len, char *err, size_t errlen) {
    pd_req *r = arg;
    const char *const *names = r->def->parts;
    int id = -1;
    for (int i = 0; names && names[i] && i < PD_PARTS_MAX; i++)
        if (!strcmp(key, names[i])) id = i;
    if (id < 0) {
        char list[120];
        size_t k = 0;
        list[0] = 0;
        for (int i = 0; names && names[i] && k < sizeof list; i++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", names[i]);
        snprintf(err, errlen, "unknown form field \"%.40s\" (expected %s)", key, list);
        return -1;
    }
    pd_part *p = &r->parts[id];
    if (p->seen) {
        snprintf(err, errlen, "form field \"%s\" is given twice", key);
        return -1;
    }
    p->seen = 1;
    p->data = data;
    p->len = len;
    return 0;
}

static void free_body(pd_req *r) {
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    memset(r->parts, 0, sizeof r->parts); /* they pointed into the body */
}

/* Takes n more body bytes. Returns MHD_NO to drop a client that keeps sending far past the
 * limit. */
static enum MHD_Result consume(pd_req *r, const char *data, size_t n) {
    size_t max = r->http->c.max_body;
    r->received += n;
    if (r->received > max) {
        if (!r->too_large) {
            r->too_large = 1;
            free_body(r);
        }
        return r->received > 2 * max + (1u << 20) ? MHD_NO : MHD_YES;
    }
    if (r->body_kind == PD_BODY_JSON || r->body_kind == PD_BODY_MULTIPART) {
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
    }
    return MHD_YES;
}

/* Content-Type without parameters matches want (case-insensitive)? */
static int media_type_is(const char *ct, const char *want) {
    size_t n = strlen(want);
    while (*ct == ' ') ct++;
    return !strncasecmp(ct, want, n) && (ct[n] == 0 || ct[n] == ';' || ct[n] == ' ');
}

/* ==== Request lifecycle ==== */

/* r->request_id: the client's X-Request-Id when it is 1..PD_REQUEST_ID_MAX characters of
 * printable ASCII without spaces (it goes into headers, JSON and logs as it is), else a new
 * one: 16 hex digits of splitmix64 over a per-process random seed plus a counter, so ids never
 * repeat within a process (the mixer is a bijection) and differ across replicas. */
static void request_id_init(pd_http *h, pd_req *r) {
    const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = 0;
    if (v) {
        while (n <= PD_REQUEST_ID_MAX && v[n] > 0x20 && v[n] < 0x7f) n++;
        if (n > 0 && n <= PD_REQUEST_ID_MAX && !v[n]) {
            memcpy(r->request_id, v, n + 1);
            return;
        }
    }
    uint64_t k = atomic_fetch_add(&h->id_next, 1);
    snprintf(r->request_id, sizeof r->request_id, "%016llx", (unsigned long long)pd_mix64(h->id_seed + k));
}

/* First callback of a request: headers only. Replies at once when the request cannot succeed,
 * so an unwanted body is never read. */
static void begin(pd_req *r, const char *url, const char *method) {
    const pd_http_config *s = &r->http->c;
    r->route = find_route(r->http, url, r);
    if (r->route < 0) {
        pd_req_error(r, 404, "not_found", "no route %s %.200s", method, url);
        return;
    }
    const pd_route_def *d = &s->routes[r->route];
    const pd_method_def *m = r->def = find_method(d, method);
    if (!m) {
        allow_list(d, r->hdr_buf, sizeof r->hdr_buf);
        pd_req_header(r, MHD_HTTP_HEADER_ALLOW, r->hdr_buf);
        pd_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", method, d->path, r->hdr_buf);
        return;
    }
    if (!atomic_load(s->ready) && !d->before_ready) {
        pd_req_error(r, 503, "not_ready", "the base model is still loading");
        return;
    }
    if (s->api_key && (m->write || (s->auth_all && !d->open)) && !authorized(r)) {
        pd_req_error(r, 401, "unauthorized", "%s", pd_req_get_header(r, MHD_HTTP_HEADER_AUTHORIZATION)
                                                        ? "wrong API key"
                                                        : "this route needs \"Authorization: Bearer <key>\"");
        return;
    }
    if (r->long_capture == 2) {
        pd_req_error(r, 404, "not_found", "no such file: the name is longer than %zu bytes", sizeof r->file - 1);
        return;
    }
    if (r->long_capture) {
        pd_req_error(r, 400, "invalid_input", "the name in the path is longer than %zu bytes", sizeof r->name - 1);
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
                         s->max_body_mb);
            return;
        }
    }
    if (r->body_kind == PD_BODY_MULTIPART && pd_multipart_boundary(ct, r->boundary, sizeof r->boundary) < 0) {
        pd_req_error(r, 400, "invalid_input", "multipart/form-data without a usable boundary (1 to %d characters)", PD_MP_BOUNDARY_MAX);
        return;
    }
}

/* Last callback of a request's upload: the body is complete. */
static void dispatch(pd_req *r) {
    const pd_http_config *s = &r->http->c;
    if (r->body_kind == PD_BODY_MULTIPART && !r->too_large &&
        pd_multipart_parse(r->body ? r->body : (char[1]){0}, r->body_len, r->boundary, on_part, r, r->part_error, sizeof r->part_error) ==
            PD_OK)
        r->part_error[0] = 0;
    if (r->too_large) {
        pd_req_error(r, 413, "too_large", "the body exceeds %zu bytes (--max-body-mb %d)", s->max_body, s->max_body_mb);
        return;
    }
    if (r->part_error[0]) {
        pd_req_error(r, 400, "invalid_input", "%s", r->part_error);
        return;
    }
    r->def->handler(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    pd_http *h = cls;
    pd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->srv = h->c.app;
        r->http = h;
        r->conn = conn;
        r->t0 = pd_now();
        r->route = -1;
        snprintf(r->method, sizeof r->method, "%s", method);
        /* absolute-form (RFC 9112 3.2.2): "http://host/path" asks for "/path" */
        if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8)) {
            const char *s = strchr(strstr(url, "://") + 3, '/');
            url = s ? s : "/";
        }
        snprintf(r->path, sizeof r->path, "%s", url);
        request_id_init(h, r);
        atomic_fetch_add(&h->active, 1);
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
        atomic_fetch_sub(&h->parked, 1);
        pd_req_fn fn = r->resume;
        r->resume = NULL;
        fn(r);
        if (r->parked) return MHD_YES; /* parked again: the next step of the work */
        if (!r->replied) pd_req_error(r, 500, "internal", "no response was produced");
        return r->fatal ? MHD_NO : MHD_YES;
    }
    dispatch(r);
    if (r->parked) return MHD_YES;
    if (!r->replied) pd_req_error(r, 500, "internal", "no response was produced");
    return r->fatal ? MHD_NO : MHD_YES;
}

/* Writes the request's log line, counts it and frees it. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    pd_http *h = cls;
    pd_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->parked) { /* closed while resuming */
        r->parked = 0;
        atomic_fetch_sub(&h->parked, 1);
    }
    double dt = pd_now() - r->t0;
    r->status = r->replied ? r->status : 499; /* 499: the client went away first */
    if (h->c.completed) h->c.completed(h->c.app, r, dt);
    pd_log_request(r->request_id, r->method, r->path, r->status, r->log_adapter, r->log_version, r->tokens, dt);
    if (r->ctx_free) r->ctx_free(r->ctx);
    free_body(r);
    size_t big = r->received;
    free(r);
    atomic_fetch_sub(&h->active, 1);
#ifdef __GLIBC__
    /* After a big body (its buffer, its parsed tree, its tokens), give the freed pages back:
     * glibc keeps them in the arena of whichever thread freed them, so RSS would otherwise
     * stay at the burst's peak. A few milliseconds, only for bodies of 1 MiB or more. */
    if (big >= ((size_t)1 << 20)) malloc_trim(0);
#endif
}

/* Tells the server of opened and closed client connections. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    pd_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED || code == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_add(&h->open, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    if (h->c.connection && (code == MHD_CONNECTION_NOTIFY_STARTED || code == MHD_CONNECTION_NOTIFY_CLOSED))
        h->c.connection(h->c.app, code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = 0;
    pd_log("warn", msg, "");
}

/* ==== Daemon ==== */

static int gate_open_now(void *arg) { return atomic_load(&((pd_http *)arg)->open); }

static void gate_waiting(void *arg, int delta) {
    pd_http *h = arg;
    if (h->c.connection) h->c.connection(h->c.app, delta);
}

/* One word of a refused request line for the log: printable ASCII up to a space, at most cap - 1
 * bytes, anything else as '?'. Returns the bytes consumed. */
static size_t log_word(const char *s, size_t n, char *out, size_t cap) {
    size_t i = 0, k = 0;
    for (; i < n && s[i] != ' ' && s[i] != '\r' && s[i] != '\n'; i++)
        if (k + 1 < cap) out[k++] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[k] = 0;
    return i;
}

/* The gate refused a connection: an access line as for any request (its method and target as
 * far as the request line says them), then the metrics. */
static void gate_refused(void *arg, int status, const char *code, const char *head, size_t len) {
    pd_http *h = arg;
    char method[16] = "", path[256] = "", id[24];
    if (head) {
        size_t i = log_word(head, len, method, sizeof method);
        if (i < len && head[i] == ' ') log_word(head + i + 1, len - i - 1, path, sizeof path);
    }
    uint64_t k = atomic_fetch_add(&h->id_next, 1);
    snprintf(id, sizeof id, "%016llx", (unsigned long long)pd_mix64(h->id_seed + k));
    pd_log_request(id, method, path, status, NULL, 0, 0, 0.0);
    if (h->c.refused) h->c.refused(h->c.app, status, code);
}

static int gate_handoff(void *arg, int fd, const struct sockaddr *addr, socklen_t len) {
    return MHD_add_connection(((pd_http *)arg)->daemon, fd, addr, len) == MHD_YES ? 0 : -1;
}

pd_status pd_http_start(const pd_http_config *c, pd_http **out, int *port, char *err, size_t errlen) {
    *out = NULL;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", c->port);
    int rc = getaddrinfo(*c->host ? c->host : NULL, ps, &hints, &res);
    if (rc || !res) return pd_err(err, errlen, PD_ERR_INVALID, "--host %s: %s", c->host, gai_strerror(rc));
    pd_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(res);
        return pd_err(err, errlen, PD_ERR_NOMEM, "out of memory");
    }
    h->c = *c;
    /* the seed of request ids: random per process (the clock and pid when getrandom fails) */
    if (getrandom(&h->id_seed, sizeof h->id_seed, 0) != (ssize_t)sizeof h->id_seed)
        h->id_seed = pd_mix64((uint64_t)getpid() ^ (uint64_t)(pd_now() * 1e9));
    atomic_init(&h->id_next, 0);
    /* the gate listens and hands connections over (MHD_add_connection needs MHD_USE_ITC) */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    if (res->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    const unsigned poll_modes[2] = {MHD_USE_EPOLL, MHD_USE_POLL};
    for (int i = 0; i < 2 && !h->daemon; i++) {
        h->daemon = MHD_start_daemon(flags | poll_modes[i], (uint16_t)c->port, NULL, NULL, on_request, h,
                                     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                                     MHD_OPTION_UNESCAPE_CALLBACK, unescape, h,
                                     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->threads,
                                     MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                     MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
                                     MHD_OPTION_END);
    }
    pd_status st = PD_OK;
    char e2[200];
    if (!h->daemon) {
        st = pd_err(err, errlen, PD_ERR_IO, "cannot start libmicrohttpd");
    } else {
        pd_gate_config gc = {res->ai_addr, res->ai_addrlen, c->max_connections, (long long)c->max_body, gate_open_now, gate_waiting,
                              gate_handoff, gate_refused, h};
        if (pd_gate_start(&gc, &h->gate, port, e2, sizeof e2))
            st = pd_err(err, errlen, PD_ERR_IO, "cannot listen on %s:%d (address in use or not available: %s)", c->host, c->port, e2);
    }
    freeaddrinfo(res);
    if (st) {
        if (h->daemon) MHD_stop_daemon(h->daemon);
        free(h);
        return st;
    }
    *out = h;
    return PD_OK;
}

void pd_http_stop(pd_http *h) {
    if (!h) return;
    pd_gate_stop(h->gate); /* no new connections */
    /* In-flight requests finish: parked ones always do (the scheduler and the workers drain),
     * others get 10 s (a client that stalls mid-upload must not hold the shutdown forever). */
    double t0 = pd_now();
    while (atomic_load(&h->active) > 0) {
        if (atomic_load(&h->parked) == 0 && pd_now() - t0 > 10.0) break;
        usleep(2000);
    }
    MHD_stop_daemon(h->daemon);
    free(h);
}
