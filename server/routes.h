/* routes.h - the handlers behind each route of the HTTP API (docs/API.md).
 *
 * A handler runs on an event-loop thread once the request body is complete (and checked for
 * size, type and auth by http.c). It either replies (pd_req_reply / pd_req_error) or parks the
 * request with a continuation that replies later. Prediction work goes to the scheduler,
 * registry writes to the worker; nothing here runs the model.
 * Thread-safety: handlers share only the server's thread-safe objects. */
#ifndef PD_ROUTES_H
#define PD_ROUTES_H

#include "http.h"

void pd_route_health(pd_req *r);
void pd_route_info(pd_req *r);
void pd_route_metrics(pd_req *r);
void pd_route_predict(pd_req *r);
void pd_route_adapters_list(pd_req *r);
void pd_route_adapter_upload(pd_req *r);   /* POST /adapters and PUT /adapters/{name} */
void pd_route_adapter_get(pd_req *r);
void pd_route_adapter_delete(pd_req *r);
void pd_route_adapter_file(pd_req *r);

/* Frees what handlers stored in r (job, items, pinned adapter, JSON, info). */
void pd_route_cleanup(pd_req *r);

#endif
