/* fuzz_tokenizer_json.c - libFuzzer target: arbitrary bytes as a tokenizer.json; when one
 * loads, it tokenizes a fixed text with accents, CJK and a long word (corpus: the
 * tokenizer.json files of tests/reference/models). */
#include "tokenizer.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    pd_tokenizer *t = NULL;
    if (pd_tokenizer_load_json((const char *)data, size, &t, err, sizeof err) != PD_OK) return 0;
    const char *s = "Hello, world! caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 unaffable antidisestablishmentarianism";
    pd_tokens tk;
    memset(&tk, 0, sizeof tk);
    if (pd_tokenizer_tokenize(t, s, strlen(s), &tk, err, sizeof err) == PD_OK) pd_tokens_free(&tk);
    pd_tokenizer_free(t);
    return 0;
}
