/* fuzz_adapter_config.c - libFuzzer target: the JSON an upload carries (adapter_config.json in
 * PEFT and AdapterHub form, the labels part, AdapterHub's head_config.json), loaded against real
 * weights so that parsing gets past the first checks into each method's own keys.
 *
 * Input: one byte choosing the weights (one of the bert_cls_f32 adapters of tests/reference,
 * modulo their number), then the config, then optionally a NUL and the labels part, then
 * optionally a NUL and head_config.json (given with that adapter's model_head.safetensors, if it
 * has one). scripts/fuzz.sh seeds it with each reference adapter's own files in that layout.
 * Loads what passes validation, checks the labels it reports, and releases it. Run from the
 * repository root. */
#include "adapter.h"
#include "model.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 32

typedef struct weights_set {
    char *weights; size_t weights_len;
    char *head; size_t head_len; /* model_head.safetensors or NULL */
} weights_set;

static pd_model *base;
static weights_set sets[MAX_SETS];
static int n_sets;

/* The whole file, NUL-terminated, or NULL (pd_read_file). */
static char *slurp(const char *path, size_t *len) {
    char *b = NULL;
    return pd_read_file(path, (size_t)1 << 30, &b, len, NULL, 0) == PD_OK ? b : NULL;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char err[256], path[512];
    if (pd_model_load("tests/reference/models/bert_cls_f32", 0, &base, err, sizeof err) != PD_OK) {
        fprintf(stderr, "fuzz_adapter_config: %s (run from the repository root)\n", err);
        abort();
    }
    /* the adapters in name order, so that the first byte means the same set on every run */
    DIR *d = opendir("tests/reference/adapters");
    char *names[256];
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < 256;)
        if (!strncmp(e->d_name, "bert_cls_f32__", 14)) names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n && n_sets < MAX_SETS; i++) {
        weights_set *s = &sets[n_sets];
        snprintf(path, sizeof path, "tests/reference/adapters/%s/adapter_model.safetensors", names[i]);
        if (!(s->weights = slurp(path, &s->weights_len))) {
            snprintf(path, sizeof path, "tests/reference/adapters/%s/adapter.safetensors", names[i]);
            s->weights = slurp(path, &s->weights_len);
        }
        snprintf(path, sizeof path, "tests/reference/adapters/%s/model_head.safetensors", names[i]);
        s->head = slurp(path, &s->head_len);
        if (s->weights) n_sets++;
        free(names[i]);
    }
    if (!n_sets) {
        fprintf(stderr, "fuzz_adapter_config: no weights under tests/reference/adapters\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const weights_set *s = &sets[data[0] % n_sets];
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    pd_adapter_files f;
    memset(&f, 0, sizeof f);
    const char *z = memchr(p, 0, (size_t)(end - p));
    f.config = p;
    f.config_len = (size_t)((z ? z : end) - p);
    if (z) {
        const char *l = z + 1, *z2 = memchr(l, 0, (size_t)(end - l));
        if ((z2 ? z2 : end) > l) {
            f.labels = l;
            f.labels_len = (size_t)((z2 ? z2 : end) - l);
        }
        if (z2 && end > z2 + 1) {
            f.head_config = z2 + 1;
            f.head_config_len = (size_t)(end - z2 - 1);
            f.head_weights = s->head;
            f.head_weights_len = s->head_len;
        }
    }
    f.weights = s->weights;
    f.weights_len = s->weights_len;
    char err[256];
    pd_adapter *a = NULL;
    if (pd_adapter_load(base, &f, &a, err, sizeof err) == PD_OK) {
        /* what a listing would echo: every label a string, every byte read */
        size_t total = 0;
        for (int i = 0; i < pd_adapter_num_labels(a); i++) {
            const char *lab = pd_adapter_label(a, i);
            if (!lab) abort();
            total += strlen(lab);
        }
        (void)total;
        pd_adapter_release(a);
    }
    return 0;
}
