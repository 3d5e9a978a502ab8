/* routes_train.h - the training routes (docs/TRAINING.md, docs/API.md): POST /train, GET /jobs,
 * GET /jobs/{id}, DELETE /jobs/{id}; thin glue over train/trainer.h.
 *
 * POST /train takes a JSON body, or multipart/form-data with the request as the part "spec"
 * and the examples as JSON Lines parts "train" and "eval". Validating a request tokenizes all
 * its examples and writes the job's files, and a cancel waits for the job to stop, so both run
 * on the server's worker thread with the connection parked, never on an event-loop thread.
 * Thread-safety: handlers share only the server's thread-safe objects (the trainer). */
#ifndef PD_ROUTES_TRAIN_H
#define PD_ROUTES_TRAIN_H

#include "http.h"

void pd_route_train(pd_req *r);      /* POST /train */
void pd_route_jobs_list(pd_req *r);  /* GET /jobs */
void pd_route_job_get(pd_req *r);    /* GET /jobs/{id} */
void pd_route_job_delete(pd_req *r); /* DELETE /jobs/{id} */

/* The trainer's yield question (pd_trainer_set_yield): nonzero while the scheduler holds
 * predictions, waiting or in a batch. arg: the pd_sched. */
int pd_jobs_inference_busy(void *arg);

#endif
