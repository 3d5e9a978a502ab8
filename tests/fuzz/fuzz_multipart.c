/* fuzz_multipart.c - libFuzzer target: multipart/form-data bodies as server/multipart.c reads
 * them. Input: the boundary (up to the first '\n', 1..70 bytes), then the body. Checks: every
 * part lies inside the body, is NUL-terminated and has a non-empty name without NUL; a
 * failure has a message. scripts/fuzz.sh seeds it with the hostile suite's multipart
 * requests (their bodies, boundary first). */
#include "multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct span {
    const char *lo, *hi;
} span;

static int part(void *arg, const char *name, char *data, size_t len, char *err, size_t errlen) {
    const span *s = arg;
    if (!name[0] || data < s->lo || data + len > s->hi || data[len] != 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    const uint8_t *nl = memchr(in, '\n', size < 71 ? size : 71);
    if (!nl || nl == in) return 0;
    char boundary[72];
    size_t bl = (size_t)(nl - in);
    memcpy(boundary, in, bl);
    boundary[bl] = 0;
    if (strlen(boundary) != bl) return 0;
    size_t len = size - bl - 1;
    char *body = malloc(len + 1);
    memcpy(body, nl + 1, len);
    body[len] = 0;
    span s = {body, body + len};
    char err[256];
    err[0] = 0;
    pd_status st = pd_multipart_parse(body, len, boundary, part, &s, err, sizeof err);
    if (st != PD_OK && (st != PD_ERR_INVALID || !err[0])) abort();
    free(body);
    return 0;
}
