/* http.h - the HTTP layer on libmicrohttpd: request lifecycle, routing by a table, bodies, auth,
 * replies, parking. It knows no route and no handler of its own: the server hands it the route
 * table (routes.h) and a few hooks, and handlers reach the server through the request.
 *
 * The daemon runs a small pool of event-loop threads (MHD_OPTION_THREAD_POOL_SIZE) with
 * suspend/resume: a request that needs the model, a registry load or a slow registry write is
 * parked (MHD_suspend_connection) while the scheduler or a worker does the work, and unparked
 * from that thread when it is done; its continuation then runs on the event-loop thread and
 * queues the response. So hundreds of open connections need no more threads, and nothing slow
 * runs on an event-loop thread.
 *
 * Connections come through the gate (gate.h): it listens, answers past --max-connections with
 * 503 + Retry-After, refuses a first request head libmicrohttpd would get wrong or RFC 9112
 * refuses (400/413/501), and hands the rest over with MHD_add_connection.
 *
 * Order of checks for every request, before any body byte is buffered: route (404), method
 * (405 + Allow), readiness (503 + Retry-After), API key (401), Content-Type (415),
 * Content-Length against the body limit (413). Bodies are counted while they stream; a body
 * that grows past the limit stops being buffered and gets 413 (a client that keeps sending
 * more than twice the limit is disconnected).
 *
 * Every reply goes through pd_req_reply / pd_req_error; every error body is
 * {"error": {"code", "message", "request_id"}} built in one place (pd_req_error), and one table in
 * http.c maps a pd_status to its HTTP status and error code (pd_req_fail, pd_http_status).
 *
 * Request ids: every request has one, r->request_id: the client's X-Request-Id when it is 1 to
 * PD_REQUEST_ID_MAX printable ASCII characters without spaces, else a new one (16 hex digits,
 * unique in the process, random across processes). Every response peftd builds echoes it in
 * X-Request-Id, error bodies carry it, and the access line logs it.
 *
 * Ownership: a pd_req lives from the first callback of a request to its completion callback; a
 * handler keeps its own state behind r->ctx, freed there with r->ctx_free.
 * Thread-safety: a pd_req is used by one event-loop thread at a time, except while parked, when
 * the thread doing its work owns it until pd_req_unpark. */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include "common.h"
#include "worker.h"

#include <cJSON.h>
#include <stdatomic.h>

struct MHD_Connection;
struct pd_server;

typedef struct pd_http pd_http;
typedef struct pd_req pd_req;
typedef void (*pd_req_fn)(pd_req *r);

/* ==== The route table (the server's is in routes.c) ==== */

/* PD_BODY_EITHER (a route's choice): JSON or multipart by Content-Type; r->body_kind says which. */
typedef enum { PD_BODY_NONE = 0, PD_BODY_JSON, PD_BODY_MULTIPART, PD_BODY_EITHER } pd_body_kind;

#define PD_PARTS_MAX 8
#define PD_REQUEST_ID_MAX 128

typedef struct pd_method_def {
    const char *method;        /* "GET" (also answers HEAD), "POST", "PUT", "DELETE" */
    pd_req_fn handler;         /* runs on an event-loop thread once the body is complete */
    int write;                 /* needs the API key even without auth_all */
    pd_body_kind body;
    const char *const *parts;  /* multipart: the form fields taken (r->parts in this order), NULL-terminated */
} pd_method_def;

typedef struct pd_route_def {
    const char *path;          /* template: "/adapters/{name}/files/{file}"; {file} -> r->file, any other -> r->name */
    int before_ready;          /* answered while the server is not ready (/health, /metrics) */
    int open;                  /* never needs the key (/health) */
    pd_method_def m[3];
} pd_route_def;

/* ==== The daemon ==== */

typedef struct pd_http_config {
    const char *host;
    int port;                  /* 0: a free one */
    int threads, max_connections;
    size_t max_body;           /* bytes */
    int max_body_mb;           /* the same, as the option says it (for messages) */
    const char *api_key;       /* NULL: no authentication */
    size_t api_key_len;
    int auth_all;              /* the key on every route but open ones */
    const char *replica;       /* X-Peftd-Replica of every response */
    const pd_route_def *routes;/* the table; a request that matches no entry gets 404 */
    int n_routes;
    struct pd_server *app;     /* handed to handlers as r->srv */
    const atomic_int *ready;   /* nonzero once the server serves (before: 503 but on before_ready routes) */
    const atomic_int *draining;/* nonzero once shutdown began: responses close their connection */
    /* a request finished (r->route: its index, -1 when none matched; r->status), for the metrics */
    void (*completed)(struct pd_server *app, const pd_req *r, double seconds);
    /* a client connection opened (+1) or closed (-1) */
    void (*connection)(struct pd_server *app, int delta);
    /* the gate answered a connection's first request (or the connection, past
     * --max-connections) with status and closed it, before libmicrohttpd saw it; code: the
     * error code. For the metrics; the access log line is written here. */
    void (*refused)(struct pd_server *app, int status, const char *code);
} pd_http_config;

/* Starts the daemon on c->host:c->port; *port gets the bound port. c and everything it points
 * to must outlive the daemon. PD_ERR_INVALID (host), PD_ERR_IO (cannot listen). */
pd_status pd_http_start(const pd_http_config *c, pd_http **out, int *port, char *err, size_t errlen);
/* Graceful stop: no new connections, requests in flight answered (parked ones always finish,
 * their workers must still run; others get 10 s), then the daemon stops and is freed. */
void pd_http_stop(pd_http *h);

/* ==== Requests ==== */

typedef struct pd_part {
    char *data;               /* into the request's body, NUL-terminated (multipart.h) */
    size_t len;
    int seen;
} pd_part;

struct pd_req {
    struct pd_server *srv;
    pd_http *http;
    struct MHD_Connection *conn;
    int route;                /* index in the table; -1: none */
    const pd_method_def *def; /* the route's entry for this method */
    char method[16];
    char path[512];           /* truncated copy, for the log */
    char name[80];            /* {name} / {id} from the path, percent-decoded */
    char file[160];           /* {file} from the path */
    int long_capture;         /* 1: {name}/{id}, 2: {file} was longer than its field (answered 400 / 404) */
    char request_id[PD_REQUEST_ID_MAX + 1]; /* the client's X-Request-Id if valid, else generated */
    double t0;
    /* body */
    pd_body_kind body_kind;
    char *body;
    size_t body_len, body_cap;
    size_t received;          /* every body byte seen, buffered or not */
    int too_large;
    char boundary[72];        /* multipart: the Content-Type's boundary (at most 70) */
    pd_part parts[PD_PARTS_MAX]; /* multipart: in the order of def->parts */
    char part_error[160];     /* the multipart problem (malformed, unknown or repeated field) */
    /* state */
    int replied;              /* a response is queued */
    int fatal;                /* no response could be queued: close the connection */
    int parked;               /* suspended and not yet resumed into a handler call */
    pd_req_fn resume;         /* continuation after unpark */
    int status;               /* HTTP status sent, for log and metrics */
    const char *extra_hdr[8][2];
    int n_extra;
    char hdr_buf[128];        /* storage for one computed header value (Allow, Location) */
    /* the handler's */
    void *ctx;                /* its state, freed at completion with ctx_free */
    void (*ctx_free)(void *ctx);
    pd_status async_st;       /* result of parked work (pd_req_park_on) */
    char async_err[512];
    /* log fields */
    char log_adapter[80];
    int log_version;          /* 0 = none */
    long tokens;
};

/* ==== Replies (event-loop thread, once per request) ==== */

/* Queues a response with body (taken over: freed with free()), content type and the headers
 * added with pd_req_header. */
void pd_req_reply(pd_req *r, int status, const char *content_type, char *body, size_t len);
/* v (taken over: freed) as the JSON body. built == 0 or v NULL (a part of v could not be
 * built): 500 out_of_memory instead. */
void pd_req_json(pd_req *r, int status, cJSON *v, int built);
/* A body that outlives every request (static, read-only data): sent without a copy. len 0:
 * no body and no Content-Type (a 304). */
void pd_req_reply_static(pd_req *r, int status, const char *content_type, const void *data, size_t len);
/* A JSON body already printed (taken over, as pd_req_reply). */
void pd_req_json_text(pd_req *r, int status, char *json);
/* The one error reply: {"error": {"code", "message", "request_id"}}. */
void pd_req_error(pd_req *r, int status, const char *code, const char *fmt, ...) PD_PRINTF(4, 5);
/* An error from a pd_status: HTTP status and code from pd_http_status / pd_status_name. */
void pd_req_fail(pd_req *r, pd_status st, const char *message);
/* Sends a file by descriptor (taken over) of size bytes. */
void pd_req_file(pd_req *r, int fd, size_t size, const char *content_type, const char *filename);
/* Adds a response header (strings must outlive the reply call: literals, or r->hdr_buf). */
void pd_req_header(pd_req *r, const char *name, const char *value);

/* The HTTP status of a pd_status. */
int pd_http_status(pd_status st);

/* Looks up a request header; NULL if absent. */
const char *pd_req_get_header(pd_req *r, const char *name);

/* ==== Parking ==== */

/* Suspends the connection; after pd_req_unpark, resume(r) runs on the event-loop thread and
 * must reply. Call from a handler. */
void pd_req_park(pd_req *r, pd_req_fn resume);
/* From any thread, once per park; the caller must not touch r afterwards. */
void pd_req_unpark(pd_req *r);
/* Parks r and hands fn(r) to worker w; fn must end with pd_req_unpark(r). If the worker refuses
 * the task, r resumes at once with r->async_st set (PD_ERR_CANCELLED while shutting down,
 * PD_ERR_NOMEM) and r->async_err saying so. */
void pd_req_park_on(pd_req *r, pd_worker *w, pd_worker_fn fn, pd_req_fn resume);

#endif
