/* routes.h - the HTTP API (docs/API.md, docs/openapi.yaml): the route table and its handlers.
 *
 * One table (routes.c) says every route's path template, methods, body and auth rules; it
 * drives the dispatch (http.c), the route names of the metrics and the check of
 * docs/openapi.yaml (tests/test_routes.c). The handlers live by subject: routes_service.c
 * (/health, /ready, /info, /metrics, /openapi.json), routes_predict.c, routes_adapters.c,
 * routes_train.c (/train, /jobs), routes_console.c (the embedded web console, console.h).
 *
 * A handler runs on an event-loop thread once the request body is complete (and checked for
 * size, type and auth by http.c). It either replies (pd_req_reply / pd_req_error) or parks the
 * request with a continuation that replies later. Prediction work goes to the scheduler,
 * registry loads and writes and training requests to the server's workers; nothing here runs
 * the model or reads a file on an event-loop thread. A handler's own state lives behind r->ctx.
 * Thread-safety: handlers share only the server's thread-safe objects. */
#ifndef PD_ROUTES_H
#define PD_ROUTES_H

#include "http.h"

typedef enum {
    PD_ROUTE_HEALTH = 0,
    PD_ROUTE_READY,
    PD_ROUTE_INFO,
    PD_ROUTE_METRICS,
    PD_ROUTE_OPENAPI,       /* /openapi.json */
    PD_ROUTE_PREDICT,
    PD_ROUTE_ADAPTERS,      /* /adapters */
    PD_ROUTE_ADAPTER,       /* /adapters/{name} */
    PD_ROUTE_ADAPTER_FILE,  /* /adapters/{name}/files/{file} */
    PD_ROUTE_ADAPTER_VERSIONS, /* /adapters/{name}/versions */
    PD_ROUTE_TRAIN,         /* /train */
    PD_ROUTE_JOBS,          /* /jobs */
    PD_ROUTE_JOB,           /* /jobs/{id} */
    PD_ROUTE_CONSOLE,       /* / (the web console's page) */
    PD_ROUTE_CONSOLE_FILE,  /* /console/{file} */
    PD_ROUTE_COUNT
} pd_route;

/* The table, indexed by pd_route. */
extern const pd_route_def pd_routes[PD_ROUTE_COUNT];

/* A route's template ("/adapters/{name}"), "other" for -1 (no route matched). */
const char *pd_route_name(int route);

/* Multipart form fields, as indices into r->parts: adapter uploads, and POST /train. */
enum { PD_PART_NAME = 0, PD_PART_CONFIG, PD_PART_WEIGHTS, PD_PART_LABELS, PD_PART_HEAD_CONFIG, PD_PART_HEAD_WEIGHTS };
enum { PD_PART_SPEC = 0, PD_PART_TRAIN, PD_PART_EVAL };

/* ==== Handlers ==== */

void pd_route_health(pd_req *r);           /* GET /health */
void pd_route_ready(pd_req *r);            /* GET /ready */
void pd_route_info(pd_req *r);             /* GET /info */
void pd_route_metrics(pd_req *r);          /* GET /metrics */
void pd_route_openapi(pd_req *r);          /* GET /openapi.json */
void pd_route_predict(pd_req *r);          /* POST /predict */
void pd_route_adapters_list(pd_req *r);    /* GET /adapters */
void pd_route_adapter_post(pd_req *r);     /* POST /adapters: the name is a form field */
void pd_route_adapter_put(pd_req *r);      /* PUT /adapters/{name} */
void pd_route_adapter_get(pd_req *r);      /* GET /adapters/{name} */
void pd_route_adapter_delete(pd_req *r);   /* DELETE /adapters/{name} */
void pd_route_adapter_versions(pd_req *r); /* GET /adapters/{name}/versions */
void pd_route_adapter_file(pd_req *r);     /* GET /adapters/{name}/files/{file} */
void pd_route_train(pd_req *r);            /* POST /train: JSON, or multipart spec + train + eval */
void pd_route_jobs_list(pd_req *r);        /* GET /jobs */
void pd_route_job_get(pd_req *r);          /* GET /jobs/{id} */
void pd_route_job_delete(pd_req *r);       /* DELETE /jobs/{id} */
void pd_route_console(pd_req *r);          /* GET / and GET /console/{file} */

/* A 400 naming name unless it is a valid adapter name (registry.h); returns 0 when it is. */
int pd_route_check_name(pd_req *r, const char *name);

#endif
