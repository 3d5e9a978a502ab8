/* tokcheck.c - tokenizes text with peftd's own tokenizer (core/tokenizer.c), one line at a time.
 *
 *   tokcheck TOKENIZER_DIR < lines.txt > ids.txt
 *
 * Loads TOKENIZER_DIR as peftd loads a model's tokenizer (tokenizer.json, else vocab.txt +
 * tokenizer_config.json) and writes, for every input line, the token ids of that line (no
 * special tokens) separated by spaces; an empty line gives an empty line. vocab.py compares
 * this with its own encoder to show that the vocabularies it writes tokenize the same in
 * peftd. Exits 1 on a load or tokenize error, with the message on stderr. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: tokcheck TOKENIZER_DIR < lines.txt\n");
        return 2;
    }
    char err[512];
    pd_tokenizer *tk = NULL;
    if (pd_tokenizer_load_dir(argv[1], &tk, err, sizeof err) != PD_OK) {
        fprintf(stderr, "tokcheck: %s\n", err);
        return 1;
    }
    pd_tokens out = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        if (pd_tokenizer_tokenize(tk, line, (size_t)n, &out, err, sizeof err) != PD_OK) {
            fprintf(stderr, "tokcheck: line %ld: %s\n", lineno, err);
            rc = 1;
            break;
        }
        for (int i = 0; i < out.n; i++) printf(i ? " %d" : "%d", (int)out.ids[i]);
        putchar('\n');
    }
    free(line);
    pd_tokens_free(&out);
    pd_tokenizer_free(tk);
    return rc;
}
