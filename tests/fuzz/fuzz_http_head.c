/* fuzz_http_head.c - libFuzzer target: the gate's reading of a request head (server/gate.c), the
 * bytes a client sends before libmicrohttpd sees them: pd_gate_head_len on the input, then
 * pd_gate_check on the head it finds (or on the whole input when none). Checks: the head length
 * is within the input and ends with an empty line; the status is 0, 400, 413 or 501; a refusal
 * has a code and a reason. scripts/fuzz.sh seeds it with the hostile suite's raw requests
 * (tests/e2e/test_hostile.py --dump-corpus). */
#include "gate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    size_t hl = pd_gate_head_len(buf, size);
    if (hl > size) abort();
    if (hl && buf[hl - 1] != '\n') abort();
    const char *code = NULL;
    char why[256];
    why[0] = 0;
    int st = pd_gate_check(buf, hl ? hl : size, 64LL << 20, &code, why, sizeof why);
    if (st != 0 && st != 400 && st != 413 && st != 501) abort();
    if (st && (!code || !why[0] || !memchr(why, 0, sizeof why))) abort();
    return 0;
}
