/* test_isa.h - runs a test once per kernel body: each PD_ISA name the CPU supports in turn.
 *     const char *isa;
 *     for (int k = 0; (isa = test_next_isa(&k));) { ...tests... }
 * A name the CPU lacks is a TEST_SKIP; after the last, every feature is enabled again. */
#ifndef PD_TEST_ISA_H
#define PD_TEST_ISA_H
#include "kernels.h"
#include "test.h"

static const char *test_next_isa(int *k) {
    const char *isa;
    while ((isa = pd_kernels_isa_name((*k)++))) {
        if (pd_kernels_set_isa(isa) == 0) {
            printf("kernels: %s\n", isa);
            return isa;
        }
        TEST_SKIP("%s: this CPU lacks it", isa);
    }
    CHECK(pd_kernels_set_isa(NULL) == 0);
    return NULL;
}

#endif
