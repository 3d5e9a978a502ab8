/* fuzz_train_request.c - libFuzzer target: a POST /train request through pd_train_spec_parse
 * (train/spec.c), the function server/routes_train.c and a resuming job call: strict JSON, the
 * fields and their ranges, the method's config, the cost estimate, labels, then every example
 * tokenized against the generated base model. Nothing is queued, no file written.
 * Input: the request JSON, optionally NUL + the train JSON Lines part, optionally NUL + the eval
 * part (the multipart form's parts). Checks: a failure has a non-empty UTF-8 message; a spec that
 * passes has examples, a positive schedule and its texts for the job store.
 *
 * Built with -DFUZZ_JSONL it is target `jsonl`: the input is the train.jsonl part alone, under a
 * fixed classification request, so the JSON Lines reader is what mutates; an accepted file holds
 * as many examples as it has non-blank lines (Python's json.loads per line on the seeds agrees:
 * scripts/fuzz.sh seeds only files it accepts). */
#include "fuzz_base.h"
#include "json.h"
#include "spec.h"

#include <ctype.h>
#include <string.h>

#define MAX_BYTES ((size_t)256 << 20) /* the cost limit (--max-train-mb), small enough for -rss_limit_mb */

static pd_model *base;
static pd_registry *reg;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    base = fuzz_base();
    char data[128], err[512];
    snprintf(data, sizeof data, "%s/data", fuzz_dir);
    if (pd_registry_open(base, data, 0, &reg, err, sizeof err)) {
        fprintf(stderr, "fuzz: registry: %s\n", err);
        abort();
    }
    return 0;
}

static const char *part(const char **p, const char *end, size_t *len) {
    if (!*p) return *len = 0, NULL;
    const char *s = *p, *z = memchr(s, 0, (size_t)(end - s));
    *len = (size_t)((z ? z : end) - s);
    *p = z ? z + 1 : NULL;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, in, size);
    buf[size] = 0;
    const char *p = buf, *end = buf + size;
    size_t jl, tl, el;
#ifdef FUZZ_JSONL
    static const char REQ[] = "{\"adapter\":\"fz\",\"method\":\"lora\",\"task\":\"classification\",\"epochs\":1}";
    const char *json = REQ, *train = buf, *eval = NULL;
    jl = sizeof REQ - 1, tl = size, el = 0;
#else
    const char *json = part(&p, end, &jl), *train = part(&p, end, &tl), *eval = part(&p, end, &el);
#endif
    char err[512] = "";
    pd_train_spec *s = NULL;
    pd_status st = pd_train_spec_parse(base, reg, json, jl, train, tl, eval, el, NULL, MAX_BYTES, &s, err, sizeof err);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "status %d: %s\n", (int)st, st ? err : "accepted");
    if (st != PD_OK) {
        if (s || !err[0] || !pd_utf8_valid(err, strlen(err))) abort();
    } else {
        if (!s || s->train.n < 1 || s->total_steps < 1 || s->epochs < 1 || !s->spec_json || !s->train_jsonl) abort();
#ifdef FUZZ_JSONL
        int lines = 0;
        for (size_t a = 0; a < size;) {
            size_t e = a;
            while (e < size && buf[e] != '\n') e++;
            int blank = 1;
            for (size_t i = a; i < e; i++)
                if (!isspace((unsigned char)buf[i])) blank = 0;
            lines += !blank;
            a = e + 1;
        }
        if (s->train.n + s->eval.n != lines) abort();
#endif
    }
    pd_train_spec_free(s);
    free(buf);
    return 0;
}
