/* routes_train.c - the training routes (docs/TRAINING.md, docs/API.md): POST /train, GET /jobs,
 * GET /jobs/{id}, DELETE /jobs/{id}; thin glue over train/spec.h and train/trainer.h.
 *
 * POST /train takes a JSON body, or multipart/form-data with the request as the part "spec" and
 * the examples as JSON Lines parts "train" and "eval". Validating a request tokenizes all its
 * examples and writes the job's files, and a cancel waits for the job to stop, so both run on
 * the server's worker with the connection parked, never on an event-loop thread. See routes.h. */
#include "routes.h"

#include "server.h"

#include <string.h>

/* ==== POST /train ==== */

/* Runs on the worker thread: parses and validates the request (tokenizing every example),
 * then queues the job, which writes its directory. The job id goes into r->name. */
static void submit_task(void *arg) {
    pd_req *r = arg;
    const pd_part *sp = &r->parts[PD_PART_SPEC], *tr = &r->parts[PD_PART_TRAIN], *ev = &r->parts[PD_PART_EVAL];
    const char *body = r->body_kind == PD_BODY_MULTIPART ? sp->data : r->body;
    size_t len = r->body_kind == PD_BODY_MULTIPART ? sp->len : r->body_len;
    pd_train_spec *spec = NULL;
    r->async_st = pd_train_spec_parse(r->srv->model, r->srv->reg, body ? body : "", body ? len : 0,
                                      tr->seen ? (tr->data ? tr->data : "") : NULL, tr->len, ev->seen ? (ev->data ? ev->data : "") : NULL,
                                      ev->len, NULL, (size_t)r->srv->opt.max_train_mb << 20, &spec, r->async_err, sizeof r->async_err);
    if (!r->async_st) {
        snprintf(r->log_adapter, sizeof r->log_adapter, "%s", spec->adapter);
        r->async_st = pd_trainer_submit(r->srv->trainer, spec, r->name, sizeof r->name, r->async_err, sizeof r->async_err);
    }
    pd_req_unpark(r); /* last touch */
}

static void submit_done(pd_req *r) {
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "job", r->name) && cJSON_AddStringToObject(o, "status", "queued");
    snprintf(r->hdr_buf, sizeof r->hdr_buf, "/jobs/%s", r->name);
    if (ok) pd_req_header(r, "Location", r->hdr_buf);
    pd_req_json(r, 202, o, ok);
}

void pd_route_train(pd_req *r) {
    if (r->body_kind == PD_BODY_MULTIPART && !r->parts[PD_PART_SPEC].seen) {
        pd_req_error(r, 400, "invalid_input", "spec: required (the training request as JSON)");
        return;
    }
    r->name[0] = 0;
    pd_req_park_on(r, r->srv->worker, submit_task, submit_done);
}

/* ==== GET /jobs, GET /jobs/{id} ==== */

void pd_route_jobs_list(pd_req *r) {
    char *json = NULL, err[256];
    pd_status st = pd_trainer_list_json(r->srv->trainer, &json, err, sizeof err);
    if (st) pd_req_fail(r, st, err);
    else pd_req_json_text(r, 200, json);
}

/* A job this process does not list may be another replica's (jobs live in the shared store):
 * its job.json is read on the loader worker with the connection parked. */
static void stored_job_task(void *arg) {
    pd_req *r = arg;
    char *json = NULL;
    r->async_st = pd_trainer_job_json_stored(r->srv->trainer, r->name, &json, r->async_err, sizeof r->async_err);
    r->ctx = json;
    r->ctx_free = free;
    pd_req_unpark(r);
}

static void stored_job_done(pd_req *r) {
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err);
        return;
    }
    char *json = r->ctx;
    r->ctx = NULL;
    pd_req_json_text(r, 200, json);
}

void pd_route_job_get(pd_req *r) {
    char *json = NULL, err[256];
    pd_status st = pd_trainer_job_json(r->srv->trainer, r->name, &json, err, sizeof err);
    if (st == PD_ERR_NOT_FOUND && !r->ctx) pd_req_park_on(r, r->srv->loader, stored_job_task, stored_job_done);
    else if (st) pd_req_fail(r, st, err);
    else pd_req_json_text(r, 200, json);
}

/* ==== DELETE /jobs/{id} ==== */

static void cancel_task(void *arg) {
    pd_req *r = arg;
    r->async_st = pd_trainer_cancel(r->srv->trainer, r->name, r->async_err, sizeof r->async_err);
    pd_req_unpark(r); /* last touch */
}

static void cancel_done(pd_req *r) {
    if (r->async_st) {
        pd_req_fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    pd_route_job_get(r); /* the job as it is now: cancelled, or still stopping */
}

void pd_route_job_delete(pd_req *r) { pd_req_park_on(r, r->srv->worker, cancel_task, cancel_done); }
