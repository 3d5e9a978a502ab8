/* bench_util.h - helpers shared by the bench programs: timing statistics, resident memory,
 * a deterministic random BERT checkpoint in Hugging Face layout, and token inputs.
 *
 * Header-only (static functions) because the Makefile turns every bench/X.c into its own
 * program; a bench/util.c would become a program too.
 *
 * Nothing here is thread-safe except where noted: the bench programs are single-threaded
 * drivers around pd_pool. Functions that can fail return 0 on success and -1 after printing
 * the reason to stderr (a benchmark that cannot set itself up has nothing to recover). */
#ifndef PD_BENCH_UTIL_H
#define PD_BENCH_UTIL_H

#include "common.h"
#include "safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ==== Statistics ==== */

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of n samples (sorts v in place). */
static inline double bench_median(double *v, int n) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Percentile p in [0, 100] by nearest rank (sorts v in place). */
static inline double bench_percentile(double *v, int n, double p) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int k = (int)ceil(p / 100.0 * n) - 1;
    if (k < 0) k = 0;
    if (k >= n) k = n - 1;
    return v[k];
}

/* min and max of n samples, for the spread printed beside a median. */
static inline void bench_minmax(const double *v, int n, double *mn, double *mx) {
    *mn = *mx = n ? v[0] : 0;
    for (int i = 1; i < n; i++) {
        if (v[i] < *mn) *mn = v[i];
        if (v[i] > *mx) *mx = v[i];
    }
}

/* ==== Process memory ==== */

/* A "VmRSS:"-style field of /proc/self/status in KiB, or -1. */
static inline long bench_status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* ==== Deterministic random numbers ==== */

/* splitmix64: tiny, good enough for weights, and the same on every machine. */
static inline uint64_t bench_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static inline float bench_rng_sym(uint64_t *s) {
    return (float)((bench_rng_next(s) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Seed from a string (FNV-1a), so each tensor's values depend on its name alone. */
static inline uint64_t bench_seed(const char *name, uint64_t salt) {
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h;
}

/* Fills n floats uniformly with standard deviation std (uniform on [-std*sqrt(3), std*sqrt(3)]),
 * the spread BERT's initializer gives (0.02), without libm in the stream. */
static inline void bench_fill(float *x, size_t n, float std, const char *name, uint64_t salt) {
    uint64_t s = bench_seed(name, salt);
    float a = std * 1.7320508f;
    for (size_t i = 0; i < n; i++) x[i] = a * bench_rng_sym(&s);
}

/* ==== Files ==== */

static inline int bench_mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) { perror(buf); return -1; }
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) { perror(buf); return -1; }
    return 0;
}

static inline int bench_write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    if (pd_path_join(path, sizeof path, dir, name)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return -1; }
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "%s: write failed\n", path);
    return bad ? -1 : 0;
}

static inline int bench_file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    return !pd_path_join(path, sizeof path, dir, name) && stat(path, &st) == 0;
}

/* ==== The vocabulary ==== */

/* BERT's layout for the first ids ([PAD] 0, [unused*] 1-99, [UNK] 100, [CLS] 101, [SEP] 102,
 * [MASK] 103), then single characters, then "##" syllables, then consonant-vowel words of
 * two and three syllables. bench_word(i) is the i-th word, so load generators can write text
 * that tokenizes into known whole-word tokens. */
#define BENCH_CLS 101
#define BENCH_SEP 102
#define BENCH_FIRST_ID 104

static const char bench_cons[] = "bdfghjklmnprstvwzcxy"; /* 20 */
static const char bench_vow[] = "aeiou";                 /* 5  */

/* Writes the i-th two-syllable word (i < 10000) into buf (>= 8 bytes). */
static inline void bench_word(int i, char *buf) {
    int a = i % 100, b = (i / 100) % 100;
    buf[0] = bench_cons[b / 5]; buf[1] = bench_vow[b % 5];
    buf[2] = bench_cons[a / 5]; buf[3] = bench_vow[a % 5];
    buf[4] = 0;
}

/* Writes vocab.txt with exactly `vocab` lines. */
static inline int bench_write_vocab(const char *dir, int vocab) {
    char path[4096];
    if (pd_path_join(path, sizeof path, dir, "vocab.txt")) return -1;
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return -1; }
    int n = 0;
    fprintf(f, "[PAD]\n"); n++;
    for (int i = 0; i < 99; i++) { fprintf(f, "[unused%d]\n", i); n++; }
    fprintf(f, "[UNK]\n[CLS]\n[SEP]\n[MASK]\n"); n += 4;
    const char *chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:;()";
    for (const char *c = chars; *c && n < vocab; c++) { fprintf(f, "%c\n", *c); n++; }
    for (const char *c = chars; *c && n < vocab; c++) { fprintf(f, "##%c\n", *c); n++; }
    for (int i = 0; i < 100 && n < vocab; i++) { fprintf(f, "##%c%c\n", bench_cons[i / 5], bench_vow[i % 5]); n++; }
    char w[8];
    for (int i = 0; i < 10000 && n < vocab; i++) { bench_word(i, w); fprintf(f, "%s\n", w); n++; }
    for (int i = 0; n < vocab; i++) {
        int a = i % 100, b = (i / 100) % 100, c = (i / 10000) % 100;
        fprintf(f, "%c%c%c%c%c%c\n", bench_cons[c / 5], bench_vow[c % 5], bench_cons[b / 5], bench_vow[b % 5],
                bench_cons[a / 5], bench_vow[a % 5]);
        n++;
    }
    int bad = fclose(f) != 0;
    if (bad) fprintf(stderr, "%s: write failed\n", path);
    return bad ? -1 : 0;
}

/* ==== A random BERT checkpoint ==== */

typedef struct bench_bert {
    int vocab, hidden, layers, heads, ffn, max_pos, type_vocab, num_labels;
} bench_bert;

static const bench_bert BENCH_BERT_BASE = {30522, 768, 12, 12, 3072, 512, 2, 2};

typedef struct {
    pd_st_wtensor *t;
    float **data;
    int n, cap;
} bench_tensors;

/* Adds a tensor of the given shape filled as its kind asks: LayerNorm weights 1, biases and
 * LayerNorm biases small, everything else N(0, 0.02)-like. Returns 0 or -1 (no memory). */
static inline int bench_tensor_add(bench_tensors *ts, const char *name, int64_t d0, int64_t d1) {
    if (ts->n == ts->cap) {
        int nc = ts->cap ? ts->cap * 2 : 256;
        pd_st_wtensor *nt = realloc(ts->t, (size_t)nc * sizeof *nt);
        if (!nt) return -1;
        ts->t = nt;
        float **nd = realloc(ts->data, (size_t)nc * sizeof *nd);
        if (!nd) return -1;
        ts->data = nd;
        ts->cap = nc;
    }
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *x = malloc(n * sizeof(float));
    char *nm = strdup(name);
    if (!x || !nm) { free(x); free(nm); return -1; }
    size_t L = strlen(name);
    int is_ln_w = L > 16 && !strcmp(name + L - 16, "LayerNorm.weight");
    if (is_ln_w) {
        /* near 1, not exactly: a wrong LayerNorm weight index would still show in outputs */
        bench_fill(x, n, 0.05f, name, 7);
        for (size_t i = 0; i < n; i++) x[i] += 1.0f;
    } else {
        bench_fill(x, n, 0.02f, name, 7); /* biases too: a dropped bias would show */
    }
    pd_st_wtensor *t = &ts->t[ts->n];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = x;
    ts->data[ts->n++] = x;
    return 0;
}

static inline void bench_tensors_free(bench_tensors *ts) {
    for (int i = 0; i < ts->n; i++) { free(ts->data[i]); free((char *)ts->t[i].name); }
    free(ts->t);
    free(ts->data);
    memset(ts, 0, sizeof *ts);
}

/* Writes a BertForSequenceClassification-shaped checkpoint (config.json, vocab.txt,
 * tokenizer_config.json, model.safetensors) with deterministic random weights into dir.
 * model.safetensors is written under a temporary name and renamed last, so a directory with
 * model.safetensors is complete. Returns 0 or -1. */
static inline int bench_write_bert(const char *dir, const bench_bert *b) {
    if (bench_mkdirs(dir)) return -1;
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"BertForSequenceClassification\"],\n  \"model_type\": \"bert\",\n"
             "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n"
             "  \"num_attention_heads\": %d,\n  \"intermediate_size\": %d,\n  \"hidden_act\": \"gelu\",\n"
             "  \"hidden_dropout_prob\": 0.1,\n  \"attention_probs_dropout_prob\": 0.1,\n"
             "  \"max_position_embeddings\": %d,\n  \"type_vocab_size\": %d,\n  \"initializer_range\": 0.02,\n"
             "  \"layer_norm_eps\": 1e-12,\n  \"pad_token_id\": 0,\n  \"position_embedding_type\": \"absolute\",\n"
             "  \"id2label\": {\"0\": \"negative\", \"1\": \"positive\"},\n"
             "  \"label2id\": {\"negative\": 0, \"positive\": 1},\n  \"torch_dtype\": \"float32\"\n}\n",
             b->vocab, b->hidden, b->layers, b->heads, b->ffn, b->max_pos, b->type_vocab);
    if (bench_write_text(dir, "config.json", cfg)) return -1;
    if (bench_write_text(dir, "tokenizer_config.json",
                         "{\n  \"do_lower_case\": true,\n  \"model_max_length\": 512,\n"
                         "  \"tokenizer_class\": \"BertTokenizer\"\n}\n"))
        return -1;
    if (bench_write_vocab(dir, b->vocab)) return -1;

    bench_tensors ts = {0};
    int H = b->hidden, F = b->ffn, bad = 0;
    char s[256];
    bad |= bench_tensor_add(&ts, "bert.embeddings.word_embeddings.weight", b->vocab, H);
    bad |= bench_tensor_add(&ts, "bert.embeddings.position_embeddings.weight", b->max_pos, H);
    bad |= bench_tensor_add(&ts, "bert.embeddings.token_type_embeddings.weight", b->type_vocab, H);
    bad |= bench_tensor_add(&ts, "bert.embeddings.LayerNorm.weight", H, 0);
    bad |= bench_tensor_add(&ts, "bert.embeddings.LayerNorm.bias", H, 0);
    static const struct { const char *name; int out, in; } lin[] = {
        {"attention.self.query", 0, 0}, {"attention.self.key", 0, 0}, {"attention.self.value", 0, 0},
        {"attention.output.dense", 0, 0}, {"intermediate.dense", 1, 0}, {"output.dense", 0, 1}};
    for (int l = 0; l < b->layers && !bad; l++) {
        for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++) {
            int out = lin[i].out ? F : H, in = lin[i].in ? F : H;
            snprintf(s, sizeof s, "bert.encoder.layer.%d.%s.weight", l, lin[i].name);
            bad |= bench_tensor_add(&ts, s, out, in);
            snprintf(s, sizeof s, "bert.encoder.layer.%d.%s.bias", l, lin[i].name);
            bad |= bench_tensor_add(&ts, s, out, 0);
        }
        snprintf(s, sizeof s, "bert.encoder.layer.%d.attention.output.LayerNorm.weight", l);
        bad |= bench_tensor_add(&ts, s, H, 0);
        snprintf(s, sizeof s, "bert.encoder.layer.%d.attention.output.LayerNorm.bias", l);
        bad |= bench_tensor_add(&ts, s, H, 0);
        snprintf(s, sizeof s, "bert.encoder.layer.%d.output.LayerNorm.weight", l);
        bad |= bench_tensor_add(&ts, s, H, 0);
        snprintf(s, sizeof s, "bert.encoder.layer.%d.output.LayerNorm.bias", l);
        bad |= bench_tensor_add(&ts, s, H, 0);
    }
    bad |= bench_tensor_add(&ts, "bert.pooler.dense.weight", H, H);
    bad |= bench_tensor_add(&ts, "bert.pooler.dense.bias", H, 0);
    bad |= bench_tensor_add(&ts, "classifier.weight", b->num_labels, H);
    bad |= bench_tensor_add(&ts, "classifier.bias", b->num_labels, 0);
    if (bad) {
        fprintf(stderr, "out of memory generating the checkpoint\n");
        bench_tensors_free(&ts);
        return -1;
    }
    char tmp[4096], path[4096], err[512];
    snprintf(tmp, sizeof tmp, "%s/model.safetensors.tmp", dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *meta[] = {"format", "pt"};
    pd_status st = pd_st_write(tmp, ts.t, ts.n, meta, 1, err, sizeof err);
    bench_tensors_free(&ts);
    if (st != PD_OK) { fprintf(stderr, "%s\n", err); return -1; }
    if (rename(tmp, path)) { perror(path); return -1; }
    return 0;
}

/* Fills n sequences of len tokens: [CLS] random word ids [SEP], seeded by seed. ids holds
 * n * len entries. */
static inline void bench_fill_ids(int32_t *ids, int n, int len, int vocab, uint64_t seed) {
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        int32_t *r = ids + (size_t)i * len;
        for (int t = 0; t < len; t++) r[t] = BENCH_FIRST_ID + (int32_t)(bench_rng_next(&s) % (uint64_t)(vocab - BENCH_FIRST_ID));
        r[0] = BENCH_CLS;
        if (len > 1) r[len - 1] = BENCH_SEP;
    }
}

/* ==== Reporting ==== */

static inline const char *bench_cpu_model(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(buf, cap, "%s", c);
            }
            break;
        }
    }
    fclose(f);
    return buf;
}

#endif
