/* routes_train.c - the training routes. See routes_train.h; the job model is in train/trainer.h. */
#include "routes_train.h"

#include "jsonio.h"
#include "trainer.h"

#include <string.h>

int pd_jobs_inference_busy(void *arg) { return pd_sched_depth(arg) > 0; }

/* The trainer's statuses as HTTP: a conflict (the adapter is being trained, too many queued
 * jobs, a cancel of a finished job) is 409, not the 503 "busy" of a full prediction queue. */
static void fail(pd_req *r, pd_status st, const char *msg) {
    if (st == PD_ERR_BUSY) pd_req_error(r, 409, "conflict", "%s", msg);
    else if (st == PD_ERR_CANCELLED) pd_req_error(r, 503, "shutting_down", "the server is shutting down");
    else pd_req_fail(r, st, msg);
}

/* Hands fn to the worker with r parked; if the worker refuses, r resumes with that status. */
static void park_on_worker(pd_req *r, void (*fn)(void *), pd_req_fn resume) {
    pd_req_park(r, resume);
    pd_status st = pd_worker_submit(r->srv->worker, fn, r);
    if (st) {
        r->async_st = st;
        snprintf(r->async_err, sizeof r->async_err, "%s", st == PD_ERR_CANCELLED ? "the server is shutting down" : "out of memory");
        pd_req_unpark(r);
    }
}

/* ==== POST /train ==== */

/* Runs on the worker thread: parses and validates the request (tokenizing every example),
 * then queues the job, which writes its directory. */
static void submit_task(void *arg) {
    pd_req *r = arg;
    const pd_part *sp = &r->parts[PD_PART_SPEC], *tr = &r->parts[PD_PART_TRAIN], *ev = &r->parts[PD_PART_EVAL];
    const char *body = r->body_kind == PD_BODY_MULTIPART ? sp->data : r->body;
    size_t len = r->body_kind == PD_BODY_MULTIPART ? sp->len : r->body_len;
    pd_train_spec *spec = NULL;
    r->async_st = pd_train_spec_parse(r->srv->model, r->srv->reg, body ? body : "", body ? len : 0,
                                      tr->seen ? (tr->data ? tr->data : "") : NULL, tr->len, ev->seen ? (ev->data ? ev->data : "") : NULL,
                                      ev->len, NULL, &spec, r->async_err, sizeof r->async_err);
    if (!r->async_st) {
        snprintf(r->log_adapter, sizeof r->log_adapter, "%s", spec->adapter);
        r->async_st = pd_trainer_submit(r->srv->trainer, spec, r->name, sizeof r->name, r->async_err, sizeof r->async_err);
    }
    pd_req_unpark(r); /* last touch */
}

static void submit_done(pd_req *r) {
    if (r->async_st) {
        fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "job", r->name) || !cJSON_AddStringToObject(o, "status", "queued")) {
        cJSON_Delete(o);
        pd_req_error(r, 500, "out_of_memory", "out of memory");
        return;
    }
    snprintf(r->file, sizeof r->file, "/jobs/%s", r->name); /* r->file is unused on this route and outlives the reply */
    pd_req_header(r, "Location", r->file);
    pd_req_json(r, 202, o);
    cJSON_Delete(o);
}

void pd_route_train(pd_req *r) {
    if (r->body_kind == PD_BODY_MULTIPART && !r->parts[PD_PART_SPEC].seen) {
        pd_req_error(r, 400, "invalid_input", "spec: required (the training request as JSON)");
        return;
    }
    r->name[0] = 0;
    park_on_worker(r, submit_task, submit_done);
}

/* ==== GET /jobs, GET /jobs/{id} ==== */

void pd_route_jobs_list(pd_req *r) {
    char *json = NULL, err[256];
    pd_status st = pd_trainer_list_json(r->srv->trainer, &json, err, sizeof err);
    if (st) pd_req_fail(r, st, err);
    else pd_req_reply(r, 200, "application/json", json, strlen(json));
}

void pd_route_job_get(pd_req *r) {
    char *json = NULL, err[256];
    pd_status st = pd_trainer_job_json(r->srv->trainer, r->name, &json, err, sizeof err);
    if (st) pd_req_fail(r, st, err);
    else pd_req_reply(r, 200, "application/json", json, strlen(json));
}

/* ==== DELETE /jobs/{id} ==== */

static void cancel_task(void *arg) {
    pd_req *r = arg;
    r->async_st = pd_trainer_cancel(r->srv->trainer, r->name, r->async_err, sizeof r->async_err);
    pd_req_unpark(r); /* last touch */
}

static void cancel_done(pd_req *r) {
    if (r->async_st) {
        fail(r, r->async_st, r->async_err[0] ? r->async_err : pd_status_name(r->async_st));
        return;
    }
    pd_route_job_get(r); /* the job as it is now: cancelled, or still stopping */
}

void pd_route_job_delete(pd_req *r) { park_on_worker(r, cancel_task, cancel_done); }
