/* http.h - the HTTP layer on libmicrohttpd: request lifecycle, bodies, auth, replies, logging.
 *
 * The daemon runs a small pool of event-loop threads (MHD_OPTION_THREAD_POOL_SIZE) with
 * suspend/resume: a request that needs the model or a slow registry write is parked
 * (MHD_suspend_connection) while the scheduler or the worker does the work, and unparked from
 * that thread when it is done; its continuation then runs on the event-loop thread and
 * queues the response. So hundreds of open connections need no more threads.
 *
 * Order of checks for every request, before any body byte is buffered: route (404), method
 * (405 + Allow), readiness (503 + Retry-After), API key (401), Content-Type (415),
 * Content-Length against --max-body-mb (413). Bodies are counted while they stream; a body
 * that grows past the limit stops being buffered and gets 413 (a client that keeps sending
 * more than twice the limit is disconnected).
 *
 * Every reply goes through pd_req_reply / pd_req_error; every error body is
 * {"error": {"code", "message"}} built in one place (pd_req_error), and pd_http_status is the
 * one mapping from pd_status to an HTTP status.
 *
 * Ownership: a pd_req lives from the first callback of a request to its completion callback;
 * handlers may store owned pointers in it (job, adapter, cJSON) which are freed there.
 * Thread-safety: a pd_req is used by one event-loop thread at a time, except while parked,
 * when the thread doing its work owns it until pd_req_unpark. */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include "server.h"

#include <cJSON.h>

struct MHD_Connection;

typedef struct pd_req pd_req;
typedef void (*pd_req_fn)(pd_req *r);

/* Multipart fields: adapter uploads take NAME..HEAD_WEIGHTS, POST /train SPEC..EVAL. */
typedef enum {
    PD_PART_NAME = 0, PD_PART_CONFIG, PD_PART_WEIGHTS, PD_PART_LABELS, PD_PART_HEAD_CONFIG, PD_PART_HEAD_WEIGHTS,
    PD_PART_SPEC, PD_PART_TRAIN, PD_PART_EVAL,
    PD_PART_COUNT
} pd_part_id;

typedef struct pd_part {
    char *data;
    size_t len, cap;
    int seen;
} pd_part;

/* PD_BODY_EITHER (a route's choice): JSON or multipart by Content-Type; r->body_kind says which. */
typedef enum { PD_BODY_NONE = 0, PD_BODY_JSON, PD_BODY_MULTIPART, PD_BODY_EITHER } pd_body_kind;

struct pd_req {
    pd_server *srv;
    struct MHD_Connection *conn;
    pd_route route;
    char method[16];
    char path[512];           /* truncated copy, for the log */
    char name[80];            /* {name} from the path, percent-decoded */
    char file[160];           /* {file} from the path */
    double t0;
    /* body */
    pd_body_kind body_kind;
    char *body;
    size_t body_len, body_cap;
    size_t received;          /* every body byte seen, buffered or not */
    int too_large;
    struct MHD_PostProcessor *pp;
    pd_part parts[PD_PART_COUNT];
    int last_part;            /* index of the part being received, -1 none */
    char part_error[160];     /* first multipart problem (unknown or repeated field) */
    /* state */
    int replied;              /* a response is queued */
    int fatal;                /* no response could be queued: close the connection */
    int parked;               /* suspended and not yet resumed into a handler call */
    pd_req_fn resume;         /* continuation after unpark */
    int status;               /* HTTP status sent, for log and metrics */
    const char *extra_hdr[4][2];
    int n_extra;
    /* handler state, freed at completion */
    cJSON *json;
    pd_job *job;
    pd_adapter *adapter;      /* pinned version */
    int version;
    int return_logits, top_k;
    pd_task task;
    pd_status async_st;       /* result of a worker task */
    char async_err[512];
    int async_created;
    pd_adapter_info async_info;
    int has_info;
    /* log fields */
    char log_adapter[80];
    int log_version;          /* 0 = none */
    long tokens;
};

/* Starts the daemon on o->host:o->port; s->port gets the bound port. */
pd_status pd_http_start(pd_server *s, char *err, size_t errlen);
/* Stops accepting new connections (the listening socket stays open until pd_http_stop). */
void pd_http_quiesce(pd_server *s);
void pd_http_stop(pd_server *s);

/* ==== Replies (event-loop thread, once per request) ==== */

/* Queues a response with body (taken over: freed with free()), content type and the headers
 * added with pd_req_header. */
void pd_req_reply(pd_req *r, int status, const char *content_type, char *body, size_t len);
/* Prints v (not freed) as the body. */
void pd_req_json(pd_req *r, int status, const cJSON *v);
/* The one error reply: {"error": {"code", "message"}}. */
void pd_req_error(pd_req *r, int status, const char *code, const char *fmt, ...) PD_PRINTF(4, 5);
/* An error from a pd_status: HTTP status and code from pd_http_status / pd_status_name. */
void pd_req_fail(pd_req *r, pd_status st, const char *message);
/* Sends a file by descriptor (taken over) of size bytes. */
void pd_req_file(pd_req *r, int fd, size_t size, const char *content_type, const char *filename);
/* Adds a response header (strings must outlive the reply call; use literals). */
void pd_req_header(pd_req *r, const char *name, const char *value);

int pd_http_status(pd_status st);

/* Looks up a request header; NULL if absent. */
const char *pd_req_get_header(pd_req *r, const char *name);

/* ==== Parking ==== */

/* Suspends the connection; after pd_req_unpark, resume(r) runs on the event-loop thread and
 * must reply. Call from a handler. */
void pd_req_park(pd_req *r, pd_req_fn resume);
/* From any thread, once per park; the caller must not touch r afterwards. */
void pd_req_unpark(pd_req *r);

#endif
