/* fuzz_base.h - the base model the request targets run against: core/genmodel.c's generated
 * checkpoint (a classification and a QA head, the vocabulary `make run` serves), written once
 * into a temporary directory and loaded in LLVMFuzzerInitialize. Included by one target each. */
#ifndef FUZZ_BASE_H
#define FUZZ_BASE_H

#include "genmodel.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

static char fuzz_dir[64];

static pd_model *fuzz_base(void) {
    char err[512];
    pd_model *m = NULL;
    snprintf(fuzz_dir, sizeof fuzz_dir, "/tmp/peftd-fuzz-XXXXXX");
    if (!mkdtemp(fuzz_dir)) abort();
    char model_dir[128];
    snprintf(model_dir, sizeof model_dir, "%s/model", fuzz_dir);
    if (pd_genmodel_write(model_dir, err, sizeof err) || pd_model_load(model_dir, 0, &m, err, sizeof err)) {
        fprintf(stderr, "fuzz: base model: %s\n", err);
        abort();
    }
    return m;
}

#endif
