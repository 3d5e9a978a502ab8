/* names.h - the names of tasks and labels, in one place for the API, the files and the logs.
 *
 * A task is what a head computes: sequence classification or extractive question answering.
 * Its names are the API's ("classification", "question_answering"); parsing also takes the
 * short forms and the Hugging Face pipeline names. A classification label without a name is
 * called "LABEL_<i>", as transformers' PretrainedConfig names it.
 * Thread-safety: pure functions. */
#ifndef PD_NAMES_H
#define PD_NAMES_H

#include <stddef.h>

typedef enum { PD_TASK_NONE = 0, PD_TASK_CLS = 1, PD_TASK_QA = 2 } pd_task;

const char *pd_task_name(pd_task t); /* "classification", "question_answering", "none" */

/* "classification" (also "cls", "text-classification") -> PD_TASK_CLS; "question_answering"
 * (also "qa", "question-answering") -> PD_TASK_QA; "none" -> PD_TASK_NONE; anything else -1. */
int pd_task_parse(const char *name);

/* Room for any default label name. */
#define PD_LABEL_CAP 24

/* The name of label i: name itself when it is not NULL, else "LABEL_<i>" written into buf
 * (at least PD_LABEL_CAP bytes). Never NULL. */
const char *pd_label_name(const char *name, int i, char *buf, size_t cap);

#endif
