/* fuzz_tokenize.c - libFuzzer target: arbitrary bytes (invalid UTF-8 included) as the text
 * given to the WordPiece and byte-level BPE tokenizers of tests/reference/models, and to the
 * real bert-base-uncased one when ../shared has it. Run from the repository root. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const DIRS[] = {"tests/reference/models/bert_cls_f32", "tests/reference/models/roberta_cls_f32",
                                   "../shared/fixtures/bert-base-uncased-tokenizer"};
static pd_tokenizer *tok[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[256];
    for (int i = 0; i < 3; i++)
        if (pd_tokenizer_load_dir(DIRS[i], &tok[i], err, sizeof err) != PD_OK) {
            if (i < 2) { fprintf(stderr, "fuzz_tokenize: %s (run from the repository root)\n", err); abort(); }
            fprintf(stderr, "fuzz_tokenize: %s; without it\n", err);
        }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    for (int i = 0; i < 3; i++) {
        if (!tok[i]) continue;
        pd_tokens tk;
        memset(&tk, 0, sizeof tk);
        if (pd_tokenizer_tokenize(tok[i], (const char *)data, size, &tk, err, sizeof err) == PD_OK) pd_tokens_free(&tk);
    }
    return 0;
}
