/* routes.c - the route table. See routes.h. */
#include "routes.h"

#include "registry.h"

static const char *const UPLOAD_PARTS[] = {"name", "config", "weights", "labels", "head_config", "head_weights", NULL};
static const char *const TRAIN_PARTS[] = {"spec", "train", "eval", NULL};

/* HEAD is answered by the GET handler (libmicrohttpd sends no body for HEAD). */
const pd_route_def pd_routes[PD_ROUTE_COUNT] = {
    [PD_ROUTE_HEALTH] = {"/health", 1, 1, {{"GET", pd_route_health, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_READY] = {"/ready", 1, 1, {{"GET", pd_route_ready, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_INFO] = {"/info", 0, 0, {{"GET", pd_route_info, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_METRICS] = {"/metrics", 1, 0, {{"GET", pd_route_metrics, 0, PD_BODY_NONE, NULL}}},
    /* the API's description holds no data: open, and served while the model loads */
    [PD_ROUTE_OPENAPI] = {"/openapi.json", 1, 1, {{"GET", pd_route_openapi, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_PREDICT] = {"/predict", 0, 0, {{"POST", pd_route_predict, 0, PD_BODY_JSON, NULL}}},
    [PD_ROUTE_ADAPTERS] = {"/adapters", 0, 0,
                           {{"GET", pd_route_adapters_list, 0, PD_BODY_NONE, NULL},
                            {"POST", pd_route_adapter_post, 1, PD_BODY_MULTIPART, UPLOAD_PARTS}}},
    [PD_ROUTE_ADAPTER] = {"/adapters/{name}", 0, 0,
                          {{"GET", pd_route_adapter_get, 0, PD_BODY_NONE, NULL},
                           {"PUT", pd_route_adapter_put, 1, PD_BODY_MULTIPART, UPLOAD_PARTS},
                           {"DELETE", pd_route_adapter_delete, 1, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_ADAPTER_FILE] = {"/adapters/{name}/files/{file}", 0, 0, {{"GET", pd_route_adapter_file, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_ADAPTER_VERSIONS] = {"/adapters/{name}/versions", 0, 0,
                                   {{"GET", pd_route_adapter_versions, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_TRAIN] = {"/train", 0, 0, {{"POST", pd_route_train, 1, PD_BODY_EITHER, TRAIN_PARTS}}},
    [PD_ROUTE_JOBS] = {"/jobs", 0, 0, {{"GET", pd_route_jobs_list, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_JOB] = {"/jobs/{id}", 0, 0,
                      {{"GET", pd_route_job_get, 0, PD_BODY_NONE, NULL}, {"DELETE", pd_route_job_delete, 1, PD_BODY_NONE, NULL}}},
    /* the console's files hold no data and the page asks for the key itself: open, and served
     * while the model loads */
    [PD_ROUTE_CONSOLE] = {"/", 1, 1, {{"GET", pd_route_console, 0, PD_BODY_NONE, NULL}}},
    [PD_ROUTE_CONSOLE_FILE] = {"/console/{file}", 1, 1, {{"GET", pd_route_console, 0, PD_BODY_NONE, NULL}}},
};

const char *pd_route_name(int route) { return route >= 0 && route < PD_ROUTE_COUNT ? pd_routes[route].path : "other"; }

int pd_route_check_name(pd_req *r, const char *name) {
    if (pd_registry_valid_name(name)) return 0;
    pd_req_error(r, 400, "invalid_input", "invalid adapter name \"%.80s\": use " PD_ADAPTER_NAME_RULE, name);
    return -1;
}
