/* fuzz_adapter.c - libFuzzer target: an adapter upload against a loaded base. The input is a
 * little-endian u32 length, that many bytes of adapter_config.json, then the weights file
 * (corpus: the bert_cls_f32 adapters of tests/reference packed that way by scripts/fuzz.sh).
 * Loads what passes validation and releases it. Run from the repository root. */
#include "adapter.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pd_model *base;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[256];
    if (pd_model_load("tests/reference/models/bert_cls_f32", 0, &base, err, sizeof err) != PD_OK) {
        fprintf(stderr, "fuzz_adapter: %s (run from the repository root)\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint32_t n;
    if (size < 4) return 0;
    memcpy(&n, data, 4);
    if (n > size - 4) return 0;
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    f.config = (const char *)data + 4;
    f.config_len = n;
    f.weights = data + 4 + n;
    f.weights_len = size - 4 - n;
    char err[256];
    pd_adapter *a = NULL;
    if (pd_adapter_load(base, &f, &a, err, sizeof err) == PD_OK) pd_adapter_release(a);
    return 0;
}
