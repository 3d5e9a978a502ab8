/* fuzz_safetensors.c - libFuzzer target: pd_st_open_buffer on arbitrary bytes, then every
 * tensor converted to float32 (scripts/fuzz.sh builds and runs it; corpus: the adapters of
 * tests/reference). */
#include "safetensors.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    pd_st_file *f = NULL;
    if (pd_st_open_buffer(data, size, &f, err, sizeof err) != PD_OK) return 0;
    for (int i = 0; i < pd_st_count(f); i++) {
        const pd_st_tensor *t = pd_st_at(f, i);
        float *x = NULL;
        if (pd_st_numel(t) < (1 << 20) && pd_st_to_f32(t, &x, err, sizeof err) == PD_OK) free(x);
    }
    pd_st_metadata(f, "format");
    pd_st_close(f);
    return 0;
}
