/* names.c - task and label names. See names.h. */
#include "names.h"

#include <stdio.h>
#include <string.h>

const char *pd_task_name(pd_task t) {
    switch (t) {
    case PD_TASK_CLS: return "classification";
    case PD_TASK_QA: return "question_answering";
    case PD_TASK_NONE: return "none";
    }
    return "?";
}

int pd_task_parse(const char *name) {
    if (!strcmp(name, "classification") || !strcmp(name, "cls") || !strcmp(name, "text-classification")) return PD_TASK_CLS;
    if (!strcmp(name, "question_answering") || !strcmp(name, "qa") || !strcmp(name, "question-answering")) return PD_TASK_QA;
    if (!strcmp(name, "none")) return PD_TASK_NONE;
    return -1;
}

const char *pd_label_name(const char *name, int i, char *buf, size_t cap) {
    if (name) return name;
    snprintf(buf, cap, "LABEL_%d", i);
    return buf;
}
